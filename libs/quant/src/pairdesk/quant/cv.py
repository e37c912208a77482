"""Leak-free time-series validation: purged K-fold and expanding walk-forward (spec 004 §時系列CV・評価KPI 仕様 v1).

Samples are identified by the bar position ``t_pos`` at which they are observed (features known)
and the bar position ``t_end_pos`` at which their label is known (see :mod:`pairdesk.quant.labels`).
A sample's *label interval* is the closed bar range ``[t_pos, t_end_pos]``.

Purging rule (choice where the spec is ambiguous): a test fold occupies the bar range
``[block_start, test_end]`` with ``test_end = max(block_end, max t_end_pos of its test samples)``
(so labels that resolve after the block are covered too). A training sample is dropped when its
label interval overlaps ``[block_start - purge_bars, test_end + embargo_bars]``. This contains the
rule of docs/quant-contracts.md §Validation (test block ± purge/embargo) and additionally removes
training samples whose outcome bars coincide with a test sample's outcome bars.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pairdesk.quant.typing import BoolArray, IntArray

__all__ = [
    "PurgedKFold",
    "WalkForwardFold",
    "purged_train_mask",
    "walk_forward_indices",
    "walk_forward_splits",
]



def _as_positions(t_pos: npt.ArrayLike, t_end_pos: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    tp = np.asarray(t_pos)
    te = np.asarray(t_end_pos)
    if tp.ndim != 1 or te.ndim != 1 or tp.shape != te.shape:
        raise ValueError("t_pos and t_end_pos must be 1-D arrays of the same length")
    if tp.size and (
        not np.issubdtype(tp.dtype, np.integer) or not np.issubdtype(te.dtype, np.integer)
    ):
        raise ValueError("t_pos and t_end_pos must be integer bar positions")
    tp = tp.astype(np.int64)
    te = te.astype(np.int64)
    if np.any(te < tp):
        raise ValueError("t_end_pos must be >= t_pos for every sample")
    return tp, te


def purged_train_mask(t_pos: IntArray, t_end_pos: IntArray, start: int, end: int) -> BoolArray:
    """Mask of samples whose label interval does not overlap the bar range ``[start, end]``.

    Parameters
    ----------
    t_pos, t_end_pos : numpy.ndarray of int, shape (n_samples,)
        Label intervals ``[t_pos, t_end_pos]`` in bar positions.
    start, end : int
        Closed forbidden bar range (already extended by purge/embargo).

    Returns
    -------
    numpy.ndarray of bool, shape (n_samples,)
        True where ``t_end_pos < start or t_pos > end``.
    """
    return np.asarray((t_end_pos < start) | (t_pos > end))


@dataclass(frozen=True)
class PurgedKFold:
    """Purged grouped time-series K-fold over contiguous bar blocks.

    Parameters
    ----------
    n_splits : int
        Number of contiguous time blocks K (spec ``k_folds`` = 5).
    purge_bars : int
        Bars removed before each test block (spec 24).
    embargo_bars : int
        Bars removed after each test block (spec 24).
    min_block_len_bars : int
        Smallest allowed block length in bars (spec 240, chosen with ``z_window``, ``beta_window``
        and ``M`` in mind).

    Notes
    -----
    Source: spec 004 §時系列CV・評価KPI 仕様 v1 (Purged Grouped TimeSeries K-Fold);
    config/retrain_policy.yaml ``cv``. See the module docstring for the purging rule.
    """

    n_splits: int = 5
    purge_bars: int = 24
    embargo_bars: int = 24
    min_block_len_bars: int = 240

    def __post_init__(self) -> None:
        if self.n_splits < 2:
            raise ValueError(f"n_splits must be >= 2, got {self.n_splits}")
        if self.purge_bars < 0 or self.embargo_bars < 0:
            raise ValueError("purge_bars and embargo_bars must be >= 0")
        if self.min_block_len_bars < 1:
            raise ValueError(f"min_block_len_bars must be >= 1, got {self.min_block_len_bars}")

    def blocks(self, n_bars: int) -> list[tuple[int, int]]:
        """Contiguous test blocks over bar positions ``[0, n_bars)``.

        Parameters
        ----------
        n_bars : int
            Number of bars spanned by the samples' ``t_pos``.

        Returns
        -------
        list of (int, int)
            ``(block_start, block_end)`` with ``block_end`` inclusive; lengths differ by at most
            one bar (the first ``n_bars % n_splits`` blocks get the extra bar).

        Raises
        ------
        ValueError
            If a block would be shorter than ``min_block_len_bars``.
        """
        if n_bars // self.n_splits < self.min_block_len_bars:
            raise ValueError(
                f"{n_bars} bars in {self.n_splits} blocks gives blocks of "
                f"{n_bars // self.n_splits} bars < min_block_len_bars={self.min_block_len_bars}"
            )
        base, extra = divmod(n_bars, self.n_splits)
        out: list[tuple[int, int]] = []
        start = 0
        for k in range(self.n_splits):
            length = base + (1 if k < extra else 0)
            out.append((start, start + length - 1))
            start += length
        return out

    def split(
        self, t_pos: npt.ArrayLike, t_end_pos: npt.ArrayLike, n_bars: int
    ) -> Iterator[tuple[IntArray, IntArray]]:
        """Yield ``(train_idx, test_idx)`` for each block, in time order.

        Parameters
        ----------
        t_pos : array_like of int, shape (n_samples,)
            Bar position of each sample, in ``[0, n_bars)``.
        t_end_pos : array_like of int, shape (n_samples,)
            Bar position at which each label is known (``>= t_pos``; may be ``>= n_bars``).
        n_bars : int
            Number of bars over which the blocks are laid out.

        Yields
        ------
        train_idx, test_idx : numpy.ndarray of int64
            Sorted indices into the sample arrays. ``test_idx`` are the samples with ``t_pos`` in
            the block; ``train_idx`` the other samples whose label interval does not overlap
            ``[block_start - purge_bars, test_end + embargo_bars]`` (module docstring). Every
            sample is in exactly one ``test_idx``.

        Raises
        ------
        ValueError
            On mismatched/non-integer inputs, ``t_end_pos < t_pos``, ``t_pos`` outside
            ``[0, n_bars)``, or blocks shorter than ``min_block_len_bars``.
        """
        tp, te = _as_positions(t_pos, t_end_pos)
        if tp.size and (tp.min() < 0 or tp.max() >= n_bars):
            raise ValueError(f"t_pos must lie in [0, {n_bars})")
        idx = np.arange(tp.size, dtype=np.int64)
        for start, end in self.blocks(n_bars):
            in_block = (tp >= start) & (tp <= end)
            test_end = max(end, int(te[in_block].max())) if in_block.any() else end
            keep = purged_train_mask(tp, te, start - self.purge_bars, test_end + self.embargo_bars)
            yield idx[keep & ~in_block], idx[in_block]


@dataclass(frozen=True)
class WalkForwardFold:
    """One expanding walk-forward step, in bar positions (half-open ranges).

    Attributes
    ----------
    train_start, train_end : int
        Training bars ``[train_start, train_end)`` (``train_start`` is always 0: expanding).
    test_start, test_end : int
        Out-of-sample bars ``[test_start, test_end)``; ``test_start == train_end``.
    """

    train_start: int
    train_end: int
    test_start: int
    test_end: int


def walk_forward_splits(
    n_bars: int,
    bars_per_day: float,
    step_days: float = 30,
    min_train_days: float = 360,
) -> list[WalkForwardFold]:
    """Expanding-window walk-forward folds.

    Parameters
    ----------
    n_bars : int
        Number of bars in the data.
    bars_per_day : float
        Conversion of days to bars, ``24h / timeframe`` (24 for 1h, 96 for 15m, 6 for 4h).
    step_days : float, default 30
        Test-window length and expansion step in days (spec ``wf_step_days``).
    min_train_days : float, default 360
        Length of the first training window in days (spec ``wf_min_train_days``).

    Returns
    -------
    list of WalkForwardFold
        Fold ``k`` trains on ``[0, min_train + k*step)`` and tests on the next ``step`` bars; the
        last test window is truncated at ``n_bars`` so the test windows tile
        ``[min_train, n_bars)`` without overlap. Bar counts are ``round(days * bars_per_day)``.

    Raises
    ------
    ValueError
        If the inputs are not positive or ``n_bars <= min_train`` (no out-of-sample bar).

    Notes
    -----
    Source: spec 004 §時系列CV・評価KPI 仕様 v1 (ウォークフォワード: Expanding Window, step 30 days,
    min train 360 days, converted to bars). Use :func:`walk_forward_indices` to select samples with
    the purge applied.
    """
    if bars_per_day <= 0 or step_days <= 0 or min_train_days <= 0:
        raise ValueError("bars_per_day, step_days and min_train_days must be > 0")
    step = round(step_days * bars_per_day)
    min_train = round(min_train_days * bars_per_day)
    if step < 1:
        raise ValueError(f"step of {step_days} days is < 1 bar at {bars_per_day} bars/day")
    if n_bars <= min_train:
        raise ValueError(
            f"n_bars={n_bars} leaves no out-of-sample bar after min_train={min_train} bars "
            f"({min_train_days} days x {bars_per_day} bars/day)"
        )
    folds: list[WalkForwardFold] = []
    train_end = min_train
    while train_end < n_bars:
        test_end = min(train_end + step, n_bars)
        folds.append(WalkForwardFold(0, train_end, train_end, test_end))
        train_end = test_end
    return folds


def walk_forward_indices(
    fold: WalkForwardFold,
    t_pos: npt.ArrayLike,
    t_end_pos: npt.ArrayLike,
    purge_bars: int = 24,
) -> tuple[IntArray, IntArray]:
    """Sample indices of a walk-forward fold with the purge applied.

    Parameters
    ----------
    fold : WalkForwardFold
        The fold.
    t_pos, t_end_pos : array_like of int, shape (n_samples,)
        Label intervals of the samples in bar positions.
    purge_bars : int, default 24
        Extra bars before ``test_start`` that a training label may not reach.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray of int64
        ``train_idx``: samples with ``t_pos`` in ``[train_start, train_end)`` and
        ``t_end_pos < test_start - purge_bars`` (their outcome was known before the test window,
        with margin). ``test_idx``: samples with ``t_pos`` in ``[test_start, test_end)``.

    Raises
    ------
    ValueError
        On mismatched inputs, ``t_end_pos < t_pos`` or ``purge_bars < 0``.
    """
    if purge_bars < 0:
        raise ValueError("purge_bars must be >= 0")
    tp, te = _as_positions(t_pos, t_end_pos)
    idx = np.arange(tp.size, dtype=np.int64)
    in_train = (tp >= fold.train_start) & (tp < fold.train_end)
    in_train &= te < fold.test_start - purge_bars
    in_test = (tp >= fold.test_start) & (tp < fold.test_end)
    return idx[in_train], idx[in_test]

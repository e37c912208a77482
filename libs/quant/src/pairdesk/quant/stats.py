"""Moving-block bootstrap confidence intervals of the strategy KPIs.

Spec 004 §時系列CV・評価KPI 仕様 v1 (採用判定 信頼区間: ブロックブートストラップ
``block_size_bars = 20`` で 95% CI) and §backtest-assets-engine (結果はブロックブートストラップで
CI 添付).

Resampling scheme (Künsch 1989 moving-block bootstrap, over **bars**):

* A resample of ``n`` bars is ``ceil(n / block)`` blocks of ``block`` consecutive bar positions,
  each block start drawn uniformly from ``0 .. n − block``, concatenated and truncated to ``n``.
* The resampled per-bar PnL is laid on the **original** bar timestamps and accumulated from the
  initial capital, so days, months and the calendar span are those of the data and every KPI is
  recomputed exactly as :func:`pairdesk.quant.metrics.compute_kpis` does.
* Trades follow their exit bar: a trade belongs to the bar holding its exit fill, and enters the
  resample once for every time that bar is drawn (trade-based KPIs: E/trade, win rate, PnL σ,
  trades/yr).
* The interval is the percentile interval ``(q_{(1−ci)/2}, q_{(1+ci)/2})`` of each KPI over the
  resamples (NaN resamples ignored).

Using the same ``seed`` and bar grid for two strategies draws the same blocks, so differences
of :func:`bootstrap_kpi_samples` rows are paired resamples (for "改善の下限が非負" checks).

References
----------
H. R. Künsch, "The jackknife and the bootstrap for general stationary observations",
Annals of Statistics 17(3), 1989.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit
from pairdesk.quant.metrics import (
    KPI_NAMES,
    KpiParams,
    _as_ts_ns,
    _f64,
    _kpi_core_nb,
    _period_last,
    infer_bar_ns,
)
from pairdesk.quant.typing import BoolArray, FloatArray, IntArray

__all__ = [
    "bootstrap_kpi_samples",
    "bootstrap_kpis",
    "moving_block_bootstrap_indices",
]


_NS_PER_DAY = 86_400_000_000_000


def _block_starts(n: int, block: int, n_samples: int, rng: np.random.Generator) -> IntArray:
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(block, int | np.integer) and 1 <= block <= n):
        raise ValueError(f"block must be an integer in 1..n={n}, got {block!r}")
    if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    n_blocks = -(-n // block)
    return rng.integers(0, n - block + 1, size=(n_samples, n_blocks), dtype=np.int64)


def moving_block_bootstrap_indices(
    n: int, block: int = 20, n_samples: int = 1000, rng: np.random.Generator | None = None
) -> IntArray:
    """Bar positions of moving-block bootstrap resamples.

    Parameters
    ----------
    n : int
        Number of bars in the series.
    block : int
        Block length in bars (spec ``block_bootstrap_size_bars`` = 20), ``1 <= block <= n``.
    n_samples : int
        Number of resamples.
    rng : numpy.random.Generator, optional
        Source of randomness (``default_rng()`` when omitted; pass a seeded one to reproduce).

    Returns
    -------
    ndarray of int64, shape (n_samples, n)
        Row ``s`` is ``ceil(n/block)`` runs ``start, start+1, …, start+block−1`` (starts uniform on
        ``0 .. n−block``), truncated to ``n`` positions.

    Raises
    ------
    ValueError
        If ``n``, ``block`` or ``n_samples`` is out of range.
    """
    g = rng if rng is not None else np.random.default_rng()
    starts = _block_starts(n, block, n_samples, g)
    idx = starts[:, :, None] + np.arange(block, dtype=np.int64)[None, None, :]
    return idx.reshape(n_samples, -1)[:, :n]


@njit(cache=True)
def _bootstrap_nb(
    bar_pnl: FloatArray,
    starts: IntArray,
    block: int,
    day_last: BoolArray,
    month_last: BoolArray,
    e0: float,
    days: float,
    periods_per_year: float,
    days_per_year: float,
    bar_cnt: FloatArray,
    bar_wins: FloatArray,
    bar_roc: FloatArray,
    bar_mean: FloatArray,
    bar_m2: FloatArray,
    out: FloatArray,
) -> None:
    """KPIs of every resample into ``out`` (n_samples, len(KPI_NAMES))."""
    n = bar_pnl.shape[0]
    n_samples, n_blocks = starts.shape
    equity = np.empty(n)
    rets = np.empty(n)
    for s in range(n_samples):
        eq = e0
        p = 0
        cnt = 0.0
        wins = 0.0
        roc = 0.0
        mean = 0.0
        m2 = 0.0
        for b in range(n_blocks):
            st = starts[s, b]
            for o in range(block):
                if p >= n:
                    break
                src = st + o
                eq += bar_pnl[src]
                equity[p] = eq
                p += 1
                c = bar_cnt[src]
                if c > 0.0:
                    # Chan et al. parallel combination of (count, mean, M2)
                    tot = cnt + c
                    delta = bar_mean[src] - mean
                    mean += delta * c / tot
                    m2 += bar_m2[src] + delta * delta * cnt * c / tot
                    cnt = tot
                    wins += bar_wins[src]
                    roc += bar_roc[src]
        _kpi_core_nb(
            equity,
            day_last,
            month_last,
            e0,
            days,
            periods_per_year,
            days_per_year,
            cnt,
            wins,
            roc,
            m2,
            rets,
            out[s],
        )


def bootstrap_kpi_samples(
    bar_pnl: npt.ArrayLike,
    bar_ts: npt.ArrayLike,
    trade_exit_bar: npt.ArrayLike,
    trade_pnl: npt.ArrayLike,
    trade_returns: npt.ArrayLike,
    *,
    initial_capital: float,
    bar_ns: int | None = None,
    block: int = 20,
    n_samples: int = 1000,
    seed: int | None = 42,
    params: KpiParams | None = None,
) -> FloatArray:
    """KPIs of every moving-block resample (columns in ``KPI_NAMES`` order).

    Parameters
    ----------
    bar_pnl : array_like of float, shape (n,)
        Per-bar PnL in USD, ``equity[t] − equity[t−1]`` with ``equity[−1] = initial_capital``
        (:attr:`pairdesk.quant.backtest.BacktestResult.bar_pnl`).
    bar_ts : array_like, shape (n,)
        Bar open times (int64 ns UTC, datetime64 or DatetimeIndex), strictly increasing.
    trade_exit_bar : array_like of int, shape (m,)
        Bar position (0..n−1) of each trade's exit fill.
    trade_pnl, trade_returns : array_like of float, shape (m,)
        Net PnL (USD) and return on capital of each trade.
    initial_capital : float
        Equity before the first bar, > 0.
    bar_ns : int, optional
        Bar length in ns (inferred when omitted).
    block : int
        Block length in bars, default 20 (spec ``block_bootstrap_size_bars``).
    n_samples : int
        Number of resamples, default 1000 (backtest_policy ``kpi.bootstrap_samples``).
    seed : int, optional
        Seed of ``numpy.random.default_rng``; default 42 (backtest_policy ``kpi.seed``).
    params : KpiParams, optional
        Annualisation conventions.

    Returns
    -------
    ndarray of float64, shape (n_samples, len(KPI_NAMES))
        Row ``s`` holds the KPIs of resample ``s`` (row ``s`` of
        ``moving_block_bootstrap_indices(n, block, n_samples, default_rng(seed))``).

    Raises
    ------
    ValueError
        On shape mismatches, non-finite PnL, exit bars outside ``0..n−1``, or bad sizes.
    """
    kp = params or KpiParams()
    t = _as_ts_ns(bar_ts)
    pnl = _f64(bar_pnl)
    n = t.shape[0]
    if pnl.shape != (n,) or n < 1:
        raise ValueError(
            f"bar_pnl and bar_ts must be 1-d of equal length, got {pnl.shape}, {t.shape}"
        )
    if not np.isfinite(pnl).all():
        raise ValueError("bar_pnl must be finite")
    if n > 1 and (np.diff(t) <= 0).any():
        raise ValueError("bar_ts must be strictly increasing")
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be > 0, got {initial_capital!r}")
    ex = np.asarray(trade_exit_bar, dtype=np.int64)
    tp = np.asarray(trade_pnl, dtype=np.float64)
    tr = np.asarray(trade_returns, dtype=np.float64)
    if not (ex.shape == tp.shape == tr.shape and ex.ndim == 1):
        raise ValueError("trade_exit_bar, trade_pnl and trade_returns must be 1-d of equal length")
    if ex.size and (ex.min() < 0 or ex.max() >= n):
        raise ValueError(f"trade_exit_bar must lie in 0..{n - 1}")
    starts = _block_starts(n, block, n_samples, np.random.default_rng(seed))
    b = infer_bar_ns(t) if bar_ns is None else int(bar_ns)
    days = float(t[-1] + b - t[0]) / _NS_PER_DAY
    # per-bar trade aggregates (count, wins, Σ roc, mean and M2 of PnL of the trades exiting there)
    cnt = np.bincount(ex, minlength=n).astype(np.float64)
    wins = np.asarray(np.bincount(ex, weights=(tp > 0).astype(np.float64), minlength=n), np.float64)
    roc = np.asarray(np.bincount(ex, weights=tr, minlength=n), np.float64)
    sums = np.asarray(np.bincount(ex, weights=tp, minlength=n), np.float64)
    mean = np.divide(sums, cnt, out=np.zeros(n), where=cnt > 0)
    m2 = np.asarray(np.bincount(ex, weights=(tp - mean[ex]) ** 2, minlength=n), np.float64)
    out = np.empty((n_samples, len(KPI_NAMES)))
    _bootstrap_nb(
        pnl,
        starts,
        int(block),
        _period_last(t, "D"),
        _period_last(t, "M"),
        float(initial_capital),
        days,
        float(kp.periods_per_year),
        float(kp.days_per_year),
        cnt,
        wins,
        roc,
        mean,
        m2,
        out,
    )
    return out


def bootstrap_kpis(
    bar_pnl: npt.ArrayLike,
    bar_ts: npt.ArrayLike,
    trade_exit_bar: npt.ArrayLike,
    trade_pnl: npt.ArrayLike,
    trade_returns: npt.ArrayLike,
    *,
    initial_capital: float,
    bar_ns: int | None = None,
    block: int = 20,
    n_samples: int = 1000,
    seed: int | None = 42,
    ci: float = 0.95,
    params: KpiParams | None = None,
) -> dict[str, tuple[float, float]]:
    """Moving-block bootstrap percentile intervals of every KPI (default 95%).

    Parameters are those of :func:`bootstrap_kpi_samples`, plus ``ci`` (coverage in (0, 1)).

    Returns
    -------
    dict of str to (float, float)
        ``{kpi: (lo, hi)}`` for every name in ``KPI_NAMES``: the ``(1−ci)/2`` and ``(1+ci)/2``
        percentiles (linear interpolation) of the finite resample values; ``(nan, nan)`` when no
        resample defines the KPI.

    Raises
    ------
    ValueError
        If ``ci`` is not in (0, 1), and as :func:`bootstrap_kpi_samples`.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    samples = bootstrap_kpi_samples(
        bar_pnl,
        bar_ts,
        trade_exit_bar,
        trade_pnl,
        trade_returns,
        initial_capital=initial_capital,
        bar_ns=bar_ns,
        block=block,
        n_samples=n_samples,
        seed=seed,
        params=params,
    )
    q = (100 * (1 - ci) / 2, 100 * (1 + ci) / 2)
    res: dict[str, tuple[float, float]] = {}
    for j, name in enumerate(KPI_NAMES):
        col = samples[:, j]
        col = col[np.isfinite(col)]
        if col.size == 0:
            res[name] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(col, q)
            res[name] = (float(lo), float(hi))
    return res

"""Incremental (live) features v1: one closed bar per leg in, the features of that bar out.

:class:`PairFeatureState` holds preallocated numpy state (ring buffers over the windows, running
window sums, sorted windows for the ATR medians, EMA/Wilder accumulators) and runs the same compiled
loop as :func:`pairdesk.quant.features.compute_features` on a batch of one bar. Feeding the aligned
bars of a pair one by one therefore reproduces the batch rows exactly (same code, same operations),
and each update costs work bounded by the window sizes, independent of how many bars were seen
(a few microseconds per pair-bar, mostly the Python call).

Notes
-----
Formulas, choices and warm-up rules: :mod:`pairdesk.quant.features`. The caller aligns the legs
(only timestamps where both legs have a closed, usable bar are fed; never forward-filled), exactly
as :func:`pairdesk.quant.features.align_pair` does for the batch.

References
----------
spec 004 §特徴量仕様 v1 (計算・更新ポリシー: incremental update once per closed bar);
``docs/quant-contracts.md`` §Features v1.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pairdesk.quant import _feature_kernels as _k
from pairdesk.quant.features import FEATURE_COLUMNS, OUTPUT_COLUMNS, FeatureParams

__all__ = ["PairFeatureState"]


class PairFeatureState:
    """Running state of features v1 for one pair, updated once per closed common bar.

    Parameters
    ----------
    params : FeatureParams, optional
        Windows and constants; defaults from ``config/pipeline_policy.yaml``.

    Notes
    -----
    After ``k`` updates the values returned equal row ``k - 1`` of
    ``compute_features(bars_a, bars_b, params)`` on the same bars (bit-identical: same kernel), for
    either hedge-ratio method. The first ``params.warmup_bars`` updates return all-NaN features.
    :meth:`update_array` returns the 21 :data:`~pairdesk.quant.features.FEATURE_COLUMNS`;
    :meth:`update_output_array` and :meth:`update` also the
    :data:`~pairdesk.quant.features.EXTRA_COLUMNS` (``kappa``).

    References
    ----------
    spec 004 §特徴量仕様 v1.
    """

    __slots__ = (
        "_af",
        "_ai",
        "_fp",
        "_ip",
        "_last_ns",
        "_ohlc_a",
        "_ohlc_b",
        "_out",
        "_params",
        "_rb",
        "_sc",
        "_sf",
        "_si",
        "_sw",
    )

    def __init__(self, params: FeatureParams | None = None) -> None:
        self._params = FeatureParams() if params is None else params
        self._ip, self._fp = self._params._packed()
        self._si, self._sf, self._rb, self._sw, self._sc, self._af, self._ai = _k.new_state(
            self._ip
        )
        self._ohlc_a = np.empty((1, 4), dtype=np.float64)  # the bar being fed, as a 1-row batch
        self._ohlc_b = np.empty((1, 4), dtype=np.float64)
        self._out = np.full((_k.N_OUT, 1), np.nan)  # output-major, as the batch buffer
        self._last_ns: int | None = None

    @property
    def params(self) -> FeatureParams:
        """The parameters this state was built with."""
        return self._params

    @property
    def n_bars(self) -> int:
        """Number of bars consumed so far."""
        return int(self._si[_k.SI_NBARS])

    @property
    def last_ts_ns(self) -> int | None:
        """``ts_utc`` of the last consumed bar in ns since the Unix epoch (None before the first)."""
        return self._last_ns

    @property
    def huber_windows(self) -> int:
        """How many beta windows so far used the Huber re-estimate (diagnostic)."""
        return int(self._si[_k.SI_NHUBER])

    @staticmethod
    def _ts_ns(ts_utc: pd.Timestamp | int) -> int:
        if isinstance(ts_utc, pd.Timestamp):
            if ts_utc.tzinfo is None:
                raise ValueError("ts_utc must be tz-aware (UTC) or int nanoseconds since the epoch")
            return int(ts_utc.value)
        if isinstance(ts_utc, int | np.integer) and not isinstance(ts_utc, bool):
            return int(ts_utc)
        raise ValueError(
            f"ts_utc must be a pandas Timestamp or int ns, got {type(ts_utc).__name__}"
        )

    def _step(
        self,
        ts_utc: pd.Timestamp | int,
        bar_a: tuple[float, float, float, float],
        bar_b: tuple[float, float, float, float],
    ) -> np.ndarray:
        """Validate, run the kernel on a 1-bar batch; return the internal buffer (reused next call)."""
        ns = self._ts_ns(ts_utc)
        if self._last_ns is not None and ns <= self._last_ns:
            raise ValueError(
                f"ts_utc must be strictly increasing: {pd.Timestamp(ns, tz='UTC')} after "
                f"{pd.Timestamp(self._last_ns, tz='UTC')}"
            )
        try:
            oa, ha, la, ca = bar_a
            ob, hb, lb, cb = bar_b
            oa, ha, la, ca = float(oa), float(ha), float(la), float(ca)
            ob, hb, lb, cb = float(ob), float(hb), float(lb), float(cb)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "bar_a and bar_b must each be (open, high, low, close) numbers"
            ) from exc
        self._ohlc_a[0] = (oa, ha, la, ca)
        self._ohlc_b[0] = (ob, hb, lb, cb)
        status = _k.run_bars(
            self._ip, self._fp, self._si, self._sf, self._rb, self._sw, self._sc, self._af,
            self._ai, self._ohlc_a, self._ohlc_b, self._out,
        )  # fmt: skip
        if status >= 0:
            leg, bar = ("a", bar_a) if self._bad_leg(oa, ha, la, ca) else ("b", bar_b)
            raise ValueError(f"bar_{leg} has a NaN, infinite or non-positive price: {tuple(bar)!r}")
        self._last_ns = ns
        return self._out.ravel()

    @staticmethod
    def _bad_leg(o: float, h: float, lo: float, c: float) -> bool:
        """True when a price of the bar is NaN, infinite or <= 0 (the kernel's refusal test)."""
        return not all(0.0 < v < math.inf for v in (o, h, lo, c))

    def update_array(
        self,
        ts_utc: pd.Timestamp | int,
        bar_a: tuple[float, float, float, float],
        bar_b: tuple[float, float, float, float],
    ) -> np.ndarray:
        """Consume one closed bar per leg; return the features as a float64 array.

        Parameters
        ----------
        ts_utc : pandas.Timestamp or int
            Common bar open time (tz-aware, compared in UTC) or ns since the Unix epoch; must be
            strictly later than the previous update's.
        bar_a, bar_b : tuple of 4 float
            ``(open, high, low, close)`` of leg A / leg B for that bar, price units.

        Returns
        -------
        numpy.ndarray
            Shape ``(21,)``, float64, in :data:`~pairdesk.quant.features.FEATURE_COLUMNS` order; all
            NaN during the warm-up. A new array each call.

        Raises
        ------
        ValueError
            Timestamp not after the previous one; a bar is not 4 values; a price is NaN,
            infinite or <= 0. The state is unchanged when it raises.
        """
        return self._step(ts_utc, bar_a, bar_b)[: len(FEATURE_COLUMNS)].copy()

    def update_output_array(
        self,
        ts_utc: pd.Timestamp | int,
        bar_a: tuple[float, float, float, float],
        bar_b: tuple[float, float, float, float],
    ) -> np.ndarray:
        """Consume one closed bar per leg; return every output column as a float64 array.

        Parameters and errors as :meth:`update_array`. Returns shape ``(22,)`` in
        :data:`~pairdesk.quant.features.OUTPUT_COLUMNS` order (the 21 features, then ``kappa``),
        equal to the row of :func:`~pairdesk.quant.features.compute_features`.
        """
        return self._step(ts_utc, bar_a, bar_b).copy()

    def update(
        self,
        ts_utc: pd.Timestamp | int,
        bar_a: tuple[float, float, float, float],
        bar_b: tuple[float, float, float, float],
    ) -> dict[str, float]:
        """Consume one closed bar per leg; return ``{feature: value}`` for that bar.

        Parameters and errors as :meth:`update_array`; the dict has the keys of
        :data:`~pairdesk.quant.features.OUTPUT_COLUMNS` in order (the 21 features, then
        ``kappa``), NaN values during the warm-up.
        """
        return dict(zip(OUTPUT_COLUMNS, self._step(ts_utc, bar_a, bar_b).tolist(), strict=True))

"""Data-quality rules for one symbol's bars (spec 004 §data-assets-pipeline 仕様 v1 "DQ ルール",
§ラベリング "データ品質（学習前処理）", §監視・運用 (data pipeline) v1 "隔離").

:func:`apply_dq` turns raw bars into the canonical frame (``quality_flag``, ``imputed``, ``spike``)
and :func:`partition_dq` aggregates it per UTC month into missing/outlier rates and the
quarantine decision. Pure: DataFrames in, DataFrames/dataclasses out.

Rules, in the order they run (docs/quant-contracts.md §Bars; choices where the spec is ambiguous
are marked *choice*)
----------------------------------------------------------------------------------------------
1. **Non-positive prices.** A row with any of open/high/low/close ``<= 0`` is dropped and counted
   (``dropped_nonpositive``); its timestamp then counts as absent (rule 5).
2. **OHLC consistency.** ``high < max(open, close)`` or ``low > min(open, close)`` or
   ``high < low`` -> ``quality_flag = "outlier"`` (counted as ``ohlc_inconsistent``). The close of
   such a bar still takes part in rules 3-4 (*choice*).
3. **Return outliers** (``outlier_sigma = 8``, ``outlier_window_bars = 180``). With ``c`` the
   closes of the kept rows in time order and ``ref`` the close of the last bar *not* flagged by
   this rule, bar ``t`` is an outlier iff

   ``|ln(c_t / ref)| > k·σ_t``  and  ``|ln(c_t / c_{t-1})| > k·σ_t``,

   where ``σ_t`` is the sample standard deviation (ddof = 1) of the previous ``W`` *accepted*
   returns ``ln(c_u / ref_u)`` (returns of the bars before ``t`` that were not flagged, each
   measured from the last accepted close before it). No bar is flagged before ``W`` returns
   have been accepted (warm-up) or when ``σ_t = 0``. Only the past enters, so there is no
   look-ahead. *Choice*: with no outliers this is exactly the textbook rule
   ``|r_t| > k·std(r_{t-W..t-1})``; the two refinements make a single bad print flag exactly one
   bar (the bar after it is close to ``ref``) and a genuine level shift flag exactly one bar (the
   bar after it is close to ``c_{t-1}``) instead of the bad print's return and its reversal both
   inflating ``σ`` for ``W`` bars. Returns span closures (Friday close -> Sunday open).
4. **Spikes** (``spike_k = 12``, ``spike_window_bars = 180``). ``d_t = |c_t - c_{t-1}|`` over
   consecutive kept rows; ``spike_t = d_t > k · median(d_{t-W}, ..., d_{t-1})`` (previous ``W``
   values only; no flag during warm-up or when the median is 0). Spikes are kept
   (``spike = True``) and counted.
5. **Missing bars.** Expected bars (:meth:`SessionCalendar.expected_bar_opens`) between the first
   and the last input row with no kept row are *absent*; only expected bars count, so
   weekends, daily breaks, exchange holidays and DST shifts of the session clock never produce
   an absent bar. Absent bars form runs: consecutive expected bars inside one session (sessions
   per timeframe: a pause shorter than one bar does not split one, see
   :mod:`pairdesk.quant.sessions`). A run of length ``m <= missing_fill_max_run`` (2) whose
   neighbours ``L`` (the expected bar just before) and ``R`` (just after) are both present,
   flagged ``ok`` and in the same session is imputed (*choice*, "前方埋め + 線形補間" made precise), for
   ``j = 1..m``::

       close_j = close_L + (close_R - close_L) · j / (m + 1)     # linear interpolation
       open_j  = close_{j-1}   (close_0 = close_L)               # forward fill of the last close
       high_j  = max(open_j, close_j);  low_j = min(open_j, close_j)
       volume_j = NaN                                            # unknown, not 0

   with ``quality_flag = "missing"``, ``imputed = True``, ``spike = False``. Every other absent
   bar is *excluded* (no row) and listed in :attr:`DQResult.missing`. Nothing is filled across a
   closure (weekend, holiday, daily break): ``L``, the run and ``R`` must share one session, so
   a run touching a session edge is never imputed. Imputed bars do not enter rules 3-4.
6. **Off-session rows** (a bar the source printed where the calendar expects none, e.g. after a
   holiday early close) are kept with their own flag and counted as ``off_session``.

Rates (per partition, *choice*: denominators are the partition's expected bars)
    ``missing_rate = absent / expected`` (absent = imputed + excluded, i.e. every expected bar the
    source did not deliver with a positive price) and ``outlier_rate = outlier rows / expected``
    (outlier rows = return outliers + OHLC-inconsistent rows, counted once). A partition with no
    expected bar has both rates 0. Quarantine when ``missing_rate > missing_rate_max`` (0.05) or
    ``outlier_rate > outlier_rate_max`` (0.08), strict inequalities as in the spec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from pairdesk.quant.sessions import SessionCalendar, timeframe_to_timedelta

__all__ = [
    "CANONICAL_COLUMNS",
    "DQCounters",
    "DQParams",
    "DQResult",
    "apply_dq",
    "partition_dq",
]

#: Columns of :attr:`DQResult.bars` (index ``ts_utc``).
CANONICAL_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quality_flag",
    "imputed",
    "spike",
)
_PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class DQParams:
    """DQ rule parameters (spec 004 §data-assets-pipeline; ``config/pipeline_policy.yaml``
    ``dq_rules`` and ``dq_thresholds``).

    Attributes
    ----------
    missing_fill_max_run : int
        Longest run of absent expected bars that is imputed (bars). Default 2.
    outlier_sigma : float
        ``k`` of the return-outlier rule (multiples of the rolling std). Default 8.0.
    outlier_window_bars : int
        Accepted returns in the rolling std (bars). Default 180.
    spike_k : float
        Multiple of the rolling median ``|Δclose|`` above which a bar is a spike. Default 12.0
        (``dq_spike_k`` in the YAML).
    spike_window_bars : int
        ``|Δclose|`` values in the rolling median (bars). Default 180.
    missing_rate_max : float
        Quarantine when a partition's missing rate (fraction, not percent) exceeds it. Default 0.05.
    outlier_rate_max : float
        Quarantine when a partition's outlier rate (fraction) exceeds it. Default 0.08.
    """

    missing_fill_max_run: int = 2
    outlier_sigma: float = 8.0
    outlier_window_bars: int = 180
    spike_k: float = 12.0
    spike_window_bars: int = 180
    missing_rate_max: float = 0.05
    outlier_rate_max: float = 0.08

    def __post_init__(self) -> None:
        if self.missing_fill_max_run < 0:
            raise ValueError("missing_fill_max_run must be >= 0")
        if self.outlier_window_bars < 2 or self.spike_window_bars < 1:
            raise ValueError("outlier_window_bars must be >= 2 and spike_window_bars >= 1")
        if not (self.outlier_sigma > 0 and self.spike_k > 0):
            raise ValueError("outlier_sigma and spike_k must be > 0")
        if not (0 <= self.missing_rate_max <= 1 and 0 <= self.outlier_rate_max <= 1):
            raise ValueError("missing_rate_max and outlier_rate_max are fractions in [0, 1]")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``__meta.json`` ``window_params``)."""
        return asdict(self)


@dataclass(frozen=True)
class DQCounters:
    """Counts of one :func:`apply_dq` run (bars).

    ``rows_in = rows_kept + dropped_nonpositive``; ``absent = imputed + missing``;
    ``outliers`` = rows flagged ``outlier`` (return outliers and/or OHLC-inconsistent).
    """

    rows_in: int = 0
    dropped_nonpositive: int = 0
    rows_kept: int = 0
    ohlc_inconsistent: int = 0
    return_outliers: int = 0
    outliers: int = 0
    spikes: int = 0
    expected: int = 0
    absent: int = 0
    imputed: int = 0
    missing: int = 0
    off_session: int = 0

    def as_dict(self) -> dict[str, int]:
        """Plain dict of the counters."""
        return {k: int(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DQResult:
    """Output of :func:`apply_dq`.

    Attributes
    ----------
    bars : DataFrame, index ``ts_utc`` (UTC, unit us, sorted, unique)
        Kept input rows plus imputed rows, columns :data:`CANONICAL_COLUMNS`: float64
        ``open/high/low/close/volume`` (volume NaN when unknown), ``quality_flag`` in
        ``{"ok", "outlier", "missing"}``, bool ``imputed`` and ``spike``.
    expected : DatetimeIndex
        Expected bar opens from the first to the last input row (inclusive).
    missing : DatetimeIndex
        Expected bars with no row and not imputed (excluded).
    dropped : DataFrame
        Raw rows dropped for non-positive prices (same columns as the input prices + volume).
    detail : DataFrame, index = kept input rows
        Per-row diagnostics: ``return_outlier``, ``ohlc_inconsistent``, ``off_session`` (bool),
        ``sigma`` (rolling std used by rule 3, NaN in warm-up), ``spike_median`` (rolling median
        ``|Δclose|`` of rule 4, NaN in warm-up).
    counters : DQCounters
    timeframe : str
    """

    bars: pd.DataFrame
    expected: pd.DatetimeIndex
    missing: pd.DatetimeIndex
    dropped: pd.DataFrame
    detail: pd.DataFrame
    counters: DQCounters
    timeframe: str
    params: DQParams = field(default_factory=DQParams)


@njit(cache=True)
def _outlier_kernel(close: np.ndarray, k: float, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rule 3 (see module docstring): flags and the sigma used at each bar (NaN in warm-up)."""
    n = close.size
    flags = np.zeros(n, dtype=np.bool_)
    sigma = np.full(n, np.nan)
    buf = np.empty(window)
    count = 0
    pos = 0
    ref = close[0] if n > 0 else 1.0
    for t in range(1, n):
        r_ref = math.log(close[t] / ref)
        r_prev = math.log(close[t] / close[t - 1])
        flagged = False
        if count >= window:
            m = 0.0
            for i in range(window):
                m += buf[i]
            m /= window
            ss = 0.0
            for i in range(window):
                ss += (buf[i] - m) ** 2
            s = math.sqrt(ss / (window - 1))
            sigma[t] = s
            if s > 0.0 and abs(r_ref) > k * s and abs(r_prev) > k * s:
                flagged = True
        if flagged:
            flags[t] = True
        else:
            buf[pos] = r_ref
            pos = (pos + 1) % window
            count += 1
            ref = close[t]
    return flags, sigma


def _prepare(bars: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        raise TypeError("bars must be a pandas DataFrame")
    df = bars
    if "ts_utc" in df.columns:
        df = df.set_index("ts_utc")
    missing_cols = [c for c in _PRICES if c not in df.columns]
    if missing_cols:
        raise ValueError(f"bars lack column(s) {missing_cols}")
    try:
        idx = pd.DatetimeIndex(df.index)
    except (TypeError, ValueError) as exc:
        raise ValueError("bars must be indexed by ts_utc timestamps") from exc
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    idx = idx.as_unit("us").rename("ts_utc")
    if idx.hasnans:
        raise ValueError("bars index contains NaT")
    if not idx.is_unique or not idx.is_monotonic_increasing:
        raise ValueError("bars index must be strictly increasing (sorted, no duplicate ts_utc)")
    out = pd.DataFrame(index=idx)
    for c in _PRICES:
        out[c] = pd.to_numeric(df[c], errors="raise").to_numpy(dtype=np.float64)
    out["volume"] = (
        pd.to_numeric(df["volume"], errors="raise").to_numpy(dtype=np.float64)
        if "volume" in df.columns
        else np.nan
    )
    if out[list(_PRICES)].isna().to_numpy().any():
        raise ValueError("bars contain NaN prices")
    return out


def apply_dq(
    bars: pd.DataFrame,
    calendar: SessionCalendar,
    timeframe: str,
    params: DQParams | None = None,
) -> DQResult:
    """Apply the DQ rules of spec 004 to one symbol's bars.

    Parameters
    ----------
    bars : DataFrame, shape (n, >= 4)
        Indexed by bar-open ``ts_utc`` (or with a ``ts_utc`` column); columns ``open, high, low,
        close`` and optionally ``volume``. Naive timestamps are read as UTC. Must be sorted with
        unique timestamps on the calendar's bar grid (``calendar.grid``).
    calendar : SessionCalendar
        Sessions of the symbol (which bars are expected) and its bar grid.
    timeframe : str
        ``"15m"``, ``"1h"``, ``"4h"``, ``"1d"``, ...
    params : DQParams, optional
        Rule parameters (defaults = spec 004).

    Returns
    -------
    DQResult
        See the module docstring for every rule and :class:`DQResult` for the fields.

    Raises
    ------
    ValueError
        Bad timeframe, missing price columns, NaN prices, unsorted/duplicate timestamps, or a
        timestamp off the timeframe grid.
    """
    p = params or DQParams()
    step = int(timeframe_to_timedelta(timeframe).value // 1000)
    df = _prepare(bars)
    off_grid = ~calendar.on_grid(df.index, timeframe) if len(df) else np.zeros(0, dtype=bool)
    if off_grid.any():
        a = calendar.grid.describe()
        raise ValueError(
            f"timestamp {df.index[off_grid][0]} is not on the {timeframe} grid "
            f"(bar anchor {a['timezone']} {a['offset']})"
        )

    # rule 1: non-positive prices
    bad_price = (df[list(_PRICES)] <= 0).any(axis=1).to_numpy()
    dropped = df.loc[bad_price].copy()
    kept = df.loc[~bad_price].copy()
    n = len(kept)
    close = kept["close"].to_numpy()

    # rule 2: OHLC consistency
    o, h, lo = kept["open"].to_numpy(), kept["high"].to_numpy(), kept["low"].to_numpy()
    ohlc_bad = (h < np.maximum(o, close)) | (lo > np.minimum(o, close)) | (h < lo)

    # rule 3: return outliers (no look-ahead)
    if n:
        ret_out, sigma = _outlier_kernel(close, float(p.outlier_sigma), int(p.outlier_window_bars))
    else:
        ret_out, sigma = np.zeros(0, dtype=bool), np.zeros(0)

    # rule 4: spikes vs median of the previous W |Δclose|
    d = pd.Series(close).diff().abs()
    med = d.rolling(p.spike_window_bars, min_periods=p.spike_window_bars).median().shift(1)
    dv, mv = d.to_numpy(), med.to_numpy()
    with np.errstate(invalid="ignore"):
        spike = np.nan_to_num((mv > 0) & (dv > p.spike_k * mv), nan=False).astype(bool)

    flag = np.where(ret_out | ohlc_bad, "outlier", "ok")

    # rule 5: missing bars and imputation
    tf = pd.Timedelta(microseconds=step)
    if len(df):
        expected = calendar.expected_bar_opens(df.index[0], df.index[-1] + tf, timeframe)
    else:
        expected = pd.DatetimeIndex([], dtype="datetime64[us, UTC]", name="ts_utc")
    expected = expected.as_unit("us").rename("ts_utc")
    kt = pd.DatetimeIndex(kept.index).asi8
    et = expected.asi8
    absent_mask = ~np.isin(et, kt)
    absent = et[absent_mask]
    sid_kept = calendar.session_id(kept.index, timeframe) if n else np.zeros(0, dtype=np.int64)
    off_session = sid_kept < 0
    imputed_rows: list[tuple[int, float, float, float, float]] = []
    if absent.size:
        sid_abs = calendar.session_id(_from_us(absent), timeframe)
        pos = np.flatnonzero(absent_mask)  # positions of the absent bars among the expected
        brk = np.flatnonzero((np.diff(pos) != 1) | (np.diff(sid_abs) != 0)) + 1
        starts = np.concatenate(([0], brk))
        ends = np.concatenate((brk, [absent.size]))
        for a, b in zip(starts, ends, strict=True):
            m = int(b - a)
            if m > p.missing_fill_max_run or pos[a] == 0 or pos[b - 1] + 1 >= et.size:
                continue
            sid = sid_abs[a]
            il = _find(kt, int(et[pos[a] - 1]))
            ir = _find(kt, int(et[pos[b - 1] + 1]))
            if il < 0 or ir < 0:
                continue
            if sid_kept[il] != sid or sid_kept[ir] != sid or flag[il] != "ok" or flag[ir] != "ok":
                continue
            cl, cr = close[il], close[ir]
            prev = cl
            for j in range(1, m + 1):
                cj = cl + (cr - cl) * j / (m + 1)
                imputed_rows.append(
                    (int(absent[a + j - 1]), prev, max(prev, cj), min(prev, cj), cj)
                )
                prev = cj

    canon = kept.copy()
    canon["quality_flag"] = flag
    canon["imputed"] = False
    canon["spike"] = spike
    if imputed_rows:
        arr = np.array(imputed_rows, dtype=np.float64)
        imp = pd.DataFrame(
            {
                "open": arr[:, 1],
                "high": arr[:, 2],
                "low": arr[:, 3],
                "close": arr[:, 4],
                "volume": np.nan,
                "quality_flag": "missing",
                "imputed": True,
                "spike": False,
            },
            index=_from_us(np.array([r[0] for r in imputed_rows], dtype=np.int64)),
        )
        canon = pd.concat([canon, imp]).sort_index()
    canon.index = canon.index.rename("ts_utc")
    canon = canon[list(CANONICAL_COLUMNS)]
    canon["imputed"] = canon["imputed"].astype(bool)
    canon["spike"] = canon["spike"].astype(bool)

    imputed_ts = np.array([r[0] for r in imputed_rows], dtype=np.int64)
    missing = _from_us(np.setdiff1d(absent, imputed_ts))
    detail = pd.DataFrame(
        {
            "return_outlier": ret_out.astype(bool),
            "ohlc_inconsistent": ohlc_bad.astype(bool),
            "off_session": off_session.astype(bool),
            "sigma": sigma,
            "spike_median": mv,
        },
        index=kept.index,
    )
    counters = DQCounters(
        rows_in=len(df),
        dropped_nonpositive=int(bad_price.sum()),
        rows_kept=n,
        ohlc_inconsistent=int(ohlc_bad.sum()),
        return_outliers=int(ret_out.sum()),
        outliers=int((ret_out | ohlc_bad).sum()),
        spikes=int(spike.sum()),
        expected=int(et.size),
        absent=int(absent.size),
        imputed=len(imputed_rows),
        missing=len(missing),
        off_session=int(off_session.sum()),
    )
    return DQResult(
        bars=canon,
        expected=expected,
        missing=missing.rename("ts_utc"),
        dropped=dropped,
        detail=detail,
        counters=counters,
        timeframe=timeframe,
        params=p,
    )


#: Integer counters of :func:`partition_dq`, per month (what ``__meta.json`` stores as counts).
PARTITION_COUNT_COLUMNS: tuple[str, ...] = (
    "rows",
    "expected",
    "absent",
    "imputed",
    "missing",
    "outliers",
    "return_outliers",
    "ohlc_inconsistent",
    "spikes",
    "dropped_nonpositive",
    "off_session",
)

_PARTITION_COLUMNS = (
    "start",
    "end",
    *PARTITION_COUNT_COLUMNS,
    "missing_rate",
    "outlier_rate",
    "quarantined",
    "reason",
)


def partition_dq(result: DQResult, params: DQParams | None = None) -> pd.DataFrame:
    """Per-UTC-month DQ summary and quarantine decision (spec 004 §監視・運用 隔離: partition key
    ``timeframe / symbol / YYYY-MM``).

    Parameters
    ----------
    result : DQResult
        Output of :func:`apply_dq`.
    params : DQParams, optional
        Thresholds; defaults to ``result.params``.

    Returns
    -------
    DataFrame, one row per month ``"YYYY-MM"`` (index ``month``) from the first to the last
    month touched by the input, columns:

    ``start``, ``end`` : Timestamp (UTC)
        The month clipped to the covered range ``[first input bar, last input bar + timeframe)``.
    ``rows`` : int
        Rows of ``result.bars`` in the month (kept + imputed).
    ``expected``, ``absent``, ``imputed``, ``missing`` : int
        Expected bars, absent expected bars, of which imputed / excluded.
    ``outliers``, ``return_outliers``, ``ohlc_inconsistent``, ``spikes``, ``dropped_nonpositive``,
    ``off_session`` : int
    ``missing_rate``, ``outlier_rate`` : float
        Fractions of ``expected`` (0 when ``expected == 0``).
    ``quarantined`` : bool
        ``missing_rate > missing_rate_max or outlier_rate > outlier_rate_max``.
    ``reason`` : str
        ``""`` or e.g. ``"missing_rate 0.0712 > 0.05"`` (several joined with ``"; "``).
    """
    p = params or result.params
    tf = timeframe_to_timedelta(result.timeframe)
    bars, det = result.bars, result.detail
    all_ts = bars.index.union(result.expected).union(result.dropped.index).union(result.missing)
    if len(all_ts) == 0:
        return pd.DataFrame(columns=list(_PARTITION_COLUMNS), index=pd.Index([], name="month"))
    cov_lo, cov_hi = all_ts[0], all_ts[-1] + tf
    first = cov_lo.tz_localize(None).to_period("M")
    last = (cov_hi - pd.Timedelta(microseconds=1)).tz_localize(None).to_period("M")
    months = pd.period_range(first, last, freq="M")
    keys = [str(m) for m in months]

    def per_month(index: Any, mask: Any = None) -> np.ndarray:
        ix = pd.DatetimeIndex(index)
        if mask is not None:
            ix = ix[np.asarray(mask, dtype=bool)]
        counts = pd.Series(ix.tz_localize(None).strftime("%Y-%m")).value_counts()
        return counts.reindex(keys, fill_value=0).to_numpy(dtype=np.int64)

    cols: dict[str, np.ndarray] = {
        "rows": per_month(bars.index),
        "expected": per_month(result.expected),
        "absent": per_month(result.expected, ~result.expected.isin(det.index)),
        "imputed": per_month(bars.index, bars["imputed"]),
        "missing": per_month(result.missing),
        "outliers": per_month(bars.index, bars["quality_flag"] == "outlier"),
        "return_outliers": per_month(det.index, det["return_outlier"]),
        "ohlc_inconsistent": per_month(det.index, det["ohlc_inconsistent"]),
        "spikes": per_month(bars.index, bars["spike"]),
        "dropped_nonpositive": per_month(result.dropped.index),
        "off_session": per_month(det.index, det["off_session"]),
    }
    out = pd.DataFrame(index=pd.Index(keys, name="month"))
    for name, values in cols.items():
        out[name] = values
    starts = [max(m.start_time.tz_localize("UTC"), cov_lo) for m in months]
    ends = [min((m + 1).start_time.tz_localize("UTC"), cov_hi) for m in months]
    out.insert(0, "start", pd.DatetimeIndex(starts).as_unit("us"))
    out.insert(1, "end", pd.DatetimeIndex(ends).as_unit("us"))
    exp = out["expected"].to_numpy().astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["missing_rate"] = np.where(exp > 0, out["absent"].to_numpy() / exp, 0.0)
        out["outlier_rate"] = np.where(exp > 0, out["outliers"].to_numpy() / exp, 0.0)
    mr = out["missing_rate"].to_numpy() > p.missing_rate_max
    orr = out["outlier_rate"].to_numpy() > p.outlier_rate_max
    out["quarantined"] = mr | orr
    reasons = []
    for i in range(len(out)):
        r = []
        if mr[i]:
            r.append(f"missing_rate {out['missing_rate'].iloc[i]:.4f} > {p.missing_rate_max}")
        if orr[i]:
            r.append(f"outlier_rate {out['outlier_rate'].iloc[i]:.4f} > {p.outlier_rate_max}")
        reasons.append("; ".join(r))
    out["reason"] = reasons
    return out[list(_PARTITION_COLUMNS)]


def _find(sorted_arr: np.ndarray, value: int) -> int:
    i = int(np.searchsorted(sorted_arr, value))
    return i if i < sorted_arr.size and sorted_arr[i] == value else -1


def _from_us(a: np.ndarray) -> pd.DatetimeIndex:
    return (
        pd.DatetimeIndex(np.asarray(a, dtype="datetime64[us]")).tz_localize("UTC").rename("ts_utc")
    )

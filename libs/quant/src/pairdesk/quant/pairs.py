"""Pair discovery: cointegration scan of every pair of a symbol set (docs/quant-contracts.md
§Pair discovery; spec 004 §コストテーブル / ユニバース仕様 v1 for the costs).

Public façade over the compiled kernels in :mod:`pairdesk.quant._pairs_kernels`:

- :func:`scan_pairs` — every pair of the columns of a log-price frame → one ranked row per pair.
- :func:`engle_granger`, :func:`adf_test`, :func:`johansen_trace` — single-pair tests that
  reproduce ``statsmodels.tsa.stattools.coint`` / ``adfuller`` (``autolag="aic"``) and
  ``statsmodels.tsa.vector_ar.vecm.coint_johansen`` (``det_order=0, k_ar_diff=1``).
- :func:`half_life`, :func:`hurst_exponent`, :func:`benjamini_hochberg`,
  :func:`round_trip_cost_bps` — the spread statistics and the selection inputs.

All prices are **log** prices; bars are aligned on common timestamps and never forward-filled.

References
----------
Engle, R. F. and Granger, C. W. J. (1987), "Co-integration and error correction: representation,
estimation, and testing", *Econometrica* 55(2), 251–276.
MacKinnon, J. G. (1994), "Approximate asymptotic distribution functions for unit-root and
cointegration tests", *JBES* 12(2), 167–176; MacKinnon, J. G. (2010), "Critical values for
cointegration tests", Queen's Economics Department WP 1227.
Johansen, S. (1991), "Estimation and hypothesis testing of cointegration vectors in Gaussian vector
autoregressive models", *Econometrica* 59(6), 1551–1580.
Benjamini, Y. and Hochberg, Y. (1995), "Controlling the false discovery rate: a practical and
powerful approach to multiple testing", *JRSS B* 57(1), 289–300.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pairdesk.quant import _pairs_kernels as _k
from pairdesk.quant.costs import CostModel
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.coint_tables import c_sjt

__all__ = [
    "CANDIDATE_COLUMNS",
    "AdfResult",
    "EngleGrangerResult",
    "JohansenResult",
    "ScanParams",
    "adf_test",
    "benjamini_hochberg",
    "engle_granger",
    "half_life",
    "hurst_exponent",
    "hurst_lags",
    "johansen_trace",
    "round_trip_cost_bps",
    "scan_pairs",
]

#: 5 % critical value of Johansen's trace test of r = 0 for two variables, det_order 0
#: (Osterwald-Lenum 1992 as tabulated in statsmodels ``c_sjt``).
JOHANSEN_TRACE_CRIT_5PCT: float = float(c_sjt(2, 0)[1])

#: Columns of :func:`scan_pairs`' result, in order.
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "rank",
    "pair_id",
    "leg_A",
    "leg_B",
    "n_bars",
    "start",
    "end",
    "eg_stat_ab",
    "eg_lag_ab",
    "eg_pvalue_ab",
    "eg_stat_ba",
    "eg_lag_ba",
    "eg_pvalue_ba",
    "eg_pvalue",
    "qvalue",
    "johansen_trace",
    "johansen_max_eig",
    "johansen_reject",
    "adf_stat",
    "adf_lag",
    "adf_pvalue",
    "hedge_ratio",
    "intercept",
    "kappa",
    "half_life_bars",
    "mean_reverting",
    "hurst",
    "corr_returns",
    "zero_crossings_per_year",
    "spread_sigma_bps",
    "round_trip_cost_bps",
    "sigma_to_cost",
    "selected",
    "failed_filters",
    "reason",
)


@dataclass(frozen=True)
class ScanParams:
    """Selection rule and estimator settings of :func:`scan_pairs` (defaults: the ``scan:``
    section of ``config/backtest_policy.yaml``).

    Parameters
    ----------
    alpha : float
        False-discovery rate: a pair passes when its Benjamini–Hochberg q-value of ``eg_pvalue``
        is ≤ alpha. In (0, 1). Default 0.05.
    min_bars : int
        Fewer common bars in the formation window → the row gets a ``reason`` and no tests.
        ≥ 30. Default 250.
    half_life_min_bars, half_life_max_bars : float
        Accepted half-life range of the spread, in bars (inclusive). Default 1 and 500.
    cost_multiple : float
        k in ``spread_sigma_bps > k × round_trip_cost_bps``. ≥ 0. Default 2.
    hurst_min_lag, hurst_max_lag : int
        Lag range (bars) of the Hurst estimator; ``2 ≤ min < max < min_bars // 2``.
        Default 2 and 100.
    hurst_n_lags : int
        Number of log-spaced lags in that range (duplicates after rounding dropped). ≥ 3.
        Default 20.

    Raises
    ------
    ValueError
        If a value is out of range.
    """

    alpha: float = 0.05
    min_bars: int = 250
    half_life_min_bars: float = 1.0
    half_life_max_bars: float = 500.0
    cost_multiple: float = 2.0
    hurst_min_lag: int = 2
    hurst_max_lag: int = 100
    hurst_n_lags: int = 20

    def __post_init__(self) -> None:
        if not (0.0 < self.alpha < 1.0):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if int(self.min_bars) != self.min_bars or self.min_bars < 30:
            raise ValueError(f"min_bars must be an integer >= 30, got {self.min_bars!r}")
        if not (0.0 <= self.half_life_min_bars <= self.half_life_max_bars):
            raise ValueError(
                "need 0 <= half_life_min_bars <= half_life_max_bars, got "
                f"{self.half_life_min_bars!r}, {self.half_life_max_bars!r}"
            )
        if not (math.isfinite(self.cost_multiple) and self.cost_multiple >= 0):
            raise ValueError(
                f"cost_multiple must be a finite number >= 0, got {self.cost_multiple!r}"
            )
        if not (2 <= self.hurst_min_lag < self.hurst_max_lag < self.min_bars // 2):
            raise ValueError(
                "need 2 <= hurst_min_lag < hurst_max_lag < min_bars // 2, got "
                f"{self.hurst_min_lag}, {self.hurst_max_lag}, min_bars {self.min_bars}"
            )
        if self.hurst_n_lags < 3:
            raise ValueError(f"hurst_n_lags must be >= 3, got {self.hurst_n_lags}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> ScanParams:
        """Build from a mapping (the ``scan.value`` block of ``backtest_policy.yaml``).

        Raises
        ------
        ValueError
            Unknown keys or invalid values.
        """
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(raw) - set(known)
        if unknown:
            raise ValueError(f"scan: unknown keys {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for key, val in raw.items():
            try:
                kw[key] = int(val) if known[key] == "int" else float(val)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"scan.{key}: not a number ({val!r})") from exc
        return cls(**kw)


def hurst_lags(params: ScanParams) -> npt.NDArray[np.int64]:
    """The Hurst lags of ``params``: ``hurst_n_lags`` log-spaced integers from ``hurst_min_lag``
    to ``hurst_max_lag`` (rounded, unique, ascending), shape (≤ hurst_n_lags,)."""
    grid = np.geomspace(params.hurst_min_lag, params.hurst_max_lag, params.hurst_n_lags)
    return np.unique(np.rint(grid).astype(np.int64))


# ----------------------------------------------------------------------------- single-pair tests


def _as_1d(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if not arr.flags.writeable:  # read-only views (pandas copy-on-write) would compile apart
        arr = arr.copy()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


@dataclass(frozen=True)
class AdfResult:
    """Augmented Dickey–Fuller test of one series (:func:`adf_test`).

    Attributes
    ----------
    stat : float
        t-statistic of the lagged level.
    pvalue : float
        MacKinnon (1994/2010) approximate p-value (``mackinnonp(stat, regression, N=1)``).
    usedlag : int
        Lagged differences chosen by AIC.
    nobs : int
        Observations of the final regression.
    icbest : float
        AIC of the chosen lag on the common search sample.
    """

    stat: float
    pvalue: float
    usedlag: int
    nobs: int
    icbest: float


def adf_test(x: npt.ArrayLike, regression: str = "c") -> AdfResult:
    """ADF test with AIC lag selection, identical to ``statsmodels.tsa.stattools.adfuller(x,
    regression=regression, autolag="AIC")`` (default ``maxlag = min(n//2 - ntrend - 1,
    ceil(12 (n/100)^{1/4}))``).

    Parameters
    ----------
    x : array_like, shape (n,)
        The series (finite), e.g. a spread in log units.
    regression : {"c", "n"}
        Constant in the test regression, or none.

    Returns
    -------
    AdfResult

    Raises
    ------
    ValueError
        Non-finite, constant or too short input, or an unsupported ``regression``.
    """
    if regression not in ("c", "n"):
        raise ValueError(f"regression must be 'c' or 'n', got {regression!r}")
    arr = _as_1d(x, "x")
    if arr.size == 0 or arr.max() == arr.min():
        raise ValueError("x is empty or constant")
    kc = 1 if regression == "c" else 0
    stat, lag, nobs, ic = _k.adf_autolag(arr, kc)
    if not math.isfinite(stat):
        raise ValueError(f"x is too short ({arr.size} points) for the ADF regression")
    return AdfResult(
        float(stat),
        float(mackinnonp(stat, regression=regression, N=1)),
        int(lag),
        int(nobs),
        float(ic),
    )


@dataclass(frozen=True)
class EngleGrangerResult:
    """Augmented Engle–Granger test of ``y0`` on ``y1`` (:func:`engle_granger`).

    Attributes
    ----------
    stat : float
        ADF t-statistic of the cointegrating-regression residual (-inf when the legs are
        collinear, as statsmodels).
    pvalue : float
        ``mackinnonp(stat, regression="c", N=2)``.
    usedlag : int
        ADF lags chosen by AIC (-1 when collinear).
    hedge_ratio : float
        OLS slope of ``y0`` on ``y1`` (with intercept).
    intercept : float
        OLS intercept.
    """

    stat: float
    pvalue: float
    usedlag: int
    hedge_ratio: float
    intercept: float


def engle_granger(y0: npt.ArrayLike, y1: npt.ArrayLike) -> EngleGrangerResult:
    """Engle–Granger two-step test of no cointegration, identical to
    ``statsmodels.tsa.stattools.coint(y0, y1)`` (trend "c", autolag "aic", maxlag None).

    Step 1: OLS ``y0 = α + β y1 + u``. Step 2: ADF without constant on ``û`` with AIC lag
    selection; the p-value uses MacKinnon's surface for N = 2 variables with a constant.

    Parameters
    ----------
    y0, y1 : array_like, shape (n,)
        Aligned log prices (finite).

    Returns
    -------
    EngleGrangerResult

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite values, a constant series or too few points.
    """
    a = _as_1d(y0, "y0")
    b = _as_1d(y1, "y1")
    if a.size != b.size:
        raise ValueError(f"y0 and y1 must have the same length, got {a.size} and {b.size}")
    if a.size < 10 or a.max() == a.min() or b.max() == b.min():
        raise ValueError("y0 and y1 need at least 10 points and must not be constant")
    ma, mb = a.mean(), b.mean()
    da, db = a - ma, b - mb
    sbb, sab, saa = float(db @ db), float(da @ db), float(da @ da)
    beta = sab / sbb
    intercept = ma - beta * mb
    if sab * sab / (saa * sbb) >= _k.R2_COLLINEAR:
        return EngleGrangerResult(-math.inf, 0.0, -1, beta, intercept)
    stat, lag, _, _ = _k.adf_autolag(np.ascontiguousarray(da - beta * db), 0)
    if not math.isfinite(stat):
        raise ValueError(f"too few points ({a.size}) for the ADF regression")
    return EngleGrangerResult(
        float(stat),
        float(mackinnonp(stat, regression="c", N=2)),
        int(lag),
        float(beta),
        float(intercept),
    )


@dataclass(frozen=True)
class JohansenResult:
    """Johansen trace / max-eigenvalue statistics of a pair for r = 0 (:func:`johansen_trace`)."""

    trace: float
    max_eig: float
    crit_5pct: float
    reject: bool


def johansen_trace(a: npt.ArrayLike, b: npt.ArrayLike) -> JohansenResult:
    """Johansen's trace test of r = 0 for a pair, as ``coint_johansen(np.column_stack([a, b]),
    det_order=0, k_ar_diff=1)`` (``lr1[0]``, ``lr2[0]``).

    *Choice* (docs/quant-contracts.md §Pair discovery): constant term (``det_order=0``) and one
    lagged difference (``k_ar_diff=1``). The statistic is ``-T ln det(I - M)`` with
    ``M = S_kk^{-1} S_k0 S_00^{-1} S_0k`` (product of ``1 - λ_i``), computed in closed form for
    the 2×2 case; the max-eigenvalue statistic uses the larger root of ``M``.

    Parameters
    ----------
    a, b : array_like, shape (n,)
        Aligned log prices (finite), n ≥ 10.

    Returns
    -------
    JohansenResult
        ``reject`` is ``trace > crit_5pct`` (5 % level, r = 0).

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite input, too few points or singular moments.
    """
    x = _as_1d(a, "a")
    y = _as_1d(b, "b")
    if x.size != y.size or x.size < 10:
        raise ValueError("a and b must have the same length >= 10")
    tr, me = _k.johansen_2x2(x, y)
    if not math.isfinite(tr):
        raise ValueError("singular moment matrix (constant or collinear differences)")
    return JohansenResult(
        float(tr), float(me), JOHANSEN_TRACE_CRIT_5PCT, bool(tr > JOHANSEN_TRACE_CRIT_5PCT)
    )


def half_life(spread: npt.ArrayLike) -> tuple[float, float]:
    """Mean-reversion speed and half-life of a spread from its AR(1) fit.

    OLS ``Δs_t = c + b s_{t-1} + ε`` → ``φ = 1 + b``; the exact discretisation of an
    Ornstein–Uhlenbeck process gives ``κ = -ln φ`` per bar and half-life ``ln 2 / κ`` bars.

    Parameters
    ----------
    spread : array_like, shape (n,)
        Spread in log units, n ≥ 3, finite.

    Returns
    -------
    (kappa, half_life_bars) : (float, float)
        κ in 1/bars. ``κ ≤ 0`` (φ ≥ 1) means **not mean reverting**: half-life ``inf``.
        ``φ ≤ 0`` (overshooting every bar) gives ``κ = inf`` and half-life 0.

    Raises
    ------
    ValueError
        Non-finite, constant or too short input.
    """
    s = _as_1d(spread, "spread")
    kappa, hl = _k.half_life_ar1(s)
    if math.isnan(kappa):
        raise ValueError("spread must have >= 3 points and not be constant")
    return float(kappa), float(hl)


def hurst_exponent(series: npt.ArrayLike, lags: npt.ArrayLike | None = None) -> float:
    """Hurst exponent by the variance of lagged differences.

    ``H`` is the OLS slope of ``ln std(s_{t+τ} - s_t)`` on ``ln τ`` over the lags τ: for a
    random walk std ∝ τ^{1/2} (H ≈ 0.5); a mean-reverting (OU) spread saturates (H < 0.5), a
    trending one grows faster (H > 0.5). The estimator is biased at long lags on short series,
    so use it to rank, not as a test.

    Parameters
    ----------
    series : array_like, shape (n,)
        Level series (e.g. the spread in log units), finite.
    lags : array_like of int, optional
        Lags τ in bars (default: :func:`hurst_lags` of ``ScanParams()``: 20 log-spaced lags
        in 2..100). Lags ≥ n - 1 are ignored.

    Returns
    -------
    float
        NaN when fewer than 3 lags have a non-zero dispersion.

    Raises
    ------
    ValueError
        Non-finite input or a lag < 1.
    """
    s = _as_1d(series, "series")
    lg = hurst_lags(ScanParams()) if lags is None else np.asarray(lags, dtype=np.int64)
    if lg.ndim != 1 or lg.size == 0 or lg.min() < 1:
        raise ValueError("lags must be a non-empty 1-d array of integers >= 1")
    return float(_k.hurst_lagged_diff(s, np.ascontiguousarray(lg)))


def benjamini_hochberg(pvalues: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Benjamini–Hochberg (1995) q-values (FDR-adjusted p-values).

    ``q_(i) = min_{j ≥ i} min(1, m p_(j) / j)`` over the m non-NaN p-values sorted ascending;
    equal to ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``. NaN inputs
    (tests that could not run) are left out of the family and stay NaN.

    Parameters
    ----------
    pvalues : array_like, shape (m,)
        p-values in [0, 1] or NaN.

    Returns
    -------
    ndarray, shape (m,)

    Raises
    ------
    ValueError
        A value outside [0, 1] or not 1-d.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("pvalues must be 1-d")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    q = np.full(p.shape, np.nan)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return q
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    q[ok] = out
    return q


def round_trip_cost_bps(
    costs: CostModel, sym_a: str, sym_b: str, hedge_ratio: float = 1.0
) -> float:
    """Round-trip cost of a pair trade in bps of leg-A notional.

    One fill of a leg costs ``spread_bps / 2 + slippage_bps + commission_bps`` (the cost table's
    spread is the full quoted spread, half paid per fill, as in :class:`CostModel`); a round
    trip fills each leg twice (open, close); leg B trades ``|hedge_ratio|`` × leg-A notional
    (β-neutral sizing of the backtest). Time-of-day slippage multipliers and swaps are not
    included (they depend on when and how long the trade is held).

    Parameters
    ----------
    costs : CostModel
        Costs per symbol (config/cost_table.yaml).
    sym_a, sym_b : str
        Canonical symbols of legs A and B.
    hedge_ratio : float
        β of the spread ``log A - β log B``.

    Returns
    -------
    float
        ``2 × (c_A + |β| c_B)`` in bps.

    Raises
    ------
    ValueError
        A symbol without costs or a non-finite hedge ratio.
    """
    if not math.isfinite(hedge_ratio):
        raise ValueError(f"hedge_ratio must be finite, got {hedge_ratio!r}")

    def side(sym: str) -> float:
        leg = costs.leg(sym)
        return leg.spread_bps / 2.0 + leg.slippage_bps + leg.commission_bps

    return 2.0 * (side(sym_a) + abs(hedge_ratio) * side(sym_b))


# ----------------------------------------------------------------------------- the scan


_REASONS = {
    _k.ST_FEW_BARS: "too few common bars ({n} < min_bars {min_bars})",
    _k.ST_CONST_A: "leg A is constant over the formation window",
    _k.ST_CONST_B: "leg B is constant over the formation window",
    _k.ST_COLLINEAR: "legs (almost) perfectly collinear (R² ≥ 1 - 1.5e-6): Engle–Granger not reliable",
    _k.ST_NUMERIC: "ADF regression could not be fitted (singular moments)",
}


def _wide(log_prices: pd.DataFrame | Mapping[str, pd.Series]) -> pd.DataFrame:
    if isinstance(log_prices, pd.DataFrame):
        wide = log_prices
    elif isinstance(log_prices, Mapping):
        if not all(isinstance(v, pd.Series) for v in log_prices.values()):
            raise ValueError("log_prices mapping values must be pandas Series")
        wide = pd.concat(
            {str(k): v for k, v in log_prices.items()}, axis=1, join="outer", sort=True
        )
    else:
        raise ValueError("log_prices must be a DataFrame or a mapping of symbol -> Series")
    if wide.shape[1] < 2:
        raise ValueError(f"need at least 2 symbols, got {wide.shape[1]}")
    if not isinstance(wide.index, pd.DatetimeIndex):
        raise ValueError("log_prices must be indexed by bar-open time (DatetimeIndex)")
    if not (wide.index.is_monotonic_increasing and wide.index.is_unique):
        raise ValueError("log_prices index must be strictly increasing")
    if not wide.columns.is_unique:
        raise ValueError("log_prices has duplicate symbols")
    vals = wide.to_numpy(dtype=np.float64)
    if np.isinf(vals).any():
        raise ValueError("log_prices contains inf")
    return wide


def scan_pairs(
    log_prices: pd.DataFrame | Mapping[str, pd.Series],
    params: ScanParams,
    costs: CostModel | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 64,
) -> pd.DataFrame:
    """Test every pair of symbols for cointegration and rank them.

    For each pair (A, B) = (columns[i], columns[j]), i < j, the legs are aligned on the rows
    where both are non-NaN (never forward-filled) and, on those n bars:

    - ``eg_pvalue_ab`` / ``eg_pvalue_ba``: Engle–Granger p-values of ``coint(log A, log B)``
      and ``coint(log B, log A)`` (:func:`engle_granger`); ``eg_pvalue`` = their max (both
      orderings must reject); ``qvalue`` = :func:`benjamini_hochberg` of ``eg_pvalue`` over the
      pairs whose tests ran;
    - ``johansen_trace``/``johansen_max_eig``/``johansen_reject`` (:func:`johansen_trace`);
    - spread ``s = log A - β log B - α`` (OLS, ``hedge_ratio`` = β): ``adf_stat``/``adf_pvalue``
      (:func:`adf_test`, constant), ``kappa``/``half_life_bars`` (:func:`half_life`),
      ``hurst`` (:func:`hurst_exponent`), ``zero_crossings_per_year`` (sign changes of s per
      365.25 days of the window), ``spread_sigma_bps`` = std(s, ddof=1) × 1e4 (typical
      deviation of the spread level, in bps of leg-A notional);
    - ``corr_returns``: correlation of per-bar log returns over consecutive common bars;
    - ``round_trip_cost_bps`` (:func:`round_trip_cost_bps`; 0 when ``costs`` is None) and
      ``sigma_to_cost`` = spread_sigma_bps / round_trip_cost_bps.

    ``selected`` = ``qvalue ≤ alpha`` and ``half_life_min_bars ≤ half_life_bars ≤
    half_life_max_bars`` and ``spread_sigma_bps > cost_multiple × round_trip_cost_bps``;
    ``failed_filters`` names the criteria a pair misses. Rows whose tests cannot run (too few
    common bars, a constant leg, collinear legs) carry a ``reason`` and are not selected.

    Parameters
    ----------
    log_prices : DataFrame, shape (T, S), or mapping of symbol → Series
        Log closes indexed by UTC bar-open time, NaN where a symbol has no usable bar
        (a mapping is outer-joined on time, not filled).
    params : ScanParams
    costs : CostModel, optional
        Must contain every symbol.
    progress : callable(done, total), optional
        Called after each chunk of pairs.
    chunk : int
        Pairs per compiled call (progress granularity).

    Returns
    -------
    DataFrame, one row per pair, columns :data:`CANDIDATE_COLUMNS`, sorted by ``selected``
    (first), ``qvalue``, ``eg_pvalue``, ``pair_id``; ``rank`` = 1..P in that order.

    Raises
    ------
    ValueError
        Fewer than 2 symbols, a non-datetime or non-increasing index, inf values, or a symbol
        missing from ``costs``.
    """
    wide = _wide(log_prices)
    syms = [str(c) for c in wide.columns]
    logp = np.ascontiguousarray(wide.to_numpy(dtype=np.float64))
    idx = pd.DatetimeIndex(wide.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    ts_ns = np.ascontiguousarray(idx.as_unit("ns").asi8)
    pairs = np.array(list(combinations(range(len(syms)), 2)), dtype=np.int64).reshape(-1, 2)
    lags = np.ascontiguousarray(hurst_lags(params))
    total = pairs.shape[0]
    step = max(1, int(chunk))
    blocks = []
    for lo in range(0, total, step):
        blocks.append(
            _k.scan_kernel(logp, ts_ns, pairs[lo : lo + step], int(params.min_bars), lags)
        )
        if progress is not None:
            progress(min(lo + step, total), total)
    raw = np.vstack(blocks) if blocks else np.empty((0, _k.N_OUT))
    df = pd.DataFrame(raw, columns=list(_k.OUT_COLUMNS))
    df.insert(0, "leg_A", [syms[i] for i in pairs[:, 0]])
    df.insert(1, "leg_B", [syms[j] for j in pairs[:, 1]])
    return _finish(df, pairs, logp, idx, params, costs)


def _pvalue(stat: float, n_vars: int) -> float:
    if math.isnan(stat):
        return math.nan
    return float(mackinnonp(stat, regression="c", N=n_vars))


def _finish(
    df: pd.DataFrame,
    pairs: npt.NDArray[np.int64],
    logp: npt.NDArray[np.float64],
    idx: pd.DatetimeIndex,
    params: ScanParams,
    costs: CostModel | None,
) -> pd.DataFrame:
    status = df["status"].to_numpy().astype(np.int64)
    ok = status == _k.ST_OK
    df["pair_id"] = df["leg_A"] + "_" + df["leg_B"]
    df["n_bars"] = df["n_bars"].astype(np.int64)
    starts, ends = [], []
    valid = ~np.isnan(logp)
    for ia, ib in pairs:
        rows = np.flatnonzero(valid[:, ia] & valid[:, ib])
        starts.append(idx[rows[0]] if rows.size else pd.NaT)
        ends.append(idx[rows[-1]] if rows.size else pd.NaT)
    df["start"] = pd.DatetimeIndex(starts, tz="UTC")
    df["end"] = pd.DatetimeIndex(ends, tz="UTC")
    df["eg_pvalue_ab"] = [_pvalue(s, 2) for s in df["eg_stat_ab"]]
    df["eg_pvalue_ba"] = [_pvalue(s, 2) for s in df["eg_stat_ba"]]
    df["eg_pvalue"] = np.maximum(df["eg_pvalue_ab"], df["eg_pvalue_ba"])
    df["adf_pvalue"] = [_pvalue(s, 1) for s in df["adf_stat"]]
    for c in ("eg_lag_ab", "eg_lag_ba", "adf_lag"):
        df[c] = df[c].astype("Int64")
    df["johansen_reject"] = df["johansen_trace"] > JOHANSEN_TRACE_CRIT_5PCT
    df["mean_reverting"] = df["kappa"] > 0
    df["zero_crossings_per_year"] = np.where(
        df["years"] > 0, df["zero_crossings"] / df["years"], np.nan
    )
    df["spread_sigma_bps"] = df["spread_sigma"] * 1e4
    if costs is None:
        df["round_trip_cost_bps"] = 0.0
    else:
        df["round_trip_cost_bps"] = [
            round_trip_cost_bps(costs, a, b, hr if math.isfinite(hr) else 1.0)
            for a, b, hr in zip(df["leg_A"], df["leg_B"], df["hedge_ratio"], strict=True)
        ]
    with np.errstate(divide="ignore", invalid="ignore"):
        df["sigma_to_cost"] = df["spread_sigma_bps"] / df["round_trip_cost_bps"]
    q = benjamini_hochberg(np.where(ok, df["eg_pvalue"].to_numpy(), np.nan))
    df["qvalue"] = q
    hl = df["half_life_bars"].to_numpy()
    pass_q = ok & (q <= params.alpha)
    pass_mr = ok & (df["kappa"].to_numpy() > 0)
    pass_hl = pass_mr & (hl >= params.half_life_min_bars) & (hl <= params.half_life_max_bars)
    pass_cost = ok & (
        df["spread_sigma_bps"].to_numpy()
        > params.cost_multiple * df["round_trip_cost_bps"].to_numpy()
    )
    df["selected"] = pass_q & pass_hl & pass_cost
    failed = []
    for i in range(len(df)):
        if not ok[i]:
            failed.append("not tested")
            continue
        f = []
        if not pass_q[i]:
            f.append(f"qvalue>{params.alpha:g}")
        if not pass_mr[i]:
            f.append("not mean reverting (kappa<=0)")
        elif not pass_hl[i]:
            f.append("half_life out of bounds")
        if not pass_cost[i]:
            f.append(f"spread_sigma<={params.cost_multiple:g}x cost")
        failed.append("; ".join(f))
    df["failed_filters"] = failed
    df["reason"] = [
        "" if s == _k.ST_OK else _REASONS[int(s)].format(n=n, min_bars=params.min_bars)
        for s, n in zip(status, df["n_bars"], strict=True)
    ]
    df = df.sort_values(
        ["selected", "qvalue", "eg_pvalue", "pair_id"],
        ascending=[False, True, True, True],
        na_position="last",
        kind="mergesort",
    ).reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    return df.loc[:, list(CANDIDATE_COLUMNS)]

"""Strategy KPIs from a per-bar equity curve and its trades, spec 004 §時系列CV・評価KPI 仕様 v1
(統合戦略のKPI, 採用判定) and §backtest-assets-engine 仕様 v1 (bt_summary, bt_daily_equity).

Definitions (the choices where the spec is ambiguous are marked *choice*):

* **Daily equity** (*choice*): the last per-bar equity of each UTC calendar date of the bar
  **open** time ``ts_utc`` (the equity of a bar is marked at its close, so the value for date D is
  the equity at the end of D). Only dates that have bars appear (trading days; no calendar
  fill). The spec: "エクイティカーブは対象足で作成し日次に再集計して Sharpe/MaxDD を算出".
* **Daily returns** (*choice*: sizes never compound, every trade is sized on the initial capital
  ``E_0``): ``r_d = (E_d − E_{d−1}) / E_0`` with ``E_{−1} = E_0``. Unlike ``E_d/E_{d−1} − 1`` this
  stays finite and keeps its sign when equity approaches or crosses zero (a ruined run has a
  negative Sharpe).
* **Annualised return** ``ann_return = mean(r) · P`` (``P`` = ``periods_per_year``, the daily
  observations per year), the arithmetic annualisation consistent with the Sharpe ratio;
  ``ann_return_simple = (E_end/E_0 − 1) · 365.25/days``, ``days`` the calendar span of the data
  ``(last bar close − first bar open)`` in days.
* **Sharpe**: ``mean(r) / std(r, ddof=1) · √P`` over daily returns, risk-free rate 0
  (``periods_per_year`` = backtest_policy ``kpi.periods_per_year_daily``); NaN with fewer than
  2 returns or zero dispersion.
* **MaxDD** (*choice*, in units of ``E_0``): ``max_d (peak_d − E_d) / E_0`` with ``peak_d =
  max(E_0, E_1..E_d)`` on daily equity, a positive fraction (the largest loss from a peak as a
  share of the capital the sizes are based on; finite when equity is ≤ 0).
* **Calmar** = ``ann_return`` / MaxDD (NaN when MaxDD = 0).
* **E/trade** = mean ``return_on_capital`` of the trades; **win rate** = share of trades with
  net PnL > 0; **PnL σ** = ``std(trade PnL, ddof=1)`` in USD; **trades/yr** = ``n · 365.25/days``.
* **Monthly win rate**: share of calendar months (UTC, of ``ts_utc``) present in the data whose
  PnL ``E_month_end − E_previous_month_end`` (first month from ``E_0``) is > 0.
* **Halt rate** (やらない勇気発動率, *choice*): at the bars where the engine was flat, tradable and
  had an AI1 candidate, the share of those that passed θ1 but were vetoed by AI2
  (``vetoed_by_ai2 / passed_theta1``): how often AI2 stopped a trade AI1 wanted.

The numba kernel ``_kpi_core_nb`` is the one implementation; :func:`compute_kpis`, the θ grid
search (:func:`pairdesk.quant.backtest.grid_search`) and the bootstrap
(:mod:`pairdesk.quant.stats`) all call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit
from pairdesk.quant.typing import BoolArray, FloatArray, IntArray

__all__ = [
    "KPI_NAMES",
    "KpiParams",
    "adoption_check",
    "annualised_return",
    "calendar_days",
    "calmar",
    "compute_kpis",
    "daily_equity",
    "daily_equity_frame",
    "daily_returns",
    "drawdown_on_capital",
    "e_per_trade",
    "halt_rate",
    "infer_bar_ns",
    "max_drawdown",
    "monthly_win_rate",
    "observed_periods_per_year",
    "pnl_sigma",
    "sharpe",
    "trades_per_year",
    "win_rate",
]


_NS_PER_DAY = 86_400_000_000_000

#: KPI order of the kernel output (and of bootstrap samples).
KPI_NAMES: tuple[str, ...] = (
    "ann_return",
    "ann_return_simple",
    "sharpe",
    "max_dd",
    "calmar",
    "e_per_trade",
    "trades_per_year",
    "win_rate",
    "monthly_win_rate",
    "pnl_sigma",
    "trades",
)
_K_ANN, _K_ANN_S, _K_SHARPE, _K_DD, _K_CALMAR, _K_E, _K_TPY, _K_WIN, _K_MWIN, _K_SIG, _K_N = range(
    len(KPI_NAMES)
)


@dataclass(frozen=True)
class KpiParams:
    """KPI conventions (config/backtest_policy.yaml ``kpi``).

    Parameters
    ----------
    periods_per_year : float
        Daily returns per year used to annualise Sharpe (√periods_per_year). Default 252.
    days_per_year : float
        Calendar days per year for annualised return and trades/yr. Default 365.25.
    """

    periods_per_year: float = 252.0
    days_per_year: float = 365.25

    def __post_init__(self) -> None:
        if not (self.periods_per_year > 0 and self.days_per_year > 0):
            raise ValueError("periods_per_year and days_per_year must be > 0")


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _kpi_core_nb(
    equity: FloatArray,
    day_last: BoolArray,
    month_last: BoolArray,
    e0: float,
    days: float,
    periods_per_year: float,
    days_per_year: float,
    n_trades: float,
    n_wins: float,
    sum_roc: float,
    pnl_m2: float,
    rets: FloatArray,
    out: FloatArray,
) -> None:
    """All KPIs of one equity path into ``out`` (order of ``KPI_NAMES``); ``rets`` is scratch (n,)."""
    n = equity.shape[0]
    prev = e0
    peak = e0
    max_dd = 0.0
    k = 0
    for i in range(n):
        if day_last[i]:
            e = equity[i]
            rets[k] = (e - prev) / e0
            k += 1
            prev = e
            if e > peak:
                peak = e
            dd = (peak - e) / e0
            if dd > max_dd:
                max_dd = dd
    sharpe = np.nan
    mean = np.nan
    if k >= 1:
        mean = 0.0
        for i in range(k):
            mean += rets[i]
        mean /= k
    if k >= 2:
        ss = 0.0
        for i in range(k):
            ss += (rets[i] - mean) ** 2
        sd = math.sqrt(ss / (k - 1))
        if sd > 0.0:
            sharpe = mean / sd * math.sqrt(periods_per_year)
    years = days / days_per_year
    ratio = equity[n - 1] / e0
    ann = mean * periods_per_year
    out[_K_ANN] = ann
    out[_K_ANN_S] = (ratio - 1.0) / years
    out[_K_SHARPE] = sharpe
    out[_K_DD] = max_dd
    out[_K_CALMAR] = ann / max_dd if max_dd > 0.0 else np.nan
    prev = e0
    n_months = 0
    n_pos = 0
    for i in range(n):
        if month_last[i]:
            n_months += 1
            if equity[i] - prev > 0.0:
                n_pos += 1
            prev = equity[i]
    out[_K_MWIN] = n_pos / n_months if n_months > 0 else np.nan
    out[_K_N] = n_trades
    out[_K_TPY] = n_trades / years
    out[_K_E] = sum_roc / n_trades if n_trades > 0 else np.nan
    out[_K_WIN] = n_wins / n_trades if n_trades > 0 else np.nan
    out[_K_SIG] = math.sqrt(pnl_m2 / (n_trades - 1.0)) if n_trades >= 2 else np.nan


@njit(cache=True)
def _trade_stats_nb(pnl: FloatArray, roc: FloatArray) -> tuple[float, float, float, float]:
    """``(n, n_wins, Σ roc, M2 of pnl)`` with a two-pass M2 (numerically stable)."""
    n = pnl.shape[0]
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0
    mean = 0.0
    wins = 0.0
    s_roc = 0.0
    for i in range(n):
        mean += pnl[i]
        s_roc += roc[i]
        if pnl[i] > 0.0:
            wins += 1.0
    mean /= n
    m2 = 0.0
    for i in range(n):
        m2 += (pnl[i] - mean) ** 2
    return float(n), wins, s_roc, m2


# ----------------------------------------------------------------------------------------------
# calendar helpers
# ----------------------------------------------------------------------------------------------


def _f64(x: npt.ArrayLike) -> FloatArray:
    """Writable C-contiguous float64 copy-if-needed (pandas' read-only views would make numba
    compile a second signature)."""
    return np.require(np.asarray(x, dtype=np.float64), requirements=["C", "W"])


def _as_ts_ns(ts: npt.ArrayLike) -> IntArray:
    """Bar open times as int64 ns UTC; accepts int64 arrays, datetime64 arrays or a DatetimeIndex."""
    if isinstance(ts, pd.DatetimeIndex | pd.Series):
        idx = pd.DatetimeIndex(ts)
        if idx.tz is not None:
            idx = idx.tz_convert("UTC").tz_localize(None)
        return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)
    arr = np.asarray(ts)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ns]").astype(np.int64)
    return np.asarray(arr, dtype=np.int64)


def infer_bar_ns(ts: npt.ArrayLike) -> int:
    """Bar length as the smallest positive gap between consecutive bar open times (ns).

    Raises
    ------
    ValueError
        With fewer than two bars or non-increasing timestamps.
    """
    t = _as_ts_ns(ts)
    if t.shape[0] < 2:
        raise ValueError("need at least 2 bars to infer the bar length; pass bar_ns")
    d = np.diff(t)
    if (d <= 0).any():
        raise ValueError("ts must be strictly increasing")
    return int(d.min())


def calendar_days(ts: npt.ArrayLike, bar_ns: int | None = None) -> float:
    """Calendar span ``(last bar open + bar_ns − first bar open)`` in days (float)."""
    t = _as_ts_ns(ts)
    b = infer_bar_ns(t) if bar_ns is None else int(bar_ns)
    return float(t[-1] + b - t[0]) / _NS_PER_DAY


def observed_periods_per_year(
    ts: npt.ArrayLike, bar_ns: int | None = None, days_per_year: float = 365.25
) -> float:
    """Daily observations per year actually present in ``ts``: distinct UTC dates of the bar open
    times × ``days_per_year`` / :func:`calendar_days`.

    Use it as ``KpiParams.periods_per_year`` so the Sharpe ratio is annualised by the number of
    daily returns the market really produces: ≈ 313 for metals/FX (Sunday-evening to Friday UTC
    sessions give 6 UTC dates a week), 365.25 for 24/7 crypto, ≈ 252 for exchange equities. A fixed
    252 would understate the Sharpe of a 6-day market by √(252/313) ≈ 0.90.

    Raises
    ------
    ValueError
        If ``ts`` is not strictly increasing or has fewer than 2 bars without ``bar_ns``.
    """
    t = _as_ts_ns(ts)
    n_dates = int(_period_last(t, "D").sum())
    return n_dates * float(days_per_year) / calendar_days(t, bar_ns)


def _period_last(ts_ns: IntArray, unit: str) -> BoolArray:
    """True on the last bar of each UTC calendar ``unit`` (``"D"`` or ``"M"``)."""
    p = ts_ns.astype("datetime64[ns]").astype(f"datetime64[{unit}]").astype(np.int64)
    last = np.ones(p.shape[0], dtype=np.bool_)
    last[:-1] = p[1:] != p[:-1]
    return last


def _check_equity(ts: npt.ArrayLike, equity: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    t = _as_ts_ns(ts)
    e = _f64(equity)
    if t.ndim != 1 or e.shape != t.shape:
        raise ValueError(f"ts and equity must be 1-d of equal length, got {t.shape} and {e.shape}")
    if t.shape[0] == 0:
        raise ValueError("empty equity curve")
    if t.shape[0] > 1 and (np.diff(t) <= 0).any():
        raise ValueError("ts must be strictly increasing")
    if not np.isfinite(e).all():
        raise ValueError("equity must be finite")
    return t, e


# ----------------------------------------------------------------------------------------------
# single KPIs
# ----------------------------------------------------------------------------------------------


def daily_equity(ts: npt.ArrayLike, equity: npt.ArrayLike) -> pd.Series:
    """Last equity of each UTC date of the bar open time (trading days only).

    Parameters
    ----------
    ts : array_like, shape (n,)
        Bar open times (int64 ns UTC, datetime64, or DatetimeIndex), strictly increasing.
    equity : array_like of float, shape (n,)
        Per-bar equity marked at each bar's close (USD).

    Returns
    -------
    pandas.Series
        Float equity indexed by ``datetime.date`` (name ``"equity"``).
    """
    t, e = _check_equity(ts, equity)
    last = _period_last(t, "D")
    dates = pd.to_datetime(t[last], utc=True).date
    return pd.Series(e[last], index=pd.Index(dates, name="date"), name="equity")


def daily_returns(ts: npt.ArrayLike, equity: npt.ArrayLike, initial_capital: float) -> pd.Series:
    """Daily returns on the initial capital ``(E_d − E_{d−1}) / E_0`` of :func:`daily_equity`,
    the first measured from ``E_{−1} = E_0`` (sizes do not compound; module docstring).

    Raises
    ------
    ValueError
        If ``initial_capital <= 0`` or the equity curve is invalid.
    """
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be > 0, got {initial_capital!r}")
    d = daily_equity(ts, equity)
    prev = np.r_[float(initial_capital), d.to_numpy()[:-1]]
    return pd.Series((d.to_numpy() - prev) / initial_capital, index=d.index, name="return")


def drawdown_on_capital(equity: npt.ArrayLike, initial_capital: float) -> float:
    """Maximum drawdown in units of the initial capital: ``max_t (peak_t − E_t) / E_0`` with
    ``peak_t = max(E_0, E_1..E_t)`` (the KPI ``max_dd`` on daily equity; finite for any equity).

    Raises
    ------
    ValueError
        If ``initial_capital <= 0``.
    """
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be > 0, got {initial_capital!r}")
    e = np.r_[float(initial_capital), np.asarray(equity, dtype=np.float64)]
    peak = np.maximum.accumulate(e)
    return float(np.max(peak - e) / initial_capital)


def annualised_return(
    e0: float, e_end: float, days: float, *, compound: bool = True, days_per_year: float = 365.25
) -> float:
    """Annualised return of the end equity over ``days`` calendar days (for reports; the KPI
    ``ann_return`` is ``mean daily return · P``, module docstring).

    Compound ``(e_end/e0)^(days_per_year/days) − 1`` (−1.0 if ``e_end <= 0``); simple
    ``(e_end/e0 − 1) · days_per_year / days``.

    Raises
    ------
    ValueError
        If ``e0 <= 0`` or ``days <= 0``.
    """
    if not (e0 > 0 and days > 0):
        raise ValueError("e0 and days must be > 0")
    ratio = e_end / e0
    if compound:
        return float(ratio ** (days_per_year / days) - 1.0) if ratio > 0 else -1.0
    return float((ratio - 1.0) * days_per_year / days)


def sharpe(returns: npt.ArrayLike, periods_per_year: float = 252.0) -> float:
    """Annualised Sharpe ratio ``mean/std(ddof=1) · √periods_per_year`` (rf = 0); NaN if undefined."""
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] < 2:
        return float("nan")
    sd = float(np.std(r, ddof=1))
    if sd == 0.0:
        return float("nan")
    return float(np.mean(r) / sd * math.sqrt(periods_per_year))


def max_drawdown(equity: npt.ArrayLike, initial_capital: float | None = None) -> float:
    """Maximum drawdown relative to the running peak ``max_t (1 − E_t / max_{s<=t} E_s)`` as a
    positive fraction (for an equity series that compounds and stays > 0; the backtest KPI is
    :func:`drawdown_on_capital`).

    Parameters
    ----------
    equity : array_like of float, shape (n,)
        Equity series (daily for the spec KPI), > 0.
    initial_capital : float, optional
        Starting equity included as the first running peak.
    """
    e = np.asarray(equity, dtype=np.float64)
    if initial_capital is not None:
        e = np.r_[float(initial_capital), e]
    if e.shape[0] == 0:
        return 0.0
    peak = np.maximum.accumulate(e)
    return float(np.max(1.0 - e / peak))


def calmar(ann_return: float, max_dd: float) -> float:
    """Calmar ratio ``ann_return / max_dd``; NaN when ``max_dd == 0``."""
    return float(ann_return / max_dd) if max_dd > 0 else float("nan")


def e_per_trade(trade_returns: npt.ArrayLike) -> float:
    """Mean trade return on capital (fraction); NaN without trades."""
    r = np.asarray(trade_returns, dtype=np.float64)
    return float(r.mean()) if r.shape[0] else float("nan")


def trades_per_year(n_trades: int, days: float, days_per_year: float = 365.25) -> float:
    """``n_trades · days_per_year / days``."""
    if days <= 0:
        raise ValueError("days must be > 0")
    return float(n_trades * days_per_year / days)


def win_rate(trade_pnl: npt.ArrayLike) -> float:
    """Share of trades with net PnL > 0; NaN without trades."""
    p = np.asarray(trade_pnl, dtype=np.float64)
    return float((p > 0).mean()) if p.shape[0] else float("nan")


def monthly_win_rate(ts: npt.ArrayLike, equity: npt.ArrayLike, initial_capital: float) -> float:
    """Share of UTC calendar months (with bars) whose equity change is > 0 (first from E_0)."""
    t, e = _check_equity(ts, equity)
    last = _period_last(t, "M")
    m = e[last]
    pnl = np.diff(np.r_[float(initial_capital), m])
    return float((pnl > 0).mean())


def halt_rate(passed_theta1: int, vetoed_by_ai2: int) -> float:
    """やらない勇気発動率 ``vetoed_by_ai2 / passed_theta1``; NaN when nothing passed θ1."""
    return float(vetoed_by_ai2 / passed_theta1) if passed_theta1 > 0 else float("nan")


def pnl_sigma(trade_pnl: npt.ArrayLike) -> float:
    """Standard deviation of trade PnL (ddof=1, USD); NaN with fewer than two trades."""
    p = np.asarray(trade_pnl, dtype=np.float64)
    return float(np.std(p, ddof=1)) if p.shape[0] >= 2 else float("nan")


# ----------------------------------------------------------------------------------------------
# everything at once
# ----------------------------------------------------------------------------------------------


def compute_kpis(
    ts: npt.ArrayLike,
    equity: npt.ArrayLike,
    trade_pnl: npt.ArrayLike,
    trade_returns: npt.ArrayLike,
    *,
    initial_capital: float,
    bar_ns: int | None = None,
    params: KpiParams | None = None,
    days: float | None = None,
) -> dict[str, float]:
    """All spec KPIs of a per-bar equity curve and its trades.

    Parameters
    ----------
    ts : array_like, shape (n,)
        Bar open times (int64 ns UTC, datetime64, or DatetimeIndex), strictly increasing.
    equity : array_like of float, shape (n,)
        Per-bar equity (USD) marked at each bar's close, realised + unrealised.
    trade_pnl : array_like of float, shape (m,)
        Net PnL per trade (USD).
    trade_returns : array_like of float, shape (m,)
        Return on capital per trade (fraction).
    initial_capital : float
        Equity before the first bar (USD), > 0.
    bar_ns : int, optional
        Bar length in ns; inferred by :func:`infer_bar_ns` when omitted.
    params : KpiParams, optional
        Annualisation conventions.
    days : float, optional
        Calendar span (days) for ``ann_return_simple`` and ``trades_per_year``; default
        ``(last ts + bar_ns − first ts)``.

    Returns
    -------
    dict
        Keys of ``KPI_NAMES``: ``ann_return`` (mean daily return × P), ``ann_return_simple``,
        ``sharpe``, ``max_dd`` (fraction of ``E_0``), ``calmar``, ``e_per_trade``, ``trades_per_year``, ``win_rate``,
        ``monthly_win_rate``, ``pnl_sigma`` (USD), ``trades`` (count, float). Undefined values
        are NaN.

    Raises
    ------
    ValueError
        On mismatched lengths, non-increasing ``ts``, non-finite equity or ``initial_capital <= 0``.
    """
    p = params or KpiParams()
    t, e = _check_equity(ts, equity)
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be > 0, got {initial_capital!r}")
    pnl = _f64(trade_pnl)
    roc = _f64(trade_returns)
    if pnl.shape != roc.shape:
        raise ValueError("trade_pnl and trade_returns must have the same length")
    if days is None:
        b = infer_bar_ns(t) if bar_ns is None else int(bar_ns)
        days = float(t[-1] + b - t[0]) / _NS_PER_DAY
    if not days > 0:
        raise ValueError(f"days must be > 0, got {days!r}")
    out = np.empty(len(KPI_NAMES))
    _kpi_core_nb(
        e,
        _period_last(t, "D"),
        _period_last(t, "M"),
        float(initial_capital),
        float(days),
        float(p.periods_per_year),
        float(p.days_per_year),
        *_trade_stats_nb(pnl, roc),
        np.empty(t.shape[0]),
        out,
    )
    return {k: float(v) for k, v in zip(KPI_NAMES, out, strict=True)}


def adoption_check(
    kpis: Mapping[str, float],
    sharpe_min: float = 1.2,
    max_dd_max: float = 0.12,
    trades_per_year_min: float = 150.0,
) -> dict[str, bool]:
    """Spec 004 §backtest 採用判定: ``Sharpe > 1.2 AND MaxDD < 0.12 AND trades_per_year >= 150``.

    Parameters
    ----------
    kpis : mapping
        Needs ``sharpe``, ``max_dd`` and ``trades_per_year`` (as from :func:`compute_kpis`).
    sharpe_min, max_dd_max, trades_per_year_min : float
        Thresholds (config/backtest_policy.yaml ``adoption``).

    Returns
    -------
    dict of str to bool
        ``sharpe``, ``max_dd``, ``trades_per_year`` per criterion (NaN fails) and ``passed`` (all).
    """
    res = {
        "sharpe": bool(kpis["sharpe"] > sharpe_min),
        "max_dd": bool(kpis["max_dd"] < max_dd_max),
        "trades_per_year": bool(kpis["trades_per_year"] >= trades_per_year_min),
    }
    res["passed"] = all(res.values())
    return res


def daily_equity_frame(
    ts: npt.ArrayLike, equity: npt.ArrayLike, initial_capital: float | None = None
) -> pd.DataFrame:
    """The ``bt_daily_equity`` table: ``date, equity, dd`` (spec §backtest-assets-engine 出力).

    Parameters
    ----------
    ts, equity : array_like, shape (n,)
        Bar open times and per-bar equity, as in :func:`daily_equity`.
    initial_capital : float, optional
        Starting equity ``E_0``: included as the first running peak, and the drawdown is then in
        units of ``E_0`` (``(peak − E) / E_0``, the ``max_dd`` KPI convention). Without it the
        drawdown is relative to the running peak (``1 − E / peak``).

    Returns
    -------
    pandas.DataFrame
        Columns ``date`` (``datetime.date``, UTC), ``equity`` (USD) and ``dd`` (drawdown from the
        running peak of daily equity, a positive fraction), one row per trading day.
    """
    d = daily_equity(ts, equity)
    e = d.to_numpy()
    if initial_capital is None:
        peak = np.maximum.accumulate(e)
        dd = 1.0 - e / peak
    else:
        peak = np.maximum.accumulate(np.r_[initial_capital, e])[1:]
        dd = (peak - e) / float(initial_capital)
    return pd.DataFrame({"date": list(d.index), "equity": e, "dd": dd})

"""Portfolio view of several per-pair backtests on one UTC bar clock (spec 004 §backtest-assets-engine
仕様 v1 出力, §閾値最適化（θ1/θ2）仕様 v1, §採用判定; docs/quant-contracts.md §Research pipeline).

*Choice* (the research-side portfolio, used by ``bt train``'s θ grid and ``bt run``): the pairs
share one capital ``E_0`` (``BacktestParams.initial_capital``); each pair is simulated by
:func:`pairdesk.quant.backtest.run_backtest` with its own sizing (leg-A notional ``E_0 ·
notional_leg_a_fraction``), and the portfolio equity on the clock ``T`` (the sorted union of the
pairs' bar-open times) is

    ``E(t) = E_0 + Σ_p (E_p(t) − E_0)``,

each pair's PnL ``E_p − E_0`` carried forward over bars it does not have (0 before its first
bar). Portfolio returns are therefore ``ΔE / E_0`` of the summed PnL, every KPI is computed on
``E`` by :func:`pairdesk.quant.metrics.compute_kpis` with all pairs' trades, and the counters
(candidates, θ1 passes, AI2 vetoes, AI2 negatives/false positives) are summed over pairs. There
are no cross-pair notional caps, margin calls or drawdown halts in this aggregation: drawdown
events against ``config/dd_policy.yaml`` and ruin (``E ≤ 0``) are *reported* from ``E``, not
enforced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pairdesk.quant.backtest import BacktestResult, ThetaObjectiveParams
from pairdesk.quant.metrics import KpiParams, compute_kpis, daily_equity_frame, infer_bar_ns

__all__ = [
    "PORTFOLIO_ID",
    "PortfolioResult",
    "combine",
    "drawdown_events",
    "ruin",
    "theta_score",
]

#: ``pair_id`` of the portfolio rows in ``bt_summary`` / ``bt_daily_equity`` (``scope = portfolio``).
PORTFOLIO_ID = "PORTFOLIO"


@dataclass(frozen=True)
class PortfolioResult:
    """Several pairs' backtests combined on one clock (module docstring).

    Attributes
    ----------
    ts : ndarray of int64, shape (n,)
        Union clock, bar-open times (ns UTC), strictly increasing.
    equity : ndarray of float64, shape (n,)
        Portfolio equity per bar (USD) marked at the close.
    pair_pnl : DataFrame, shape (n, n_pairs)
        Each pair's cumulative PnL ``E_p − E_0`` on the union clock (USD), columns = pair ids.
    trades : DataFrame
        Every pair's trades with ``pair_id`` and ``bar_exit_portfolio`` (the exit bar's position
        on ``ts``), ordered by exit time then pair.
    counters : dict of str to int
        Summed decision-point counters of the pairs.
    bar_ns : int
        Bar length (ns).
    initial_capital : float
        ``E_0`` (USD).
    """

    ts: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    pair_pnl: pd.DataFrame
    trades: pd.DataFrame
    counters: dict[str, int]
    bar_ns: int
    initial_capital: float

    @property
    def bar_pnl(self) -> npt.NDArray[np.float64]:
        """Per-bar portfolio PnL ``E(t) − E(t−1)`` (``E(−1) = E_0``), USD, shape (n,)."""
        return np.diff(self.equity, prepend=self.initial_capital)

    def daily_equity(self) -> pd.DataFrame:
        """``date, equity, dd`` rows of the portfolio (:func:`pairdesk.quant.metrics.daily_equity_frame`)."""
        return daily_equity_frame(self.ts, self.equity, self.initial_capital)

    def kpis(self, params: KpiParams | None = None) -> dict[str, float]:
        """:func:`pairdesk.quant.metrics.compute_kpis` of the portfolio equity and all trades, plus
        ``halt_rate`` (Σ vetoed / Σ passed θ1), ``theta_pass_rate`` and ``fp_rate_ai2``
        (Σ false positives / Σ AI2 negatives) from the summed counters (NaN when undefined)."""
        k = compute_kpis(
            self.ts,
            self.equity,
            self.trades["pnl"].to_numpy(np.float64),
            self.trades["return_on_capital"].to_numpy(np.float64),
            initial_capital=self.initial_capital,
            bar_ns=self.bar_ns,
            params=params,
        )
        c = self.counters
        k["halt_rate"] = c["vetoed_by_ai2"] / c["passed_theta1"] if c["passed_theta1"] else np.nan
        passed = c["passed_theta1"] - c["vetoed_by_ai2"]
        k["theta_pass_rate"] = passed / c["candidates"] if c["candidates"] else np.nan
        neg = c["ai2_negatives"]
        k["fp_rate_ai2"] = c["ai2_false_positives"] / neg if neg else np.nan
        return k


_COUNTERS = (
    "candidates",
    "passed_theta1",
    "vetoed_by_ai2",
    "entry_signals",
    "entries",
    "ai2_negatives",
    "ai2_false_positives",
)


def combine(results: Sequence[tuple[str, BacktestResult]]) -> PortfolioResult:
    """Combine per-pair backtests (same ``initial_capital``) into the portfolio of the module
    docstring.

    Parameters
    ----------
    results : sequence of (pair_id, BacktestResult)
        At least one; pair ids unique.

    Returns
    -------
    PortfolioResult

    Raises
    ------
    ValueError
        No results, duplicate pair ids or differing initial capitals.
    """
    if not results:
        raise ValueError("combine needs at least one pair's backtest")
    ids = [pid for pid, _ in results]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate pair ids {ids}")
    caps = {float(r.initial_capital) for _, r in results}
    if len(caps) != 1:
        raise ValueError(f"pairs have different initial capitals {sorted(caps)}")
    e0 = caps.pop()
    ts = np.unique(np.concatenate([np.asarray(r.ts, dtype=np.int64) for _, r in results]))
    pnl = {}
    for pid, r in results:
        pos = np.searchsorted(np.asarray(r.ts, dtype=np.int64), ts, side="right") - 1
        own = np.asarray(r.equity, dtype=np.float64) - e0
        pnl[pid] = np.where(pos >= 0, own[np.clip(pos, 0, None)], 0.0)
    pair_pnl = pd.DataFrame(pnl, index=pd.DatetimeIndex(ts, tz="UTC", name="ts_utc"))
    equity = e0 + pair_pnl.sum(axis=1).to_numpy(np.float64)
    frames = []
    for pid, r in results:
        t = r.trades.copy()
        t.insert(0, "pair_id", pid)
        exit_ts = np.asarray(r.ts, dtype=np.int64)[t["bar_exit"].to_numpy(np.int64)]
        t["bar_exit_portfolio"] = np.searchsorted(ts, exit_ts).astype(np.int64)
        frames.append(t)
    trades = pd.concat(frames, ignore_index=True)
    if len(trades):
        trades = trades.sort_values(["bar_exit_portfolio", "pair_id"], kind="stable").reset_index(
            drop=True
        )
    counters = {k: int(sum(getattr(r.counters, k) for _, r in results)) for k in _COUNTERS}
    bar_ns = min(int(r.bar_ns) for _, r in results) if len(ts) < 2 else infer_bar_ns(ts)
    return PortfolioResult(
        ts=ts,
        equity=equity,
        pair_pnl=pair_pnl,
        trades=trades,
        counters=counters,
        bar_ns=int(bar_ns),
        initial_capital=e0,
    )


def theta_score(kpis: Mapping[str, float], objective: ThetaObjectiveParams) -> tuple[float, bool]:
    """Spec 004 §閾値最適化 score and feasibility of one θ cell from its KPIs.

    ``score = ann_return − λ_dd·max(0, max_dd − dd_target) − λ_trades·max(0, trades_min −
    trades_per_year) − λ_stop·fp_rate_ai2`` (the last term 0 when ``fp_rate_ai2`` is NaN, as in
    :func:`pairdesk.quant.backtest.grid_search`); feasible when ``max_dd <= max_dd_max`` and
    ``trades_per_year >= trades_per_year_min``.

    Parameters
    ----------
    kpis : mapping
        ``ann_return``, ``max_dd``, ``trades_per_year`` (fractions, trades/yr), ``fp_rate_ai2``.
    objective : ThetaObjectiveParams

    Returns
    -------
    (score, feasible) : (float, bool)
    """
    ann, dd, tpy = float(kpis["ann_return"]), float(kpis["max_dd"]), float(kpis["trades_per_year"])
    fp = float(kpis.get("fp_rate_ai2", np.nan))
    o = objective
    score = (
        ann
        - o.lambda_dd * max(0.0, dd - o.dd_target)
        - o.lambda_trades * max(0.0, o.trades_min - tpy)
        - (o.lambda_stop * fp if np.isfinite(fp) else 0.0)
    )
    return float(score), bool(dd <= o.max_dd_max and tpy >= o.trades_per_year_min)


def drawdown_events(
    ts: npt.ArrayLike, equity: npt.ArrayLike, initial_capital: float, levels: Mapping[str, float]
) -> list[dict[str, object]]:
    """Drawdown episodes of a per-bar equity curve that reached a ``dd_policy`` level.

    An episode runs from a running peak (``initial_capital`` counts as the first peak) until
    the equity regains it. For each episode and each level (e.g. ``{"WARN": 0.08, "HALT": 0.10,
    "FLATTEN": 0.12}``, drawdown fractions of the peak) it reached, one event: ``level``,
    ``threshold``, ``peak_ts`` (bar-open time of the peak bar, None for the initial capital),
    ``breach_ts`` (first bar with ``1 − E/peak >= threshold``), ``trough_ts``, ``trough_dd``
    (deepest drawdown of the episode, fraction), ``recovered_ts`` (first bar back at the peak,
    None if never). Times are UTC ISO strings.

    Parameters
    ----------
    ts : array_like of int64 ns or datetime, shape (n,)
    equity : array_like of float, shape (n,), USD
    initial_capital : float, USD, > 0
    levels : mapping of level name to drawdown fraction in (0, 1]

    Returns
    -------
    list of dict, ordered by breach time then threshold.
    """
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts), utc=True))
    e = np.asarray(equity, dtype=np.float64)
    if not (np.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be > 0, got {initial_capital!r}")
    peak = np.maximum.accumulate(np.r_[initial_capital, e])[1:]
    dd = 1.0 - e / peak
    # an episode starts at the bar after a new peak; label every bar with its peak's position
    new_peak = np.r_[initial_capital, e][1:] >= np.r_[initial_capital, peak][:-1]
    peak_pos = np.where(new_peak, np.arange(len(e)), -1)
    peak_pos = np.maximum.accumulate(peak_pos)  # -1 while the initial capital is the peak
    events: list[dict[str, object]] = []
    for name, thr in sorted(levels.items(), key=lambda kv: kv[1]):
        hit = np.flatnonzero(dd >= thr)
        seen: set[int] = set()
        for i in map(int, hit):
            p = int(peak_pos[i])
            if p in seen:
                continue
            seen.add(p)
            after = np.arange(len(e)) > max(p, -1)
            in_ep = after & (peak_pos == p)
            ep = np.flatnonzero(in_ep)
            trough = int(ep[np.argmax(dd[ep])])
            rec = np.flatnonzero(after & (np.arange(len(e)) > i) & (peak_pos != p))
            events.append(
                {
                    "level": name,
                    "threshold": float(thr),
                    "peak_ts": None if p < 0 else t[p].isoformat(),
                    "breach_ts": t[i].isoformat(),
                    "trough_ts": t[trough].isoformat(),
                    "trough_dd": float(dd[trough]),
                    "recovered_ts": t[rec[0]].isoformat() if len(rec) else None,
                }
            )
    events.sort(key=lambda ev: (str(ev["breach_ts"]), float(ev["threshold"])))  # type: ignore[arg-type]
    return events


def ruin(ts: npt.ArrayLike, equity: npt.ArrayLike) -> str | None:
    """UTC ISO time of the first bar whose equity is ``<= 0`` (ruin), else None."""
    e = np.asarray(equity, dtype=np.float64)
    hit = np.flatnonzero(e <= 0.0)
    if not len(hit):
        return None
    return pd.Timestamp(np.asarray(ts)[hit[0]], tz="UTC").isoformat()

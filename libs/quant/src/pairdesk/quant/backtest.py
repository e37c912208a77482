"""Single-pair backtest (the N = 1 portfolio) and the θ1/θ2 grid search.

Spec 004 §backtest-assets-engine 仕様 v1 (売買ルール, 約定・コストモデル, 出力), §コストテーブル /
ユニバース仕様 v1 (sizing, cost order) and §閾値最適化（θ1/θ2）仕様 v1 (objective, constraints).

The trading rule (signals at the close, sizing on the initial capital, fills with latency, exit
priority, end of data, equity marks) is :mod:`pairdesk.quant.rule`, the one implementation
shared with the portfolio backtest and the live paper book; its module docstring states every
rule. :func:`run_backtest` runs one pair through the portfolio kernel of
:mod:`pairdesk.quant.portfolio` with :meth:`~pairdesk.quant.portfolio.PortfolioParams.unconstrained`
account rules: no caps, no margin, no drawdown policy and, unless ``stop_at_ruin=True``, no ruin
stop (equity may run below zero; the KPIs stay finite because returns are ``ΔE / E_0``). With
``stop_at_ruin=True`` everything is closed at the first bar with equity ≤ 0 and equity stays flat
afterwards (``ruined``).

* **Counters** (decision points only: flat, tradable, AI1 candidate): ``candidates``,
  ``passed_theta1`` (``p > θ1``), ``vetoed_by_ai2`` (passed θ1, not ``risk < θ2``),
  ``entry_signals``, ``entries`` (filled = trades). With AI2 labels (``risk_label``), the AI2
  false-positive rate of §閾値最適化 (*choice*) is ``FP / negatives`` over the decision points
  that passed θ1 and whose AI2 label is 0: FP = those vetoed (AI2 said "risk", no risk came).
* **KPIs**: :func:`pairdesk.quant.metrics.compute_kpis` (daily returns ``ΔE / E_0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pairdesk.quant.costs import CostModel, LegSpec
from pairdesk.quant.metrics import (
    KpiParams,
    compute_kpis,
    daily_equity_frame,
)
from pairdesk.quant.portfolio import (
    GRID_FIELDS,
    BacktestCounters,
    PairInputs,
    PortfolioParams,
    ThetaObjectiveParams,
    _check_grids,
    _position_from_trades,
    _prepare,
    _run,
    _score_cells,
    _trades_frame,
)
from pairdesk.quant.rule import EXIT_REASONS, BacktestParams
from pairdesk.quant.typing import FloatArray, IntArray

__all__ = [
    "EXIT_REASONS",
    "GRID_FIELDS",
    "BacktestCounters",
    "BacktestParams",
    "BacktestResult",
    "ThetaObjectiveParams",
    "grid_search",
    "run_backtest",
    "theta_grid",
]



@dataclass(frozen=True)
class BacktestResult:
    """Output of :func:`run_backtest`.

    Attributes
    ----------
    trades : pandas.DataFrame
        One row per trade (bt_trades): ``trade_id`` (1, 2, …), ``pair_id``, ``timestamp_entry`` /
        ``timestamp_exit`` (fill times = close time of the fill bar, UTC), ``side``
        (``SHORT_SPREAD``/``LONG_SPREAD``), ``qty_a`` / ``qty_b`` (**signed** lots: + long,
        − short), ``price_a_entry``, ``price_b_entry``, ``price_a_exit``, ``price_b_exit`` (fill
        prices), ``z_at_entry`` / ``z_at_exit`` (z at the entry / exit **signal** bars; the last
        bar for end_of_data), ``return_prob``, ``risk_score`` (at the entry signal bar),
        ``exit_reason``, ``cost_spread``, ``cost_slippage``, ``cost_commission``, ``cost_swap``
        (USD, positive = paid; swap may be negative = credit), ``pnl_gross`` (at tick-rounded
        closes, no costs), ``pnl`` (net USD = gross − all costs), ``return_on_capital``
        (``pnl / initial_capital``), and the bar positions ``bar_signal_entry``, ``bar_entry``,
        ``bar_signal_exit``, ``bar_exit``.
    equity : ndarray of float64, shape (n,)
        Equity per bar (USD) marked at the close.
    position : ndarray of int8, shape (n,)
        Spread position after each bar: +1 long spread, −1 short, 0 flat.
    counters : BacktestCounters
    ts : ndarray of int64, shape (n,)
        Bar open times (ns UTC).
    bar_ns : int
        Bar length (ns).
    initial_capital : float
    ruined : bool
        With ``stop_at_ruin``: equity fell to ≤ 0, everything was closed at that bar
        (``exit_reason = ruin``) and the equity stays at the liquidation value afterwards.
        Default False.
    ruin_bar : int or None
        Bar index of the ruin.
    """

    trades: pd.DataFrame
    equity: FloatArray
    position: npt.NDArray[np.int8]
    counters: BacktestCounters
    ts: IntArray
    bar_ns: int
    initial_capital: float
    ruined: bool = False
    ruin_bar: int | None = None

    @property
    def bar_pnl(self) -> FloatArray:
        """Per-bar PnL ``equity[t] − equity[t−1]`` (``equity[−1]`` = initial capital), USD."""
        return np.diff(self.equity, prepend=self.initial_capital)

    def daily_equity(self) -> pd.DataFrame:
        """bt_daily_equity rows ``date, equity, dd`` (:func:`pairdesk.quant.metrics.daily_equity_frame`)."""
        return daily_equity_frame(self.ts, self.equity, self.initial_capital)

    def kpis(self, params: KpiParams | None = None) -> dict[str, float]:
        """:func:`pairdesk.quant.metrics.compute_kpis` plus ``halt_rate``, ``theta_pass_rate``
        and ``fp_rate_ai2`` from the counters."""
        k = compute_kpis(
            self.ts,
            self.equity,
            self.trades["pnl"].to_numpy(),
            self.trades["return_on_capital"].to_numpy(),
            initial_capital=self.initial_capital,
            bar_ns=self.bar_ns,
            params=params,
        )
        k["halt_rate"] = self.counters.halt_rate
        k["theta_pass_rate"] = self.counters.theta_pass_rate
        k["fp_rate_ai2"] = self.counters.fp_rate_ai2
        return k


def _check_min_notional(min_notional_usd: float) -> float:
    if not (math.isfinite(min_notional_usd) and min_notional_usd >= 0):
        raise ValueError(f"min_notional_usd must be >= 0, got {min_notional_usd!r}")
    return float(min_notional_usd)


def _single(
    ts: npt.ArrayLike,
    close_a: npt.ArrayLike,
    close_b: npt.ArrayLike,
    z: npt.ArrayLike,
    beta: npt.ArrayLike,
    return_prob: npt.ArrayLike,
    risk_score: npt.ArrayLike,
    tradable: npt.ArrayLike,
    legs: tuple[LegSpec, LegSpec],
    min_notional_usd: float,
    risk_label: npt.ArrayLike | None,
    rates: tuple[npt.ArrayLike | None, npt.ArrayLike | None] = (None, None),
) -> list[PairInputs]:
    return [
        PairInputs(
            pair_id=f"{legs[0].symbol}_{legs[1].symbol}",
            ts=ts,
            close_a=close_a,
            close_b=close_b,
            z=z,
            beta=beta,
            return_prob=return_prob,
            risk_score=risk_score,
            tradable=tradable,
            leg_a=legs[0],
            leg_b=legs[1],
            min_notional_usd=_check_min_notional(min_notional_usd),
            risk_label=risk_label,
            quote_to_account_a=rates[0],
            quote_to_account_b=rates[1],
        )
    ]


def _check_n(ts: npt.ArrayLike) -> None:
    n = np.shape(ts)
    if len(n) != 1 or n[0] < 2:
        raise ValueError(f"ts must be 1-d with at least 2 bars, got shape {n}")


def run_backtest(
    ts: npt.ArrayLike,
    close_a: npt.ArrayLike,
    close_b: npt.ArrayLike,
    z: npt.ArrayLike,
    beta: npt.ArrayLike,
    return_prob: npt.ArrayLike,
    risk_score: npt.ArrayLike,
    tradable: npt.ArrayLike,
    legs: tuple[LegSpec, LegSpec],
    costs: CostModel,
    params: BacktestParams | None = None,
    *,
    min_notional_usd: float = 0.0,
    bar_ns: int | None = None,
    risk_label: npt.ArrayLike | None = None,
    stop_at_ruin: bool = False,
    quote_to_account_a: npt.ArrayLike | None = None,
    quote_to_account_b: npt.ArrayLike | None = None,
) -> BacktestResult:
    """Backtest one pair bar by bar (rules in :mod:`pairdesk.quant.rule`).

    Exactly :func:`pairdesk.quant.portfolio.run_portfolio` of this one pair with
    :meth:`PortfolioParams.unconstrained` (no caps, margin or drawdown policy).

    Parameters
    ----------
    ts : array_like, shape (n,)
        Bar open times (int64 ns UTC, datetime64 or DatetimeIndex), strictly increasing, n ≥ 2.
    close_a, close_b : array_like of float, shape (n,)
        Leg closes (quote currency), finite and > 0 on every bar.
    z : array_like of float, shape (n,)
        Spread z-score (features v1 ``z``); NaN in warm-up.
    beta : array_like of float, shape (n,)
        Hedge ratio (features v1 ``beta``, log-price elasticity); NaN in warm-up.
    return_prob : array_like of float, shape (n,)
        AI1 out-of-sample probability; NaN where the bar is not an AI1 candidate.
    risk_score : array_like of float, shape (n,)
        AI2 out-of-sample risk probability; NaN where unavailable.
    tradable : array_like of bool, shape (n,)
        Both legs inside their trading sessions at the bar close.
    legs : (LegSpec, LegSpec)
        Order units of legs A and B.
    costs : CostModel
        Must contain both leg symbols.
    params : BacktestParams, optional
        Rule and execution parameters (defaults from the spec).
    min_notional_usd : float
        Per-leg minimum notional (universe ``constraints.min_notional_usd``).
    bar_ns : int, optional
        Bar length in ns (inferred as the smallest timestamp gap when omitted).
    risk_label : array_like of float, shape (n,), optional
        AI2 labels (0/1, NaN unknown) for the AI2 false-positive counters.
    stop_at_ruin : bool
        Liquidate and stop at the first bar with equity ≤ 0. Default False.
    quote_to_account_a, quote_to_account_b : array_like of float, shape (n,), optional
        Per-bar rates converting each leg's quote currency to the account currency (USD per
        1 unit of quote currency), finite and > 0; ``None`` = 1.0 (USD-quoted leg). See
        :class:`pairdesk.quant.portfolio.PairInputs` and docs/quant-contracts.md §Currency
        conversion.

    Returns
    -------
    BacktestResult

    Raises
    ------
    ValueError
        On shape mismatches, non-increasing ``ts``, non-positive or non-finite closes, a
        non-bool ``tradable``, or a leg symbol missing from ``costs``.
    """
    prm = params or BacktestParams()
    _check_n(np.asarray(ts))
    pairs = _single(
        ts, close_a, close_b, z, beta, return_prob, risk_score, tradable, legs,
        min_notional_usd, risk_label, (quote_to_account_a, quote_to_account_b),
    )  # fmt: skip
    pf = PortfolioParams.unconstrained(stop_at_ruin=stop_at_ruin)
    p = _prepare(pairs, costs, prm, pf, bar_ns)
    raw = _run(p, prm.theta1, prm.theta2, pf.vector(prm.initial_capital), p.clock.shape[0] + 1)
    trades = _trades_frame(raw.trades, raw.trade_pair, p.ts, p.bar_ns, p.pair_ids)
    n = p.clock.shape[0]
    return BacktestResult(
        trades=trades,
        equity=raw.equity,
        position=_position_from_trades(n, trades),
        counters=BacktestCounters.from_array(raw.counters[0], p.has_labels),
        ts=p.clock,
        bar_ns=p.bar_ns,
        initial_capital=float(prm.initial_capital),
        ruined=raw.ruin_c >= 0,
        ruin_bar=raw.ruin_c if raw.ruin_c >= 0 else None,
    )


def theta_grid(start: float, stop: float, step: float) -> FloatArray:
    """Grid ``start, start + step, …`` up to ``stop`` inclusive when on the grid, rounded to 10 dp.

    ``theta_grid(0.60, 0.85, 0.02)`` gives the spec's 13 values 0.60 … 0.84
    (core_policy ``theta_search_range``).

    Raises
    ------
    ValueError
        If ``step <= 0`` or ``stop < start``.
    """
    if not (step > 0 and stop >= start):
        raise ValueError("need step > 0 and stop >= start")
    m = math.floor((stop - start) / step + 1e-9)
    return np.round(start + step * np.arange(m + 1), 10)


def grid_search(
    ts: npt.ArrayLike,
    close_a: npt.ArrayLike,
    close_b: npt.ArrayLike,
    z: npt.ArrayLike,
    beta: npt.ArrayLike,
    return_prob: npt.ArrayLike,
    risk_score: npt.ArrayLike,
    tradable: npt.ArrayLike,
    legs: tuple[LegSpec, LegSpec],
    costs: CostModel,
    params: BacktestParams | None,
    theta1_grid: npt.ArrayLike,
    theta2_grid: npt.ArrayLike,
    *,
    min_notional_usd: float = 0.0,
    bar_ns: int | None = None,
    risk_label: npt.ArrayLike | None = None,
    objective: ThetaObjectiveParams | None = None,
    kpi_params: KpiParams | None = None,
    quote_to_account_a: npt.ArrayLike | None = None,
    quote_to_account_b: npt.ArrayLike | None = None,
) -> np.ndarray:
    """KPIs and the θ objective for every (θ1, θ2) cell (spec 004 §閾値最適化 粗グリッド).

    Each cell is exactly :func:`run_backtest` with ``params`` but ``theta1``/``theta2`` replaced,
    scored with :func:`pairdesk.quant.metrics.compute_kpis` conventions.

    Parameters
    ----------
    ts, close_a, close_b, z, beta, return_prob, risk_score, tradable, legs, costs, params
        As in :func:`run_backtest` (``params.theta1``/``theta2`` are ignored).
    theta1_grid, theta2_grid : array_like of float
        Threshold values, e.g. ``theta_grid(0.60, 0.85, 0.02)`` and ``theta_grid(0.20, 0.45, 0.02)``.
    min_notional_usd, bar_ns, risk_label, quote_to_account_a, quote_to_account_b
        As in :func:`run_backtest`.
    objective : ThetaObjectiveParams, optional
        Score weights and hard constraints.
    kpi_params : KpiParams, optional
        KPI annualisation conventions.

    Returns
    -------
    numpy structured ndarray, shape (len(theta1_grid), len(theta2_grid))
        Fields ``GRID_FIELDS``: the thresholds, every KPI of ``KPI_NAMES``, ``halt_rate``,
        ``theta_pass_rate``, ``fp_rate_ai2`` (NaN without ``risk_label``), ``score``
        ``= ann_return − λ_dd·max(0, max_dd − dd_target) − λ_trades·max(0, trades_min −
        trades_per_year) − λ_stop·fp_rate_ai2`` (the last term is 0 when the FP rate is NaN)
        and ``feasible`` (bool: ``max_dd <= max_dd_max and trades_per_year >=
        trades_per_year_min``).
    """
    prm = params or BacktestParams()
    g1, g2 = _check_grids(theta1_grid, theta2_grid)
    _check_n(np.asarray(ts))
    pairs = _single(
        ts, close_a, close_b, z, beta, return_prob, risk_score, tradable, legs,
        min_notional_usd, risk_label, (quote_to_account_a, quote_to_account_b),
    )  # fmt: skip
    pf = PortfolioParams.unconstrained()
    p = _prepare(pairs, costs, prm, pf, bar_ns)
    return _score_cells(
        p,
        pf.vector(prm.initial_capital),
        g1,
        g2,
        objective or ThetaObjectiveParams(),
        kpi_params or KpiParams(),
    )

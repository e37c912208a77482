"""Bar-by-bar pair backtest with costs, β-neutral sizing and the θ1/θ2 grid search.

Spec 004 §backtest-assets-engine 仕様 v1 (売買ルール, 約定・コストモデル, 出力), §コストテーブル /
ユニバース仕様 v1 (sizing, cost order) and §閾値最適化（θ1/θ2）仕様 v1 (objective, constraints).

Rules (choices where the spec is ambiguous are marked *choice*):

* **Signals at the close of bar t.** An entry signal needs: flat (no position and no pending
  order), ``tradable[t]``, an AI1 candidate (``return_prob[t]`` finite), ``return_prob > θ1``,
  ``risk_score < θ2`` (a missing risk score never passes, *choice*: fail-safe), and finite
  non-zero ``z[t]`` and ``beta[t]``. Direction from ``sign(z[t])``: ``z > 0`` → ``SHORT_SPREAD``
  (sell A, buy B), ``z < 0`` → ``LONG_SPREAD`` (buy A, sell B). *Choice*: the B leg trades
  ``−sign(β)`` times the A direction, which is the spec's "A売/B買" for the usual ``β > 0`` and
  keeps the position a hedge of ``S = ln A − β ln B`` if ``β < 0``.
* **Sizing at the signal** (no look-ahead): :func:`pairdesk.quant.costs.size_pair` with the
  closes and ``beta`` of the signal bar, leg-A notional ``initial_capital ·
  notional_leg_a_fraction · min(position_scale, 1)`` (spec: position_scale 上限 1.0). *Choice*:
  sizes do not compound with PnL, so trades do not depend on each other's outcomes.
* **Fills** at the close of bar ``t + latency_bars``, or of the first tradable bar after it.
  Fill prices, commission and swap follow :mod:`pairdesk.quant.costs`; the time-of-day slippage
  multiplier is taken at the fill time, the **close** time ``ts + bar_ns`` of the fill bar.
  *Choice*: an entry is never filled on the last bar of the data (the order is cancelled), so
  no zero-length trade is created by the end of data.
* **Exit signals** are evaluated on each bar after the entry signal bar while the position is
  open and no exit is pending, in this priority: ``|z| <= z_exit`` → ``z_exit``;
  ``risk_stop and risk_score >= θ_stop`` → ``risk_stop``; ``t − entry fill bar > M`` →
  ``max_bars``. NaN ``z``/``risk_score`` never trigger. The exit fills with the same latency
  rule (any bar, tradable).
* **End of data**: an open position (even one with an exit still pending) is closed at the
  last bar's close with the usual costs, ``exit_reason = end_of_data``.
* **Equity** per bar, marked at the close after that bar's fills: ``E_0 + realised PnL + Σ_legs
  qty · contract_size · (close − entry fill) − entry commission + swap accrued so far``. Costs
  appear only through fills (spread/slippage in the fill price, commission at the fill) and
  swap at each rollover crossed; after the exit, equity = ``E_0 +`` the sum of trade PnLs.
* **Counters** (decision points only: flat, tradable, AI1 candidate): ``candidates``,
  ``passed_theta1`` (``p > θ1``), ``vetoed_by_ai2`` (passed θ1, not ``risk < θ2``),
  ``entry_signals``, ``entries`` (filled = trades). With AI2 labels (``risk_label``), the AI2
  false-positive rate of §閾値最適化 (*choice*) is ``FP / negatives`` over the decision points
  that passed θ1 and whose AI2 label is 0: FP = those vetoed (AI2 said "risk", no risk came).

The hot loop is the numba kernel ``_bt_kernel_nb``; :func:`grid_search` reuses it per θ cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit
from pairdesk.quant.costs import (
    CostModel,
    LegSpec,
    _fill_price_nb,
    _round_tick_nb,
    _size_pair_nb,
)
from pairdesk.quant.metrics import (
    KPI_NAMES,
    KpiParams,
    _as_ts_ns,
    _f64,
    _kpi_core_nb,
    _period_last,
    _trade_stats_nb,
    compute_kpis,
    daily_equity_frame,
    infer_bar_ns,
)

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

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: ``exit_reason`` codes used by the kernel, in code order.
EXIT_REASONS: tuple[str, ...] = ("z_exit", "max_bars", "risk_stop", "end_of_data")
_R_Z, _R_MAX, _R_RISK, _R_END = 0, 1, 2, 3

# trade-matrix columns written by the kernel
(
    C_SIG_IN,
    C_BAR_IN,
    C_SIG_OUT,
    C_BAR_OUT,
    C_SIDE,
    C_QA,
    C_QB,
    C_PA_IN,
    C_PB_IN,
    C_PA_OUT,
    C_PB_OUT,
    C_RA_IN,
    C_RB_IN,
    C_RA_OUT,
    C_RB_OUT,
    C_Z_IN,
    C_Z_OUT,
    C_PROB,
    C_RISK,
    C_REASON,
    C_SPREAD,
    C_SLIP,
    C_COMM,
    C_SWAP,
    C_GROSS,
    C_PNL,
    C_ROC,
    C_SWR,
    C_SWC_IN,
    C_COMM_IN,
) = range(30)
_NCOL = 30

# counters
(
    K_CAND,
    K_PASS1,
    K_VETO,
    K_SIGNALS,
    K_ENTRIES,
    K_NEG,
    K_FP,
) = range(7)
_NCOUNT = 7

_NS_PER_DAY = 86_400_000_000_000
_I_ANN, _I_DD, _I_TPY = (KPI_NAMES.index(k) for k in ("ann_return", "max_dd", "trades_per_year"))


# ----------------------------------------------------------------------------------------------
# parameters and results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestParams:
    """Trading rule and execution parameters (config/backtest_policy.yaml, core_policy.yaml).

    Parameters
    ----------
    theta1 : float
        AI1 threshold: enter only when ``return_prob > theta1``. Default 0.70 (θ1初期値).
    theta2 : float
        AI2 threshold: enter only when ``risk_score < theta2``. Default 0.30 (θ2初期値).
    z_exit : float
        Exit when ``|z| <= z_exit``. Default 0.5.
    M : int
        Time stop: exit when more than ``M`` bars have elapsed since the entry fill. Default 48.
    theta_stop : float
        Risk stop: exit when ``risk_score >= theta_stop`` (if ``risk_stop``). Default 0.45.
    risk_stop : bool
        Enable the risk stop. Default True.
    latency_bars : int
        Fill at the close of bar ``t + latency_bars`` (0 = the signal bar's close). Default 1.
    initial_capital : float
        Starting equity, USD. Default 100 000.
    notional_leg_a_fraction : float
        Leg-A target notional as a fraction of ``initial_capital``. Default 1.0.
    position_scale : float
        Size multiplier, capped at 1.0 (spec: 上限 1.0). Default 1.0.
    ratio_tol : float
        Sizing ratio tolerance (spec: ±1%). Default 0.01.
    max_upscale : float
        Largest factor the ratio re-adjustment may enlarge leg A by. Default 2.0.

    Raises
    ------
    ValueError
        On out-of-range values.
    """

    theta1: float = 0.70
    theta2: float = 0.30
    z_exit: float = 0.5
    M: int = 48
    theta_stop: float = 0.45
    risk_stop: bool = True
    latency_bars: int = 1
    initial_capital: float = 100_000.0
    notional_leg_a_fraction: float = 1.0
    position_scale: float = 1.0
    ratio_tol: float = 0.01
    max_upscale: float = 2.0

    def __post_init__(self) -> None:
        for name in ("theta1", "theta2", "theta_stop"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not (math.isfinite(self.z_exit) and self.z_exit >= 0):
            raise ValueError(f"z_exit must be >= 0, got {self.z_exit!r}")
        if int(self.M) != self.M or self.M < 0:
            raise ValueError(f"M must be a non-negative integer, got {self.M!r}")
        if int(self.latency_bars) != self.latency_bars or self.latency_bars < 0:
            raise ValueError(
                f"latency_bars must be a non-negative integer, got {self.latency_bars!r}"
            )
        for name in ("initial_capital", "notional_leg_a_fraction", "position_scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not (self.ratio_tol >= 0 and self.max_upscale >= 1):
            raise ValueError("ratio_tol must be >= 0 and max_upscale >= 1")

    @classmethod
    def from_policy(
        cls, backtest_policy: Mapping[str, Any], core_policy: Mapping[str, Any] | None = None
    ) -> BacktestParams:
        """Build from parsed ``backtest_policy.yaml`` (exit_rule, execution) and, for θ1/θ2,
        ``core_policy.yaml`` (theta1_initial, theta2_initial); missing keys keep the defaults."""
        kw: dict[str, Any] = {}
        ex = dict(backtest_policy.get("exit_rule", {}).get("value", {}))
        for key in ("z_exit", "M", "risk_stop", "theta_stop"):
            if key in ex:
                kw[key] = ex[key]
        exe = dict(backtest_policy.get("execution", {}).get("value", {}))
        mapping = {
            "latency_bars": "latency_bars",
            "initial_capital_usd": "initial_capital",
            "notional_leg_a_fraction": "notional_leg_a_fraction",
            "position_scale": "position_scale",
        }
        for src, dst in mapping.items():
            if src in exe:
                kw[dst] = exe[src]
        if core_policy is not None:
            if "theta1_initial" in core_policy:
                kw["theta1"] = float(core_policy["theta1_initial"]["value"])
            if "theta2_initial" in core_policy:
                kw["theta2"] = float(core_policy["theta2_initial"]["value"])
        return cls(**kw)


@dataclass(frozen=True)
class ThetaObjectiveParams:
    """θ1/θ2 objective and hard constraints (spec 004 §閾値最適化, core_policy ``theta_objective``).

    ``Score = AnnReturn − λ_dd·max(0, MaxDD − dd_target) − λ_trades·max(0, trades_min −
    trades/yr) − λ_stop·FP_rate_AI2``; a cell is *feasible* when ``MaxDD <= max_dd_max`` and
    ``trades/yr >= trades_per_year_min``.

    Parameters
    ----------
    dd_target : float
        Default 0.12.
    trades_min : float
        Trades per year below which the score is penalised. Default 150.
    lambda_dd, lambda_trades, lambda_stop : float
        Penalty weights. Defaults 2.0, 0.05, 0.10.
    max_dd_max : float
        Hard constraint on MaxDD. Default 0.12.
    trades_per_year_min : float
        Hard constraint on trades per year. Default 150.
    """

    dd_target: float = 0.12
    trades_min: float = 150.0
    lambda_dd: float = 2.0
    lambda_trades: float = 0.05
    lambda_stop: float = 0.10
    max_dd_max: float = 0.12
    trades_per_year_min: float = 150.0

    @classmethod
    def from_policy(cls, core_policy: Mapping[str, Any]) -> ThetaObjectiveParams:
        """Build from parsed ``core_policy.yaml`` (``theta_objective.value``)."""
        v = dict(core_policy.get("theta_objective", {}).get("value", {}))
        unknown = set(v) - {"dd_target", "trades_min", "lambda_dd", "lambda_trades", "lambda_stop"}
        if unknown:
            raise ValueError(f"theta_objective: unknown keys {sorted(unknown)}")
        return cls(**{k: float(x) for k, x in v.items()})


@dataclass(frozen=True)
class BacktestCounters:
    """Decision-point counters of one backtest (see the module docstring)."""

    candidates: int
    passed_theta1: int
    vetoed_by_ai2: int
    entry_signals: int
    entries: int
    ai2_negatives: int
    ai2_false_positives: int

    @property
    def halt_rate(self) -> float:
        """やらない勇気発動率 ``vetoed_by_ai2 / passed_theta1`` (NaN if nothing passed θ1)."""
        return self.vetoed_by_ai2 / self.passed_theta1 if self.passed_theta1 else float("nan")

    @property
    def theta_pass_rate(self) -> float:
        """θ1/θ2通過率: share of candidates passing both thresholds (NaN without candidates)."""
        ok = self.passed_theta1 - self.vetoed_by_ai2
        return ok / self.candidates if self.candidates else float("nan")

    @property
    def fp_rate_ai2(self) -> float:
        """AI2 false-positive rate ``FP / negatives`` (NaN without labels or negatives)."""
        return self.ai2_false_positives / self.ai2_negatives if self.ai2_negatives else float("nan")


@dataclass(frozen=True)
class BacktestResult:
    """Output of :func:`run_backtest`.

    Attributes
    ----------
    trades : pandas.DataFrame
        One row per trade (bt_trades): ``trade_id`` (1, 2, …), ``timestamp_entry`` /
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
    """

    trades: pd.DataFrame
    equity: FloatArray
    position: npt.NDArray[np.int8]
    counters: BacktestCounters
    ts: IntArray
    bar_ns: int
    initial_capital: float

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


# ----------------------------------------------------------------------------------------------
# kernel
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _open_fill_nb(
    row: FloatArray,
    t: int,
    ref_a: float,
    ref_b: float,
    mult: float,
    swapc: float,
    tick_a: float,
    cs_a: float,
    tick_b: float,
    cs_b: float,
    costs: FloatArray,
) -> None:
    """Entry fill of the pending trade in ``row`` at bar ``t``."""
    qa = row[C_QA]
    qb = row[C_QB]
    fa = _fill_price_nb(ref_a, qa > 0, costs[0], costs[1] * mult, tick_a)
    fb = _fill_price_nb(ref_b, qb > 0, costs[5], costs[6] * mult, tick_b)
    na = abs(qa) * cs_a
    nb = abs(qb) * cs_b
    sp = na * ref_a * costs[0] + nb * ref_b * costs[5]
    row[C_BAR_IN] = t
    row[C_PA_IN] = fa
    row[C_PB_IN] = fb
    row[C_RA_IN] = ref_a
    row[C_RB_IN] = ref_b
    row[C_SPREAD] = sp
    row[C_SLIP] = na * abs(fa - ref_a) + nb * abs(fb - ref_b) - sp
    comm = na * fa * costs[2] + nb * fb * costs[7]
    row[C_COMM_IN] = comm
    row[C_COMM] = comm
    # swap credit (USD) per swap day: notional × signed rate (negative rate = cost)
    swa = na * fa * (costs[3] if qa > 0 else costs[4])
    swb = nb * fb * (costs[8] if qb > 0 else costs[9])
    row[C_SWR] = swa + swb
    row[C_SWC_IN] = swapc


@njit(cache=True)
def _close_fill_nb(
    row: FloatArray,
    t: int,
    ref_a: float,
    ref_b: float,
    mult: float,
    swapc: float,
    tick_a: float,
    cs_a: float,
    tick_b: float,
    cs_b: float,
    costs: FloatArray,
    e0: float,
) -> float:
    """Exit fill of the open trade in ``row`` at bar ``t``; returns the net PnL (USD)."""
    qa = row[C_QA]
    qb = row[C_QB]
    fa = _fill_price_nb(ref_a, qa < 0, costs[0], costs[1] * mult, tick_a)
    fb = _fill_price_nb(ref_b, qb < 0, costs[5], costs[6] * mult, tick_b)
    na = abs(qa) * cs_a
    nb = abs(qb) * cs_b
    sp = na * ref_a * costs[0] + nb * ref_b * costs[5]
    row[C_BAR_OUT] = t
    row[C_PA_OUT] = fa
    row[C_PB_OUT] = fb
    row[C_RA_OUT] = ref_a
    row[C_RB_OUT] = ref_b
    row[C_SPREAD] += sp
    row[C_SLIP] += na * abs(fa - ref_a) + nb * abs(fb - ref_b) - sp
    comm_out = na * fa * costs[2] + nb * fb * costs[7]
    row[C_COMM] += comm_out
    swap_pnl = row[C_SWR] * (swapc - row[C_SWC_IN])
    row[C_SWAP] = -swap_pnl
    row[C_GROSS] = qa * cs_a * (ref_a - row[C_RA_IN]) + qb * cs_b * (ref_b - row[C_RB_IN])
    pnl = qa * cs_a * (fa - row[C_PA_IN]) + qb * cs_b * (fb - row[C_PB_IN]) - row[C_COMM] + swap_pnl
    row[C_PNL] = pnl
    row[C_ROC] = pnl / e0
    return pnl


@njit(cache=True)
def _bt_kernel_nb(
    close_a: FloatArray,
    close_b: FloatArray,
    ref_a: FloatArray,
    ref_b: FloatArray,
    z: FloatArray,
    beta: FloatArray,
    prob: FloatArray,
    risk: FloatArray,
    tradable: BoolArray,
    risk_label: FloatArray,
    mult: FloatArray,
    swapc: FloatArray,
    legs: FloatArray,
    costs: FloatArray,
    theta1: float,
    theta2: float,
    z_exit: float,
    max_bars: int,
    theta_stop: float,
    risk_stop: bool,
    latency: int,
    e0: float,
    cap_a: float,
    min_notional: float,
    ratio_tol: float,
    max_upscale: float,
    equity: FloatArray,
    position: npt.NDArray[np.int8],
    trades: FloatArray,
    counters: IntArray,
) -> int:
    """Run the state machine; fills ``equity``, ``position``, ``trades``, ``counters``.

    ``legs`` = (tick_a, cs_a, min_lot_a, step_a, tick_b, cs_b, min_lot_b, step_b);
    ``costs`` = (half_spread, slippage, commission, swap_long, swap_short) of A then B, all as
    fractions. Returns the number of trades written to ``trades``.
    """
    n = close_a.shape[0]
    tick_a, cs_a, ml_a, st_a = legs[0], legs[1], legs[2], legs[3]
    tick_b, cs_b, ml_b, st_b = legs[4], legs[5], legs[6], legs[7]
    for i in range(_NCOUNT):
        counters[i] = 0
    # state: 0 flat, 1 entry pending, 2 open, 3 open with exit pending
    state = 0
    k = 0  # index of the current trade row
    due = 0
    realised = 0.0
    for t in range(n):
        last = t == n - 1
        # ---- fills due at this close
        if state == 1 and t >= due and tradable[t] and not last:
            _open_fill_nb(
                trades[k],
                t,
                ref_a[t],
                ref_b[t],
                mult[t],
                swapc[t],
                tick_a,
                cs_a,
                tick_b,
                cs_b,
                costs,
            )
            counters[K_ENTRIES] += 1
            state = 2
        elif state == 3 and t >= due and tradable[t]:
            realised += _close_fill_nb(
                trades[k],
                t,
                ref_a[t],
                ref_b[t],
                mult[t],
                swapc[t],
                tick_a,
                cs_a,
                tick_b,
                cs_b,
                costs,
                e0,
            )
            k += 1
            state = 0
        # ---- exit signal at this close
        if state == 2 and t > trades[k, C_SIG_IN]:
            zt = z[t]
            reason = -1
            if np.isfinite(zt) and abs(zt) <= z_exit:
                reason = _R_Z
            elif risk_stop and risk[t] >= theta_stop:
                reason = _R_RISK
            elif t - trades[k, C_BAR_IN] > max_bars:
                reason = _R_MAX
            if reason >= 0:
                trades[k, C_REASON] = reason
                trades[k, C_SIG_OUT] = t
                trades[k, C_Z_OUT] = zt
                due = t + latency
                state = 3
                if latency == 0 and tradable[t]:
                    realised += _close_fill_nb(
                        trades[k],
                        t,
                        ref_a[t],
                        ref_b[t],
                        mult[t],
                        swapc[t],
                        tick_a,
                        cs_a,
                        tick_b,
                        cs_b,
                        costs,
                        e0,
                    )
                    k += 1
                    state = 0
        # ---- entry signal at this close
        if state == 0 and tradable[t] and np.isfinite(prob[t]):
            counters[K_CAND] += 1
            if prob[t] > theta1:
                counters[K_PASS1] += 1
                negative = risk_label[t] == 0.0
                if negative:
                    counters[K_NEG] += 1
                if not (risk[t] < theta2):
                    counters[K_VETO] += 1
                    if negative:
                        counters[K_FP] += 1
                else:
                    zt = z[t]
                    bt = beta[t]
                    if np.isfinite(zt) and zt != 0.0 and np.isfinite(bt) and bt != 0.0:
                        la, lb = _size_pair_nb(
                            cap_a,
                            bt,
                            close_a[t],
                            close_b[t],
                            tick_a,
                            cs_a,
                            ml_a,
                            st_a,
                            tick_b,
                            cs_b,
                            ml_b,
                            st_b,
                            min_notional,
                            ratio_tol,
                            max_upscale,
                        )
                        side = -1.0 if zt > 0.0 else 1.0
                        row = trades[k]
                        row[:] = 0.0
                        row[C_SIG_IN] = t
                        row[C_SIDE] = side
                        row[C_QA] = side * la
                        row[C_QB] = -side * (1.0 if bt > 0.0 else -1.0) * lb
                        row[C_Z_IN] = zt
                        row[C_PROB] = prob[t]
                        row[C_RISK] = risk[t]
                        counters[K_SIGNALS] += 1
                        due = t + latency
                        state = 1
                        if latency == 0 and not last:
                            _open_fill_nb(
                                row,
                                t,
                                ref_a[t],
                                ref_b[t],
                                mult[t],
                                swapc[t],
                                tick_a,
                                cs_a,
                                tick_b,
                                cs_b,
                                costs,
                            )
                            counters[K_ENTRIES] += 1
                            state = 2
        # ---- end of data
        if last and (state == 2 or state == 3):
            trades[k, C_REASON] = _R_END
            trades[k, C_SIG_OUT] = t
            trades[k, C_Z_OUT] = z[t]
            realised += _close_fill_nb(
                trades[k],
                t,
                ref_a[t],
                ref_b[t],
                mult[t],
                swapc[t],
                tick_a,
                cs_a,
                tick_b,
                cs_b,
                costs,
                e0,
            )
            k += 1
            state = 0
        # ---- mark to market at the close
        if state == 2 or state == 3:
            row = trades[k]
            equity[t] = (
                e0
                + realised
                + row[C_QA] * cs_a * (close_a[t] - row[C_PA_IN])
                + row[C_QB] * cs_b * (close_b[t] - row[C_PB_IN])
                - row[C_COMM_IN]
                + row[C_SWR] * (swapc[t] - row[C_SWC_IN])
            )
            position[t] = np.int8(row[C_SIDE])
        else:
            equity[t] = e0 + realised
            position[t] = 0
    return k


# ----------------------------------------------------------------------------------------------
# input preparation
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _round_ticks_nb(x: FloatArray, tick: float) -> FloatArray:
    """Nearest-tick reference prices, shape of ``x``."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = _round_tick_nb(x[i], tick, 0)
    return out


@dataclass(frozen=True)
class _Prepared:
    ts: IntArray
    bar_ns: int
    close_a: FloatArray
    close_b: FloatArray
    ref_a: FloatArray
    ref_b: FloatArray
    z: FloatArray
    beta: FloatArray
    prob: FloatArray
    risk: FloatArray
    tradable: BoolArray
    risk_label: FloatArray
    has_labels: bool
    mult: FloatArray
    swapc: FloatArray
    legs: FloatArray
    costs: FloatArray


def _prepare(
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
    bar_ns: int | None,
    risk_label: npt.ArrayLike | None,
) -> _Prepared:
    t = _as_ts_ns(ts)
    n = t.shape[0]
    if t.ndim != 1 or n < 2:
        raise ValueError(f"ts must be 1-d with at least 2 bars, got shape {t.shape}")
    if (np.diff(t) <= 0).any():
        raise ValueError("ts must be strictly increasing")
    b = infer_bar_ns(t) if bar_ns is None else int(bar_ns)
    if b <= 0:
        raise ValueError(f"bar_ns must be > 0, got {b}")

    def arr(name: str, x: npt.ArrayLike) -> FloatArray:
        a = _f64(x)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
        return a

    ca, cb = arr("close_a", close_a), arr("close_b", close_b)
    for name, c in (("close_a", ca), ("close_b", cb)):
        if not (np.isfinite(c).all() and (c > 0).all()):
            raise ValueError(f"{name} must be finite and > 0 on every bar")
    tr = np.asarray(tradable)
    if tr.shape != (n,) or tr.dtype != np.bool_:
        raise ValueError(f"tradable must be a bool array of shape ({n},)")
    leg_a, leg_b = legs
    ca_cost, cb_cost = costs.leg(leg_a.symbol), costs.leg(leg_b.symbol)
    ref_a = _round_ticks_nb(ca, leg_a.tick_size)
    ref_b = _round_ticks_nb(cb, leg_b.tick_size)
    close_time = t + b
    lab = np.full(n, np.nan) if risk_label is None else arr("risk_label", risk_label)
    return _Prepared(
        ts=t,
        bar_ns=b,
        close_a=ca,
        close_b=cb,
        ref_a=ref_a,
        ref_b=ref_b,
        z=arr("z", z),
        beta=arr("beta", beta),
        prob=arr("return_prob", return_prob),
        risk=arr("risk_score", risk_score),
        tradable=np.require(tr, requirements=["C", "W"]),
        risk_label=lab,
        has_labels=risk_label is not None,
        mult=costs.slippage_multiplier(close_time),
        swapc=costs.swap_cumulative(close_time),
        legs=np.array(
            [
                leg_a.tick_size,
                leg_a.contract_size,
                leg_a.min_lot,
                leg_a.lot_step,
                leg_b.tick_size,
                leg_b.contract_size,
                leg_b.min_lot,
                leg_b.lot_step,
            ]
        ),
        costs=np.array(
            [
                ca_cost.spread_bps * 0.5e-4,
                ca_cost.slippage_bps * 1e-4,
                ca_cost.commission_bps * 1e-4,
                ca_cost.swap_long_bps_day * 1e-4,
                ca_cost.swap_short_bps_day * 1e-4,
                cb_cost.spread_bps * 0.5e-4,
                cb_cost.slippage_bps * 1e-4,
                cb_cost.commission_bps * 1e-4,
                cb_cost.swap_long_bps_day * 1e-4,
                cb_cost.swap_short_bps_day * 1e-4,
            ]
        ),
    )


def _run_kernel(
    p: _Prepared,
    params: BacktestParams,
    min_notional: float,
    theta1: float,
    theta2: float,
    equity: FloatArray,
    position: npt.NDArray[np.int8],
    trades: FloatArray,
    counters: IntArray,
) -> int:
    cap_a = (
        params.initial_capital * params.notional_leg_a_fraction * min(params.position_scale, 1.0)
    )
    return int(
        _bt_kernel_nb(
            p.close_a,
            p.close_b,
            p.ref_a,
            p.ref_b,
            p.z,
            p.beta,
            p.prob,
            p.risk,
            p.tradable,
            p.risk_label,
            p.mult,
            p.swapc,
            p.legs,
            p.costs,
            float(theta1),
            float(theta2),
            float(params.z_exit),
            int(params.M),
            float(params.theta_stop),
            bool(params.risk_stop),
            int(params.latency_bars),
            float(params.initial_capital),
            float(cap_a),
            float(min_notional),
            float(params.ratio_tol),
            float(params.max_upscale),
            equity,
            position,
            trades,
            counters,
        )
    )


def _check_min_notional(min_notional_usd: float) -> float:
    if not (math.isfinite(min_notional_usd) and min_notional_usd >= 0):
        raise ValueError(f"min_notional_usd must be >= 0, got {min_notional_usd!r}")
    return float(min_notional_usd)


def _trades_frame(tr: FloatArray, ts: IntArray, bar_ns: int) -> pd.DataFrame:
    close_time = ts + bar_ns

    def stamp(col: int) -> pd.DatetimeIndex:
        return pd.to_datetime(close_time[tr[:, col].astype(np.int64)], utc=True)

    reasons = np.array(EXIT_REASONS, dtype=object)
    return pd.DataFrame(
        {
            "trade_id": np.arange(1, tr.shape[0] + 1, dtype=np.int64),
            "timestamp_entry": stamp(C_BAR_IN),
            "timestamp_exit": stamp(C_BAR_OUT),
            "side": np.where(tr[:, C_SIDE] > 0, "LONG_SPREAD", "SHORT_SPREAD").astype(object),
            "qty_a": tr[:, C_QA],
            "qty_b": tr[:, C_QB],
            "price_a_entry": tr[:, C_PA_IN],
            "price_b_entry": tr[:, C_PB_IN],
            "price_a_exit": tr[:, C_PA_OUT],
            "price_b_exit": tr[:, C_PB_OUT],
            "z_at_entry": tr[:, C_Z_IN],
            "z_at_exit": tr[:, C_Z_OUT],
            "return_prob": tr[:, C_PROB],
            "risk_score": tr[:, C_RISK],
            "exit_reason": reasons[tr[:, C_REASON].astype(np.int64)],
            "cost_spread": tr[:, C_SPREAD],
            "cost_slippage": tr[:, C_SLIP],
            "cost_commission": tr[:, C_COMM],
            "cost_swap": tr[:, C_SWAP],
            "pnl_gross": tr[:, C_GROSS],
            "pnl": tr[:, C_PNL],
            "return_on_capital": tr[:, C_ROC],
            "bar_signal_entry": tr[:, C_SIG_IN].astype(np.int64),
            "bar_entry": tr[:, C_BAR_IN].astype(np.int64),
            "bar_signal_exit": tr[:, C_SIG_OUT].astype(np.int64),
            "bar_exit": tr[:, C_BAR_OUT].astype(np.int64),
        }
    )


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


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
) -> BacktestResult:
    """Backtest one pair bar by bar (rules in the module docstring).

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
    mn = _check_min_notional(min_notional_usd)
    p = _prepare(
        ts,
        close_a,
        close_b,
        z,
        beta,
        return_prob,
        risk_score,
        tradable,
        legs,
        costs,
        bar_ns,
        risk_label,
    )
    n = p.ts.shape[0]
    equity = np.empty(n)
    position = np.empty(n, dtype=np.int8)
    trades = np.zeros((n, _NCOL))
    counters = np.zeros(_NCOUNT, dtype=np.int64)
    k = _run_kernel(p, prm, mn, prm.theta1, prm.theta2, equity, position, trades, counters)
    c = [int(x) for x in counters]
    return BacktestResult(
        trades=_trades_frame(trades[:k], p.ts, p.bar_ns),
        equity=equity,
        position=position,
        counters=BacktestCounters(
            candidates=c[K_CAND],
            passed_theta1=c[K_PASS1],
            vetoed_by_ai2=c[K_VETO],
            entry_signals=c[K_SIGNALS],
            entries=c[K_ENTRIES],
            ai2_negatives=c[K_NEG] if p.has_labels else 0,
            ai2_false_positives=c[K_FP] if p.has_labels else 0,
        ),
        ts=p.ts,
        bar_ns=p.bar_ns,
        initial_capital=float(prm.initial_capital),
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


#: Fields of the structured array returned by :func:`grid_search`.
GRID_FIELDS: tuple[str, ...] = (
    "theta1",
    "theta2",
    *KPI_NAMES,
    "halt_rate",
    "theta_pass_rate",
    "fp_rate_ai2",
    "score",
    "feasible",
)


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
    min_notional_usd, bar_ns, risk_label
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
    obj = objective or ThetaObjectiveParams()
    kp = kpi_params or KpiParams()
    mn = _check_min_notional(min_notional_usd)
    g1 = np.asarray(theta1_grid, dtype=np.float64).ravel()
    g2 = np.asarray(theta2_grid, dtype=np.float64).ravel()
    for g in (g1, g2):
        if g.size == 0 or not (np.isfinite(g).all() and (g >= 0).all() and (g <= 1).all()):
            raise ValueError("theta grids must be non-empty with values in [0, 1]")
    p = _prepare(
        ts,
        close_a,
        close_b,
        z,
        beta,
        return_prob,
        risk_score,
        tradable,
        legs,
        costs,
        bar_ns,
        risk_label,
    )
    n = p.ts.shape[0]
    days = float(p.ts[-1] + p.bar_ns - p.ts[0]) / _NS_PER_DAY
    day_last = _period_last(p.ts, "D")
    month_last = _period_last(p.ts, "M")
    equity = np.empty(n)
    position = np.empty(n, dtype=np.int8)
    trades = np.zeros((n, _NCOL))
    counters = np.zeros(_NCOUNT, dtype=np.int64)
    scratch = np.empty(n)
    kpi = np.empty(len(KPI_NAMES))
    dtype = [(f, np.bool_ if f == "feasible" else np.float64) for f in GRID_FIELDS]
    out = np.zeros((g1.size, g2.size), dtype=dtype)
    for i, t1 in enumerate(g1):
        for j, t2 in enumerate(g2):
            k = _run_kernel(p, prm, mn, float(t1), float(t2), equity, position, trades, counters)
            stats = _trade_stats_nb(
                np.ascontiguousarray(trades[:k, C_PNL]), np.ascontiguousarray(trades[:k, C_ROC])
            )
            _kpi_core_nb(
                equity,
                day_last,
                month_last,
                prm.initial_capital,
                days,
                float(kp.periods_per_year),
                float(kp.days_per_year),
                *stats,
                scratch,
                kpi,
            )
            cell = out[i, j]
            cell["theta1"] = t1
            cell["theta2"] = t2
            for name, v in zip(KPI_NAMES, kpi, strict=True):
                cell[name] = v
            pass1, veto = int(counters[K_PASS1]), int(counters[K_VETO])
            cand, neg = int(counters[K_CAND]), int(counters[K_NEG])
            cell["halt_rate"] = veto / pass1 if pass1 else np.nan
            cell["theta_pass_rate"] = (pass1 - veto) / cand if cand else np.nan
            fp = int(counters[K_FP]) / neg if (p.has_labels and neg) else np.nan
            cell["fp_rate_ai2"] = fp
            ann, dd, tpy = kpi[_I_ANN], kpi[_I_DD], kpi[_I_TPY]
            cell["score"] = (
                ann
                - obj.lambda_dd * max(0.0, dd - obj.dd_target)
                - obj.lambda_trades * max(0.0, obj.trades_min - tpy)
                - (obj.lambda_stop * fp if np.isfinite(fp) else 0.0)
            )
            cell["feasible"] = bool(dd <= obj.max_dd_max and tpy >= obj.trades_per_year_min)
    return out

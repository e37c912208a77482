"""The one per-bar trading rule of a pair: entry/exit signals, sizing, fills, gates, marks.

Spec 004 §backtest-assets-engine 仕様 v1 (売買ルール, 約定・コストモデル), §コストテーブル /
ユニバース仕様 v1 (sizing, cost order), §運用Runbook 仕様 v1 (停止レベル: the gate inputs).
Formulas and choices: docs/quant-contracts.md §Backtest.

This module is the **single implementation** of the rule. It is used by

* the numba portfolio kernel behind :func:`pairdesk.quant.portfolio.run_portfolio` (N pairs on one
  clock, shared capital, drawdown policy, margin, ruin),
* :func:`pairdesk.quant.backtest.run_backtest` (the N = 1 portfolio without caps, margin or
  drawdown policy),
* the live paper book of ``core_inference`` through :class:`PairBook`.

State machine of one pair (``state`` codes :data:`FLAT`, :data:`ENTRY_PENDING`, :data:`OPEN`,
:data:`EXIT_PENDING`), evaluated at the close of each of the pair's bars in this order:

1. **Fills** (:func:`rule_fill`): a pending entry fills at the close of the first tradable bar
   ``t >= due`` that is not the pair's last bar; a pending exit at the first tradable bar
   ``t >= due``. Fill prices, spread, slippage (time-of-day multiplier of the fill bar's close
   time), commission and swap follow :mod:`pairdesk.quant.costs`.
2. **Exit signal** (:func:`rule_decide`), position open and ``t >`` the entry signal bar:
   ``|z| <= z_exit`` → ``z_exit``; else ``risk_stop and risk >= θ_stop`` → ``risk_stop``; else
   ``t − entry fill bar > M`` → ``max_bars``; else a gate flatten reason (ops ``flatten``,
   drawdown ``dd_flatten`` / ``dd_flatten_pair``). NaN never triggers. Under a *freeze* gate
   (ops hard halt) a rule exit is not signalled but reported (:data:`STEP_EXIT_SUPPRESSED`),
   unless the gate also flattens. The exit fills ``latency_bars`` later (now when 0 and
   tradable).
3. **Entry signal**, flat: tradable, AI1 candidate (``return_prob`` finite), ``return_prob > θ1``,
   ``risk_score < θ2`` (NaN never passes), finite non-zero ``z`` and ``beta``; direction
   ``z > 0`` → short spread (sell A), ``z < 0`` → long spread; leg B trades ``−sign(β)`` times the
   A direction. A gate may **block** it (:data:`STEP_ENTRY_BLOCKED`) or **scale** it. Sizing
   (:func:`pairdesk.quant.costs.size_pair`) on the signal bar's closes and ``beta`` with leg-A
   target ``initial_capital · notional_leg_a_fraction · min(position_scale, 1) · entry_scale``
   (no compounding), reduced to ``pair_gross_cap_usd / ((1 + |β|)(1 + ratio_tol))`` when the
   per-pair cap is finite. The sized order is **refused** (:data:`STEP_ENTRY_REFUSED`) when its
   gross notional ``|q_A|·cs_A·close_A·x_A + |q_B|·cs_B·close_B·x_B`` exceeds the per-pair cap or the
   gate's ``gross_room``, or its margin ``gross · margin_requirement`` exceeds the gate's
   ``margin_room``. The entry fills ``latency_bars`` later (now when 0, unless last bar).
4. **End of data** (``last``): an open position (exit pending or not) is closed at this close
   (``end_of_data``); a pending entry is cancelled.

The mark (:func:`rule_mark`) is the unrealised PnL at a close:
``Σ_legs q · cs · (close − entry fill) · x − entry commission + swap accrued so far``; the paper
equity of a single pair is ``initial_capital + realised + mark``.

Currency (spec 004 通貨換算, docs/quant-contracts.md §Currency conversion): prices are in each
leg's quote currency; ``x`` is the bar's quote-to-account rate of the leg (:class:`RuleBar`
``rate_a``/``rate_b``, 1.0 for USD-quoted legs). Sizing, gross notional, margin, commission,
spread/slippage costs and swap use ``price · x`` at their bar (the swap at the entry fill); a
realised PnL uses the exit fill bar's ``x``.

Packed numba inputs (documented layouts, built by :func:`rule_spec`, :class:`RuleBar` and
:class:`RuleGate`): ``spec`` (float64, :data:`RULE_SPEC_SIZE`) constant per pair; ``bar``
(float64, :data:`RULE_BAR_SIZE`) one bar; ``gate`` (float64, :data:`RULE_GATE_SIZE`) the
restrictions of the bar; ``state`` (float64, :data:`RULE_STATE_SIZE`) mutable state;
``counters`` (int64, :data:`RULE_COUNTERS`) decision counters; ``out_trade`` (float64,
:data:`RULE_TRADE_SIZE`) receives a trade when one closes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit
from pairdesk.quant.costs import (
    CostModel,
    LegSpec,
    _fill_price_nb,
    _round_tick_nb,
    _size_pair_nb,
)
from pairdesk.quant.typing import FloatArray, IntArray

__all__ = [
    "COUNTER_NAMES",
    "ENTRY_PENDING",
    "EXIT_PENDING",
    "EXIT_REASONS",
    "FLAT",
    "OPEN",
    "RULE_BAR_SIZE",
    "RULE_GATE_SIZE",
    "RULE_SPEC_SIZE",
    "RULE_STATE_SIZE",
    "RULE_TRADE_SIZE",
    "STEP_ENTRY_BLOCKED",
    "STEP_ENTRY_CANCELLED",
    "STEP_ENTRY_FILLED",
    "STEP_ENTRY_REFUSED",
    "STEP_ENTRY_SIGNAL",
    "STEP_EXIT_FILLED",
    "STEP_EXIT_SIGNAL",
    "STEP_EXIT_SUPPRESSED",
    "BacktestParams",
    "PairBook",
    "RuleBar",
    "RuleGate",
    "rule_decide",
    "rule_fill",
    "rule_force_close",
    "rule_gross",
    "rule_mark",
    "rule_signal_entry",
    "rule_signal_exit",
    "rule_spec",
    "step_pair",
]


#: ``exit_reason`` codes, in code order. ``flatten`` = ops flatten flag (live), ``dd_flatten`` /
#: ``dd_flatten_pair`` = the drawdown policy (portfolio / pair level), ``ruin`` = forced
#: liquidation when equity falls to the maintenance level (:mod:`pairdesk.quant.portfolio`).
EXIT_REASONS: tuple[str, ...] = (
    "z_exit",
    "max_bars",
    "risk_stop",
    "end_of_data",
    "flatten",
    "dd_flatten",
    "dd_flatten_pair",
    "ruin",
)
_R_Z, _R_MAX, _R_RISK, _R_END, _R_FLATTEN, _R_DD_FLATTEN, _R_DD_FLATTEN_PAIR, _R_RUIN = range(8)

#: State codes.
FLAT, ENTRY_PENDING, OPEN, EXIT_PENDING = 0, 1, 2, 3

#: Step result bit flags (returned by the ``rule_*`` functions and :func:`step_pair`).
STEP_ENTRY_FILLED = 1
STEP_EXIT_FILLED = 2  # a trade closed; it was copied to ``out_trade``
STEP_EXIT_SIGNAL = 4
STEP_ENTRY_SIGNAL = 8
STEP_ENTRY_BLOCKED = 16  # the rule wanted to enter, the gate said no
STEP_EXIT_SUPPRESSED = 32  # a rule exit fired under a freeze gate (not signalled)
STEP_ENTRY_REFUSED = 64  # sized entry refused by the per-pair cap, gross room or margin room
STEP_ENTRY_CANCELLED = 128  # pending entry dropped at the end of the pair's data

# trade-row columns (the first _NCOL slots of the state, and of a closed trade)
(
    _C_SIG_IN,
    _C_BAR_IN,
    _C_SIG_OUT,
    _C_BAR_OUT,
    _C_SIDE,
    _C_QA,
    _C_QB,
    _C_PA_IN,
    _C_PB_IN,
    _C_PA_OUT,
    _C_PB_OUT,
    _C_RA_IN,
    _C_RB_IN,
    _C_RA_OUT,
    _C_RB_OUT,
    _C_Z_IN,
    _C_Z_OUT,
    _C_PROB,
    _C_RISK,
    _C_REASON,
    _C_SPREAD,
    _C_SLIP,
    _C_COMM,
    _C_SWAP,
    _C_GROSS,
    _C_PNL,
    _C_ROC,
    _C_SWR,
    _C_SWC_IN,
    _C_COMM_IN,
) = range(30)
_NCOL = 30
#: Length of a closed-trade row (``out_trade``).
RULE_TRADE_SIZE = _NCOL

# state slots after the trade row
_S_STATE, _S_DUE, _S_REALISED, _S_CLOSED, _S_SUPPRESSED, _S_WANT = range(_NCOL, _NCOL + 6)
#: Length of the state vector.
RULE_STATE_SIZE = _NCOL + 6

# spec slots
(
    _P_TICK_A,
    _P_CS_A,
    _P_ML_A,
    _P_ST_A,
    _P_TICK_B,
    _P_CS_B,
    _P_ML_B,
    _P_ST_B,
) = range(8)
_P_COSTS = 8  # 10 slots: half spread, slippage, commission, swap long, swap short; A then B
(
    _P_Z_EXIT,
    _P_M,
    _P_THETA_STOP,
    _P_RISK_STOP,
    _P_LATENCY,
    _P_E0,
    _P_CAP_A,
    _P_MIN_NOTIONAL,
    _P_RATIO_TOL,
    _P_MAX_UPSCALE,
    _P_MARGIN_REQ,
    _P_PAIR_CAP,
) = range(18, 30)
#: Length of the spec vector.
RULE_SPEC_SIZE = 30

# bar slots
(
    _B_T,
    _B_CA,
    _B_CB,
    _B_RA,
    _B_RB,
    _B_Z,
    _B_BETA,
    _B_PROB,
    _B_RISK,
    _B_TRADABLE,
    _B_LAST,
    _B_MULT,
    _B_SWAPC,
    _B_LABEL,
    _B_XA,
    _B_XB,
) = range(16)
#: Length of the bar vector.
RULE_BAR_SIZE = 16

# gate slots
(
    _G_THETA1,
    _G_THETA2,
    _G_SCALE,
    _G_BLOCK,
    _G_FREEZE,
    _G_FLATTEN,
    _G_MARGIN_ROOM,
    _G_GROSS_ROOM,
) = range(8)
#: Length of the gate vector.
RULE_GATE_SIZE = 8

#: Decision counters, in index order of the ``counters`` vector.
COUNTER_NAMES: tuple[str, ...] = (
    "candidates",
    "passed_theta1",
    "vetoed_by_ai2",
    "entry_signals",
    "entries",
    "ai2_negatives",
    "ai2_false_positives",
    "blocked",
    "refused",
    "scaled",
)
(
    _K_CAND,
    _K_PASS1,
    _K_VETO,
    _K_SIGNALS,
    _K_ENTRIES,
    _K_NEG,
    _K_FP,
    _K_BLOCKED,
    _K_REFUSED,
    _K_SCALED,
) = range(10)
#: Length of the counters vector.
RULE_COUNTERS = len(COUNTER_NAMES)


#: ``njit`` without the runtime's reference counting (``_nrt=False``) for functions that never
#: allocate: a call then costs ~1 ns instead of tens of ns of atomic increments and decrements on
#: its array arguments, which matters at one call per pair-bar.
_njit_no_rc = njit(cache=True, _nrt=False)  # type: ignore[call-overload]


# ----------------------------------------------------------------------------------------------
# parameters
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

    @property
    def leg_a_target(self) -> float:
        """Leg-A target notional (USD) before gates: ``E_0 · fraction · min(position_scale, 1)``."""
        return self.initial_capital * self.notional_leg_a_fraction * min(self.position_scale, 1.0)

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


def rule_spec(
    params: BacktestParams,
    leg_a: LegSpec,
    leg_b: LegSpec,
    costs: CostModel,
    min_notional: float = 0.0,
    *,
    margin_requirement: float = 0.0,
    pair_gross_cap_usd: float = math.inf,
) -> FloatArray:
    """Pack the constant inputs of one pair's rule into a spec vector.

    Parameters
    ----------
    params : BacktestParams
        Rule and execution parameters (``theta1``/``theta2`` are not packed: they are gate inputs).
    leg_a, leg_b : LegSpec
        Order units of the legs.
    costs : CostModel
        Must contain both leg symbols.
    min_notional : float
        Per-leg minimum notional (USD, universe ``constraints.min_notional_usd``), ≥ 0.
    margin_requirement : float
        Margin per USD of gross notional (universe ``constraints.margin_requirement``; 0.05 =
        20× leverage), ≥ 0. 0 disables the margin check.
    pair_gross_cap_usd : float
        Largest gross notional (USD, both legs) of one position of this pair; ``inf`` = no cap.

    Returns
    -------
    ndarray of float64, shape (RULE_SPEC_SIZE,)

    Raises
    ------
    ValueError
        On a negative ``min_notional``/``margin_requirement``, a non-positive cap, or a leg
        symbol missing from ``costs``.
    """
    if not (math.isfinite(min_notional) and min_notional >= 0):
        raise ValueError(f"min_notional_usd must be >= 0, got {min_notional!r}")
    if not (math.isfinite(margin_requirement) and margin_requirement >= 0):
        raise ValueError(f"margin_requirement must be >= 0, got {margin_requirement!r}")
    if not pair_gross_cap_usd > 0:
        raise ValueError(f"pair_gross_cap_usd must be > 0, got {pair_gross_cap_usd!r}")
    ca, cb = costs.leg(leg_a.symbol), costs.leg(leg_b.symbol)
    out = np.empty(RULE_SPEC_SIZE)
    out[:8] = (
        leg_a.tick_size,
        leg_a.contract_size,
        leg_a.min_lot,
        leg_a.lot_step,
        leg_b.tick_size,
        leg_b.contract_size,
        leg_b.min_lot,
        leg_b.lot_step,
    )
    out[_P_COSTS : _P_COSTS + 10] = (
        ca.spread_bps * 0.5e-4,
        ca.slippage_bps * 1e-4,
        ca.commission_bps * 1e-4,
        ca.swap_long_bps_day * 1e-4,
        ca.swap_short_bps_day * 1e-4,
        cb.spread_bps * 0.5e-4,
        cb.slippage_bps * 1e-4,
        cb.commission_bps * 1e-4,
        cb.swap_long_bps_day * 1e-4,
        cb.swap_short_bps_day * 1e-4,
    )
    out[_P_Z_EXIT] = params.z_exit
    out[_P_M] = params.M
    out[_P_THETA_STOP] = params.theta_stop
    out[_P_RISK_STOP] = 1.0 if params.risk_stop else 0.0
    out[_P_LATENCY] = params.latency_bars
    out[_P_E0] = params.initial_capital
    out[_P_CAP_A] = params.leg_a_target
    out[_P_MIN_NOTIONAL] = min_notional
    out[_P_RATIO_TOL] = params.ratio_tol
    out[_P_MAX_UPSCALE] = params.max_upscale
    out[_P_MARGIN_REQ] = margin_requirement
    out[_P_PAIR_CAP] = pair_gross_cap_usd
    return out


# ----------------------------------------------------------------------------------------------
# numba rule
# ----------------------------------------------------------------------------------------------


@_njit_no_rc
def _open_fill_nb(state: FloatArray, spec: FloatArray, bar: FloatArray) -> None:
    """Entry fill of the pending trade at this bar."""
    qa = state[_C_QA]
    qb = state[_C_QB]
    ref_a = bar[_B_RA]
    ref_b = bar[_B_RB]
    mult = bar[_B_MULT]
    xa = bar[_B_XA]  # account units per unit of quote currency at this fill
    xb = bar[_B_XB]
    c = _P_COSTS
    fa = _fill_price_nb(ref_a, qa > 0, spec[c], spec[c + 1] * mult, spec[_P_TICK_A])
    fb = _fill_price_nb(ref_b, qb > 0, spec[c + 5], spec[c + 6] * mult, spec[_P_TICK_B])
    na = abs(qa) * spec[_P_CS_A]
    nb = abs(qb) * spec[_P_CS_B]
    sp = na * ref_a * spec[c] * xa + nb * ref_b * spec[c + 5] * xb
    state[_C_BAR_IN] = bar[_B_T]
    state[_C_PA_IN] = fa
    state[_C_PB_IN] = fb
    state[_C_RA_IN] = ref_a
    state[_C_RB_IN] = ref_b
    state[_C_SPREAD] = sp
    state[_C_SLIP] = na * abs(fa - ref_a) * xa + nb * abs(fb - ref_b) * xb - sp
    comm = na * fa * spec[c + 2] * xa + nb * fb * spec[c + 7] * xb
    state[_C_COMM_IN] = comm
    state[_C_COMM] = comm
    # swap credit (USD) per swap day: USD notional at the entry fill × signed rate (negative
    # rate = cost)
    swa = na * fa * (spec[c + 3] if qa > 0 else spec[c + 4]) * xa
    swb = nb * fb * (spec[c + 8] if qb > 0 else spec[c + 9]) * xb
    state[_C_SWR] = swa + swb
    state[_C_SWC_IN] = bar[_B_SWAPC]
    state[_S_STATE] = OPEN


@_njit_no_rc
def _close_fill_nb(
    state: FloatArray, spec: FloatArray, bar: FloatArray, out_trade: FloatArray
) -> None:
    """Exit fill of the open trade at this bar; books the PnL and copies the trade row."""
    qa = state[_C_QA]
    qb = state[_C_QB]
    ref_a = bar[_B_RA]
    ref_b = bar[_B_RB]
    mult = bar[_B_MULT]
    swapc = bar[_B_SWAPC]
    xa = bar[_B_XA]  # account units per unit of quote currency at the exit fill
    xb = bar[_B_XB]
    c = _P_COSTS
    cs_a = spec[_P_CS_A]
    cs_b = spec[_P_CS_B]
    fa = _fill_price_nb(ref_a, qa < 0, spec[c], spec[c + 1] * mult, spec[_P_TICK_A])
    fb = _fill_price_nb(ref_b, qb < 0, spec[c + 5], spec[c + 6] * mult, spec[_P_TICK_B])
    na = abs(qa) * cs_a
    nb = abs(qb) * cs_b
    sp = na * ref_a * spec[c] * xa + nb * ref_b * spec[c + 5] * xb
    state[_C_BAR_OUT] = bar[_B_T]
    state[_C_PA_OUT] = fa
    state[_C_PB_OUT] = fb
    state[_C_RA_OUT] = ref_a
    state[_C_RB_OUT] = ref_b
    state[_C_SPREAD] += sp
    state[_C_SLIP] += na * abs(fa - ref_a) * xa + nb * abs(fb - ref_b) * xb - sp
    state[_C_COMM] += na * fa * spec[c + 2] * xa + nb * fb * spec[c + 7] * xb
    swap_pnl = state[_C_SWR] * (swapc - state[_C_SWC_IN])
    state[_C_SWAP] = -swap_pnl
    state[_C_GROSS] = (
        qa * cs_a * (ref_a - state[_C_RA_IN]) * xa + qb * cs_b * (ref_b - state[_C_RB_IN]) * xb
    )
    pnl = (
        qa * cs_a * (fa - state[_C_PA_IN]) * xa
        + qb * cs_b * (fb - state[_C_PB_IN]) * xb
        - state[_C_COMM]
        + swap_pnl
    )
    state[_C_PNL] = pnl
    state[_C_ROC] = pnl / spec[_P_E0]
    state[_S_REALISED] += pnl
    state[_S_CLOSED] += 1.0
    state[_S_STATE] = FLAT
    for i in range(_NCOL):
        out_trade[i] = state[i]


@_njit_no_rc
def rule_fill(
    state: FloatArray, spec: FloatArray, bar: FloatArray, out_trade: FloatArray, counters: IntArray
) -> int:
    """Fill the pending entry or exit due at this close (step 1 of the rule).

    Parameters
    ----------
    state : ndarray of float64, shape (RULE_STATE_SIZE,)
        Mutable pair state.
    spec : ndarray of float64, shape (RULE_SPEC_SIZE,)
        From :func:`rule_spec`.
    bar : ndarray of float64, shape (RULE_BAR_SIZE,)
        This bar (:meth:`RuleBar.vector` layout).
    out_trade : ndarray of float64, shape (RULE_TRADE_SIZE,)
        Receives the closed trade when :data:`STEP_EXIT_FILLED` is returned.
    counters : ndarray of int64, shape (RULE_COUNTERS,)
        ``entries`` is incremented on an entry fill.

    Returns
    -------
    int
        ``STEP_ENTRY_FILLED``, ``STEP_EXIT_FILLED`` or 0.
    """
    st = state[_S_STATE]
    t = bar[_B_T]
    tradable = bar[_B_TRADABLE] != 0.0
    if st == ENTRY_PENDING and t >= state[_S_DUE] and tradable and bar[_B_LAST] == 0.0:
        _open_fill_nb(state, spec, bar)
        counters[_K_ENTRIES] += 1
        return STEP_ENTRY_FILLED
    if st == EXIT_PENDING and t >= state[_S_DUE] and tradable:
        _close_fill_nb(state, spec, bar, out_trade)
        return STEP_EXIT_FILLED
    return 0


@_njit_no_rc
def rule_signal_exit(
    state: FloatArray, spec: FloatArray, bar: FloatArray, reason: int, out_trade: FloatArray
) -> int:
    """Signal an exit with ``reason`` (an :data:`EXIT_REASONS` code, or −1 for another reason) at
    this close; it fills now when ``latency_bars == 0`` and the bar is tradable.

    Returns
    -------
    int
        ``STEP_EXIT_SIGNAL`` (``| STEP_EXIT_FILLED`` when filled now).
    """
    state[_C_REASON] = reason
    state[_C_SIG_OUT] = bar[_B_T]
    state[_C_Z_OUT] = bar[_B_Z]
    state[_S_DUE] = bar[_B_T] + spec[_P_LATENCY]
    state[_S_STATE] = EXIT_PENDING
    if spec[_P_LATENCY] == 0.0 and bar[_B_TRADABLE] != 0.0:
        _close_fill_nb(state, spec, bar, out_trade)
        return STEP_EXIT_SIGNAL | STEP_EXIT_FILLED
    return STEP_EXIT_SIGNAL


@_njit_no_rc
def rule_gross(state: FloatArray, spec: FloatArray, close_a: float, close_b: float) -> float:
    """Gross notional (USD, both legs) of the pair's position or pending entry at these closes;
    0 when flat. ``close_a``/``close_b`` are in the account currency (close × the bar's
    quote-to-account rate, ``close`` itself for USD-quoted legs)."""
    if state[_S_STATE] == FLAT:
        return 0.0
    return abs(state[_C_QA]) * spec[_P_CS_A] * close_a + abs(state[_C_QB]) * spec[_P_CS_B] * close_b


@_njit_no_rc
def rule_signal_entry(
    state: FloatArray,
    spec: FloatArray,
    bar: FloatArray,
    gate: FloatArray,
    side: float,
    out_trade: FloatArray,
    counters: IntArray,
) -> int:
    """Size and place an entry of ``side`` (+1 long / −1 short spread) at this close.

    Sizing, the per-pair cap and the ``gross_room`` / ``margin_room`` checks of the gate are
    described in the module docstring; the gate's ``entry_scale`` multiplies the leg-A target
    (ignored when 1). Needs finite non-zero ``beta``. Fills now when ``latency_bars == 0`` and
    the bar is not the last one.

    Returns
    -------
    int
        ``STEP_ENTRY_SIGNAL`` (``| STEP_ENTRY_FILLED``), or ``STEP_ENTRY_REFUSED`` (state unchanged).
    """
    bt = bar[_B_BETA]
    cap = spec[_P_CAP_A]
    scale = gate[_G_SCALE]
    if scale != 1.0:
        cap *= scale
    pair_cap = spec[_P_PAIR_CAP]
    if pair_cap < np.inf:
        cap = min(cap, pair_cap / ((1.0 + abs(bt)) * (1.0 + spec[_P_RATIO_TOL])))
    ca = bar[_B_CA]
    cb = bar[_B_CB]
    xa = bar[_B_XA]
    xb = bar[_B_XB]
    la, lb = _size_pair_nb(
        cap,
        bt,
        ca,
        cb,
        spec[_P_TICK_A],
        spec[_P_CS_A],
        spec[_P_ML_A],
        spec[_P_ST_A],
        spec[_P_TICK_B],
        spec[_P_CS_B],
        spec[_P_ML_B],
        spec[_P_ST_B],
        spec[_P_MIN_NOTIONAL],
        spec[_P_RATIO_TOL],
        spec[_P_MAX_UPSCALE],
        xa,
        xb,
    )
    gross = la * spec[_P_CS_A] * ca * xa + lb * spec[_P_CS_B] * cb * xb
    if gross > pair_cap or gross > gate[_G_GROSS_ROOM]:
        counters[_K_REFUSED] += 1
        return STEP_ENTRY_REFUSED
    if spec[_P_MARGIN_REQ] > 0.0 and gross * spec[_P_MARGIN_REQ] > gate[_G_MARGIN_ROOM]:
        counters[_K_REFUSED] += 1
        return STEP_ENTRY_REFUSED
    if scale != 1.0:
        counters[_K_SCALED] += 1
    t = bar[_B_T]
    for i in range(_NCOL):
        state[i] = 0.0
    state[_C_SIG_IN] = t
    state[_C_SIDE] = side
    state[_C_QA] = side * la
    state[_C_QB] = -side * (1.0 if bt > 0.0 else -1.0) * lb
    state[_C_Z_IN] = bar[_B_Z]
    state[_C_PROB] = bar[_B_PROB]
    state[_C_RISK] = bar[_B_RISK]
    state[_C_REASON] = -1.0
    counters[_K_SIGNALS] += 1
    state[_S_DUE] = t + spec[_P_LATENCY]
    state[_S_STATE] = ENTRY_PENDING
    if spec[_P_LATENCY] == 0.0 and bar[_B_LAST] == 0.0:
        _open_fill_nb(state, spec, bar)
        counters[_K_ENTRIES] += 1
        return STEP_ENTRY_SIGNAL | STEP_ENTRY_FILLED
    return STEP_ENTRY_SIGNAL


@_njit_no_rc
def rule_decide(
    state: FloatArray,
    spec: FloatArray,
    bar: FloatArray,
    gate: FloatArray,
    out_trade: FloatArray,
    counters: IntArray,
) -> int:
    """Exit signal, entry signal and end of data at this close (steps 2–4 of the rule).

    Parameters
    ----------
    state, spec, bar, out_trade, counters
        As in :func:`rule_fill`.
    gate : ndarray of float64, shape (RULE_GATE_SIZE,)
        :meth:`RuleGate.vector` layout: θ1, θ2, entry scale, block (0/1), freeze (0/1),
        flatten reason code (−1 none), margin room (USD), gross room (USD).

    Returns
    -------
    int
        OR of the ``STEP_*`` flags that happened. At most one trade closes per call.
    """
    flags = 0
    t = bar[_B_T]
    tradable = bar[_B_TRADABLE] != 0.0
    last = bar[_B_LAST] != 0.0
    # ---- exit signal
    if state[_S_STATE] == OPEN and t > state[_C_SIG_IN]:
        zt = bar[_B_Z]
        reason = -1
        if np.isfinite(zt) and abs(zt) <= spec[_P_Z_EXIT]:
            reason = _R_Z
        elif spec[_P_RISK_STOP] != 0.0 and bar[_B_RISK] >= spec[_P_THETA_STOP]:
            reason = _R_RISK
        elif t - state[_C_BAR_IN] > spec[_P_M]:
            reason = _R_MAX
        flatten = gate[_G_FLATTEN] >= 0.0
        if reason < 0 and flatten:
            reason = int(gate[_G_FLATTEN])
        if reason >= 0:
            if gate[_G_FREEZE] != 0.0 and not flatten:
                state[_S_SUPPRESSED] = reason
                flags |= STEP_EXIT_SUPPRESSED
            else:
                flags |= rule_signal_exit(state, spec, bar, reason, out_trade)
    # ---- entry signal
    if state[_S_STATE] == FLAT and tradable and np.isfinite(bar[_B_PROB]):
        counters[_K_CAND] += 1
        prob = bar[_B_PROB]
        if prob > gate[_G_THETA1]:
            counters[_K_PASS1] += 1
            negative = bar[_B_LABEL] == 0.0
            if negative:
                counters[_K_NEG] += 1
            if not (bar[_B_RISK] < gate[_G_THETA2]):
                counters[_K_VETO] += 1
                if negative:
                    counters[_K_FP] += 1
            else:
                zt = bar[_B_Z]
                bt = bar[_B_BETA]
                if np.isfinite(zt) and zt != 0.0 and np.isfinite(bt) and bt != 0.0:
                    side = -1.0 if zt > 0.0 else 1.0
                    state[_S_WANT] = side
                    if gate[_G_BLOCK] != 0.0:
                        counters[_K_BLOCKED] += 1
                        flags |= STEP_ENTRY_BLOCKED
                    else:
                        flags |= rule_signal_entry(
                            state, spec, bar, gate, side, out_trade, counters
                        )
    # ---- end of data
    if last:
        st = state[_S_STATE]
        if st >= OPEN:  # open or exit pending
            flags |= rule_force_close(state, spec, bar, _R_END, out_trade)
        elif st == ENTRY_PENDING:
            state[_S_STATE] = FLAT
            flags |= STEP_ENTRY_CANCELLED
    return flags


@_njit_no_rc
def rule_force_close(
    state: FloatArray, spec: FloatArray, bar: FloatArray, reason: int, out_trade: FloatArray
) -> int:
    """Close an open position at this close regardless of latency and ``tradable`` (end of data,
    ruin); a pending entry is cancelled. ``z_at_exit`` is this bar's z.

    Returns
    -------
    int
        ``STEP_EXIT_FILLED``, ``STEP_ENTRY_CANCELLED`` or 0 (flat).
    """
    st = state[_S_STATE]
    if st >= OPEN:  # open or exit pending
        state[_C_REASON] = reason
        state[_C_SIG_OUT] = bar[_B_T]
        state[_C_Z_OUT] = bar[_B_Z]
        _close_fill_nb(state, spec, bar, out_trade)
        return STEP_EXIT_FILLED
    if st == ENTRY_PENDING:
        state[_S_STATE] = FLAT
        return STEP_ENTRY_CANCELLED
    return 0


@_njit_no_rc
def rule_mark(state: FloatArray, spec: FloatArray, bar: FloatArray) -> float:
    """Unrealised PnL (USD) of the open position at this bar's closes (0 when flat or pending):
    ``Σ q·cs·(close − entry fill)·rate − entry commission + swap accrued``, ``rate`` this bar's
    quote-to-account rate of the leg (docs/quant-contracts.md §Currency conversion)."""
    if state[_S_STATE] >= OPEN:  # open or exit pending
        return (
            state[_C_QA] * spec[_P_CS_A] * (bar[_B_CA] - state[_C_PA_IN]) * bar[_B_XA]
            + state[_C_QB] * spec[_P_CS_B] * (bar[_B_CB] - state[_C_PB_IN]) * bar[_B_XB]
            - state[_C_COMM_IN]
            + state[_C_SWR] * (bar[_B_SWAPC] - state[_C_SWC_IN])
        )
    return 0.0


@_njit_no_rc
def step_pair(
    state: FloatArray,
    spec: FloatArray,
    bar: FloatArray,
    gate: FloatArray,
    out_trade: FloatArray,
    counters: IntArray,
) -> int:
    """The whole rule at one close: :func:`rule_fill` then :func:`rule_decide`.

    A portfolio runs the fills of all pairs first, then measures equity and drawdown, then
    decides; for one pair that order is the same as this function.

    Returns
    -------
    int
        OR of the ``STEP_*`` flags. At most one trade closes per call.
    """
    flags = rule_fill(state, spec, bar, out_trade, counters)
    return flags | rule_decide(state, spec, bar, gate, out_trade, counters)


@_njit_no_rc
def _set_bar_nb(
    bar: FloatArray,
    t: int,
    close_a: float,
    close_b: float,
    spec: FloatArray,
    z: float,
    beta: float,
    prob: float,
    risk: float,
    tradable: bool,
    last: bool,
    mult: float,
    swapc: float,
    label: float,
    rate_a: float,
    rate_b: float,
    need_ref: bool = True,
) -> None:
    """Fill a bar vector (reference prices = closes rounded to the nearest tick; NaN when
    ``need_ref`` is False, for a bar at which the caller knows no fill can happen; ``rate_*`` the
    legs' quote-to-account rates)."""
    bar[_B_T] = t
    bar[_B_CA] = close_a
    bar[_B_CB] = close_b
    if need_ref:
        bar[_B_RA] = _round_tick_nb(close_a, spec[_P_TICK_A], 0)
        bar[_B_RB] = _round_tick_nb(close_b, spec[_P_TICK_B], 0)
    else:
        bar[_B_RA] = np.nan
        bar[_B_RB] = np.nan
    bar[_B_Z] = z
    bar[_B_BETA] = beta
    bar[_B_PROB] = prob
    bar[_B_RISK] = risk
    bar[_B_TRADABLE] = 1.0 if tradable else 0.0
    bar[_B_LAST] = 1.0 if last else 0.0
    bar[_B_MULT] = mult
    bar[_B_SWAPC] = swapc
    bar[_B_LABEL] = label
    bar[_B_XA] = rate_a
    bar[_B_XB] = rate_b


# ----------------------------------------------------------------------------------------------
# Python wrapper
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleBar:
    """Inputs of the rule at the close of one aligned bar.

    Attributes
    ----------
    t : int
        Bar index of the pair (0, 1, … in the pair's own bars; latency and ``M`` count these).
    close_a, close_b : float
        Leg closes (quote currency), > 0.
    ref_a, ref_b : float
        Closes rounded to the nearest tick (:func:`pairdesk.quant.costs.round_to_tick`).
    z, beta : float
        Spread z-score and hedge ratio (features v1); NaN in the warm-up.
    prob, risk : float
        AI1 probability (NaN when the bar is not an AI1 candidate) and AI2 risk score.
    tradable : bool
        Both legs inside their sessions at the bar close.
    mult : float
        Slippage time-of-day multiplier of the close time (:meth:`CostModel.slippage_multiplier`).
    swapc : float
        Cumulative swap days at the close time (:meth:`CostModel.swap_cumulative`).
    last : bool
        Last bar of the data (closes any position). Default False (live).
    risk_label : float
        AI2 label (0/1, NaN unknown) for the false-positive counters. Default NaN.
    rate_a, rate_b : float
        Quote-to-account rates of the legs at this close (account units per 1 unit of the
        leg's quote currency, > 0; docs/quant-contracts.md §Currency conversion). Default 1.0
        (USD-quoted legs).
    """

    t: int
    close_a: float
    close_b: float
    ref_a: float
    ref_b: float
    z: float
    beta: float
    prob: float
    risk: float
    tradable: bool
    mult: float
    swapc: float
    last: bool = False
    risk_label: float = math.nan
    rate_a: float = 1.0
    rate_b: float = 1.0

    def vector(self) -> FloatArray:
        """The bar vector, shape (RULE_BAR_SIZE,)."""
        return np.array(
            [
                self.t,
                self.close_a,
                self.close_b,
                self.ref_a,
                self.ref_b,
                self.z,
                self.beta,
                self.prob,
                self.risk,
                1.0 if self.tradable else 0.0,
                1.0 if self.last else 0.0,
                self.mult,
                self.swapc,
                self.risk_label,
                self.rate_a,
                self.rate_b,
            ]
        )


@dataclass(frozen=True)
class RuleGate:
    """Restrictions on the rule at one bar (ops flags live, the drawdown policy in a backtest).

    Attributes
    ----------
    theta1, theta2 : float
        Entry thresholds.
    entry_scale : float
        Multiplier of the leg-A target of a new entry (``leverage_scale``), ≥ 0. Default 1.
    block_entry : bool
        No new entry (a wanted entry is reported as blocked). Default False.
    freeze : bool
        No rule exit is signalled (reported as suppressed) unless ``flatten``. Default False.
    flatten : str or None
        Exit an open position with this reason (one of :data:`EXIT_REASONS`). Default None.
    margin_room : float
        USD of margin still free for a new entry. Default ``inf``.
    gross_room : float
        USD of gross notional still allowed for a new entry. Default ``inf``.
    """

    theta1: float
    theta2: float
    entry_scale: float = 1.0
    block_entry: bool = False
    freeze: bool = False
    flatten: str | None = None
    margin_room: float = math.inf
    gross_room: float = math.inf

    def vector(self) -> FloatArray:
        """The gate vector, shape (RULE_GATE_SIZE,).

        Raises
        ------
        ValueError
            If ``flatten`` is not one of :data:`EXIT_REASONS`.
        """
        if self.flatten is not None and self.flatten not in EXIT_REASONS:
            raise ValueError(f"flatten reason must be one of {EXIT_REASONS}, got {self.flatten!r}")
        return np.array(
            [
                self.theta1,
                self.theta2,
                self.entry_scale,
                1.0 if self.block_entry else 0.0,
                1.0 if self.freeze else 0.0,
                -1.0 if self.flatten is None else float(EXIT_REASONS.index(self.flatten)),
                self.margin_room,
                self.gross_room,
            ]
        )


class PairBook:
    """One pair's rule state stepped bar by bar from Python (the live paper book).

    The numba functions of this module do the work, so a :class:`PairBook` fed the bars of a
    backtest reproduces :func:`pairdesk.quant.backtest.run_backtest` bar for bar (fills, costs,
    swaps, equity).

    Parameters
    ----------
    params : BacktestParams
        θ are passed per bar in the gate; the rest is used.
    leg_a, leg_b : LegSpec
        Order units of the legs.
    costs : CostModel
        Costs of both legs.
    min_notional : float
        Per-leg minimum notional (USD).

    Raises
    ------
    ValueError
        As :func:`rule_spec`.
    """

    def __init__(
        self,
        params: BacktestParams,
        leg_a: LegSpec,
        leg_b: LegSpec,
        costs: CostModel,
        min_notional: float = 0.0,
    ) -> None:
        self.params = params
        self.leg_a, self.leg_b = leg_a, leg_b
        self.spec = rule_spec(params, leg_a, leg_b, costs, min_notional)
        self.state_vector = np.zeros(RULE_STATE_SIZE)
        self.counters = np.zeros(RULE_COUNTERS, dtype=np.int64)
        self.last_trade = np.zeros(RULE_TRADE_SIZE)
        self.e0 = float(params.initial_capital)
        #: Reason of the last exit signal (a free string for recorded exits).
        self.exit_reason: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def position_state(self) -> int:
        """:data:`FLAT`, :data:`ENTRY_PENDING`, :data:`OPEN` or :data:`EXIT_PENDING`."""
        return int(self.state_vector[_S_STATE])

    @property
    def side(self) -> int:
        """+1 long spread, −1 short spread, 0 flat."""
        return 0 if self.position_state == FLAT else int(self.state_vector[_C_SIDE])

    @property
    def qty(self) -> tuple[float, float]:
        """Signed lots ``(q_A, q_B)`` of the current or last order."""
        return float(self.state_vector[_C_QA]), float(self.state_vector[_C_QB])

    @property
    def wanted_side(self) -> int:
        """Side of the last entry the rule wanted (also when blocked)."""
        return int(self.state_vector[_S_WANT])

    @property
    def suppressed_reason(self) -> str:
        """Reason of the last exit suppressed by a freeze gate."""
        return EXIT_REASONS[int(self.state_vector[_S_SUPPRESSED])]

    @property
    def realised(self) -> float:
        """Realised PnL (USD) of the closed trades."""
        return float(self.state_vector[_S_REALISED])

    @property
    def trades_closed(self) -> int:
        """Number of closed trades."""
        return int(self.state_vector[_S_CLOSED])

    def can_exit(self, bar: RuleBar) -> bool:
        """An exit may be signalled: position open, after the entry signal bar."""
        return self.position_state == OPEN and bar.t > self.state_vector[_C_SIG_IN]

    # ------------------------------------------------------------------ steps

    def fill(self, bar: RuleBar) -> int:
        """:func:`rule_fill` at this close; returns the flags."""
        return int(
            rule_fill(self.state_vector, self.spec, bar.vector(), self.last_trade, self.counters)
        )

    def decide(self, bar: RuleBar, gate: RuleGate) -> int:
        """:func:`rule_decide` at this close; returns the flags (exit reason in
        :attr:`exit_reason` after :data:`STEP_EXIT_SIGNAL`)."""
        flags = int(
            rule_decide(
                self.state_vector,
                self.spec,
                bar.vector(),
                gate.vector(),
                self.last_trade,
                self.counters,
            )
        )
        if flags & STEP_EXIT_SIGNAL:
            # filled now: the closed trade row holds the reason (the state may hold a new entry)
            src = self.last_trade if flags & STEP_EXIT_FILLED else self.state_vector
            self.exit_reason = EXIT_REASONS[int(src[_C_REASON])]
        return flags

    def step(self, bar: RuleBar, gate: RuleGate) -> int:
        """:meth:`fill` then :meth:`decide` (:func:`step_pair`)."""
        return self.fill(bar) | self.decide(bar, gate)

    def signal_exit(self, bar: RuleBar, reason: str) -> int:
        """Exit now for ``reason`` (any string; codes of :data:`EXIT_REASONS` are kept in the
        trade row, others as −1), as :func:`rule_signal_exit`."""
        code = EXIT_REASONS.index(reason) if reason in EXIT_REASONS else -1
        self.exit_reason = reason
        return int(
            rule_signal_exit(self.state_vector, self.spec, bar.vector(), code, self.last_trade)
        )

    def signal_entry(self, bar: RuleBar, side: int, scale: float = 1.0) -> tuple[float, float]:
        """Enter ``side`` (+1/−1) now without the rule's entry conditions (a recorded decision),
        sized with ``entry_scale = scale``, as :func:`rule_signal_entry`.

        Returns
        -------
        (float, float)
            Signed lots of legs A and B.
        """
        gate = RuleGate(theta1=1.0, theta2=0.0, entry_scale=scale).vector()
        rule_signal_entry(
            self.state_vector,
            self.spec,
            bar.vector(),
            gate,
            float(side),
            self.last_trade,
            self.counters,
        )
        self.exit_reason = None
        return self.qty

    def mark(self, bar: RuleBar) -> float:
        """Equity (USD) at this close: ``initial_capital + realised + rule_mark``."""
        return (
            self.e0 + self.realised + float(rule_mark(self.state_vector, self.spec, bar.vector()))
        )

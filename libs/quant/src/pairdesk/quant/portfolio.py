"""Portfolio backtest: N pairs on one clock, one capital account, margin, ruin and the drawdown
policy, in one compiled call.

Spec 004 §backtest-assets-engine 仕様 v1 (売買ルール, 出力: bt_summary / bt_trades /
bt_daily_equity per pair_id), §運用Runbook 仕様 v1 (DD_WARN/HALT/FLATTEN, DD_*_PAIR,
``leverage_scale``), §設定YAMLひな形 dd_policy.yaml, §コストテーブル / ユニバース仕様 v1
(``constraints.margin_requirement``, ``min_notional_usd``), §閾値最適化（θ1/θ2）仕様 v1 (objective
and constraints, judged on the portfolio). Formulas and choices: docs/quant-contracts.md
§Portfolio backtest.

Model (*choice* marks what the spec leaves open):

* **Clock**: the sorted union of the pairs' bar open times. A pair without a bar at a clock step
  does nothing there; its mark stays at its latest close. Bar indices of a pair (latency, ``M``,
  the ``bar_*`` columns of the trades) count the pair's **own** bars.
* **Rule**: :mod:`pairdesk.quant.rule` per pair (the one implementation, shared with
  :func:`pairdesk.quant.backtest.run_backtest` and the live paper book).
* **One clock step** ``c``: (1) fills due of every pair with a bar at ``c``; (2) equity
  ``E_c = E_0 + Σ_pairs (realised + unrealised)`` at the latest marks, used margin
  ``Σ_pairs gross_i · margin_requirement_i`` (``gross_i`` = both legs' notional at the latest
  closes, pending entries included); (3) **ruin** check; (4) drawdown levels on ``E_c``; (5)
  decisions of the pairs with a bar at ``c``, in pair order, each seeing the margin and gross
  notional already taken by the entries before it; (6) the equity recorded for ``c`` is the mark
  after (5).
* **Currency** (spec 004 通貨換算): prices are in each leg's quote currency; equity, PnL, costs,
  margin and caps in the account currency (USD) through the per-bar ``quote_to_account_*`` rates of
  :class:`PairInputs` (docs/quant-contracts.md §Currency conversion).
* **Sizing does not compound**: the leg-A target is ``E_0 · notional_leg_a_fraction ·
  min(position_scale, 1)`` × the drawdown scale.
* **Caps** (*choice*, fractions of ``E_0``, ``backtest_policy.yaml`` ``portfolio``): a new
  position's target is reduced so that its gross notional fits ``pair_gross_cap · E_0`` and it is
  refused if the rounded size still exceeds it; an entry is refused if the total gross notional
  would exceed ``total_gross_cap · E_0``, or if the used margin would exceed the equity ``E_c``.
  Refusals are counted (``refused``).
* **Ruin** (*choice*): ``E_c <= max(0, maintenance_margin_fraction · used margin)`` — the broker
  stop-out at a margin level of ``maintenance_margin_fraction`` (default 0.5 = 50 %), and in any
  case equity at or below zero. Every open position is closed at that step at each pair's latest
  close (costs as usual, no latency, ``exit_reason = ruin``; a pending entry is cancelled), the
  equity stays at the liquidation value for the rest of the clock, and the result reports
  ``ruined = True`` and ``ruin_ts``.
* **Drawdown policy** (``dd_policy.yaml``), measured on the marks of step (2) at every clock step
  (*choice*), in units of ``E_0`` because sizes do not compound:
  portfolio ``dd_c = (peak_c − E_c) / E_0`` with ``peak_c`` the highest ``E`` (``E_0`` included on
  the first day) over the trailing ``rolling_window_business_days`` trading days (UTC dates of
  the clock, the current one included). ``dd ≥ dd_warn`` → new entries sized × ``leverage_scale_warn``;
  ``≥ dd_halt`` → no new entries (exits continue); ``≥ dd_flatten`` → every open position is
  exited (reason ``dd_flatten``, usual latency) and no new entry is made until ``dd`` is back
  **below dd_warn** (the level is latched at flatten until then). Per pair: ``dd_i = (peak_i −
  PnL_i) / E_0`` on the pair's cumulative PnL over the same window; thresholds ``k_warn / k_halt /
  k_flatten × σ_i``, ``σ_i`` the standard deviation (ddof 1) of the pair's daily PnL over the
  **active** days (PnL ≠ 0) among the last ``rolling_window_business_days`` completed trading
  days, as a fraction of ``E_0`` (needs ``pair_sigma_min_days`` active days and σ > 0); same
  consequences for that pair (reason ``dd_flatten_pair``). A pair's gate is the stricter of the
  portfolio level and its own level. Every level change is recorded (``dd_events``).
* **KPIs** on the portfolio equity (:func:`pairdesk.quant.metrics.compute_kpis`: daily returns
  ``ΔE_d / E_0``, Sharpe, annualised return ``mean · P``, MaxDD in units of ``E_0``); per-pair
  KPIs (on ``E_0 +`` the pair's daily cumulative PnL) are diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pairdesk.quant._portfolio_kernel import (
    PP_DD_ON,
    PP_FLAT,
    PP_GROSS_CAP,
    PP_HALT,
    PP_K_FLAT,
    PP_K_HALT,
    PP_K_WARN,
    PP_LEV_WARN,
    PP_MAINT,
    PP_MIN_DAYS,
    PP_PAIR_ON,
    PP_RUIN_ON,
    PP_SIZE,
    PP_WARN,
    PP_WINDOW,
    merge_clock_nb,
    portfolio_kernel_nb,
    validate_nb,
)
from pairdesk.quant.costs import CostModel, LegSpec
from pairdesk.quant.metrics import (
    KPI_NAMES,
    KpiParams,
    _as_ts_ns,
    _kpi_core_nb,
    _period_last,
    _trade_stats_nb,
    compute_kpis,
    daily_equity_frame,
)
from pairdesk.quant.rule import (
    _C_BAR_IN,
    _C_BAR_OUT,
    _C_COMM,
    _C_GROSS,
    _C_PA_IN,
    _C_PA_OUT,
    _C_PB_IN,
    _C_PB_OUT,
    _C_PNL,
    _C_PROB,
    _C_QA,
    _C_QB,
    _C_REASON,
    _C_RISK,
    _C_ROC,
    _C_SIDE,
    _C_SIG_IN,
    _C_SIG_OUT,
    _C_SLIP,
    _C_SPREAD,
    _C_SWAP,
    _C_Z_IN,
    _C_Z_OUT,
    _K_CAND,
    _K_FP,
    _K_NEG,
    _K_PASS1,
    _K_VETO,
    COUNTER_NAMES,
    EXIT_REASONS,
    BacktestParams,
    rule_spec,
)
from pairdesk.quant.typing import BoolArray, FloatArray, IntArray

__all__ = [
    "DD_LEVELS",
    "GRID_FIELDS",
    "PORTFOLIO_ID",
    "BacktestCounters",
    "DDPolicy",
    "PairInputs",
    "PortfolioParams",
    "PortfolioResult",
    "ThetaObjectiveParams",
    "grid_search_portfolio",
    "run_portfolio",
]


#: Drawdown levels by code (``dd_events.level``).
DD_LEVELS: tuple[str, ...] = ("normal", "warn", "halt", "flatten")
#: ``pair_id`` of the portfolio row of :meth:`PortfolioResult.summary`.
PORTFOLIO_ID = "PORTFOLIO"

_NS_PER_DAY = 86_400_000_000_000
_I_ANN, _I_DD, _I_TPY = (KPI_NAMES.index(k) for k in ("ann_return", "max_dd", "trades_per_year"))

#: Fields of the structured array returned by the θ grid searches.
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


# ----------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DDPolicy:
    """Drawdown policy (config/dd_policy.yaml; spec 004 §運用Runbook 停止レベル).

    Parameters
    ----------
    rolling_window_business_days : int
        Trailing window (trading days) of the equity peak and of the pair σ. Default 60.
    dd_warn, dd_halt, dd_flatten : float
        Portfolio drawdown thresholds, fractions of ``E_0``, increasing. Defaults 0.08, 0.10, 0.12.
    k_warn, k_halt, k_flatten : float
        Pair thresholds in units of the pair's daily-PnL σ, increasing. Defaults 2.5, 3.5, 4.5.
    leverage_scale_warn : float
        Size multiplier of new entries at the warn level, in (0, 1]. Default 0.5 (the spec names
        ``leverage_scale`` but gives no value).
    pair_level : bool
        Apply the per-pair σ rule. Default True.
    pair_sigma_min_days : int
        *Choice*: the pair σ is taken over the window's **active** days (daily PnL ≠ 0, i.e. the
        pair had a position) and only once there are at least this many (≥ 2); before that the
        pair rule does not act. Counting flat days would shrink σ towards 0 for a pair that
        trades rarely, and its first losing trade would flatten it. Default 10.

    Raises
    ------
    ValueError
        Non-increasing thresholds, values out of range or a window < 2.
    """

    rolling_window_business_days: int = 60
    dd_warn: float = 0.08
    dd_halt: float = 0.10
    dd_flatten: float = 0.12
    k_warn: float = 2.5
    k_halt: float = 3.5
    k_flatten: float = 4.5
    leverage_scale_warn: float = 0.5
    pair_level: bool = True
    pair_sigma_min_days: int = 10

    def __post_init__(self) -> None:
        m = self.pair_sigma_min_days
        if int(m) != m or m < 2:
            raise ValueError(f"pair_sigma_min_days must be an integer >= 2, got {m!r}")
        w = self.rolling_window_business_days
        if int(w) != w or w < 2:
            raise ValueError(f"rolling_window_business_days must be an integer >= 2, got {w!r}")
        if not (0 < self.dd_warn < self.dd_halt < self.dd_flatten):
            raise ValueError("need 0 < dd_warn < dd_halt < dd_flatten")
        if not (0 < self.k_warn < self.k_halt < self.k_flatten):
            raise ValueError("need 0 < k_warn < k_halt < k_flatten")
        if not (0 < self.leverage_scale_warn <= 1):
            raise ValueError(
                f"leverage_scale_warn must be in (0, 1], got {self.leverage_scale_warn!r}"
            )

    @classmethod
    def from_policy(cls, dd_policy: Mapping[str, Any]) -> DDPolicy:
        """Build from a parsed ``dd_policy.yaml`` (``{key: {value: ...}}`` or plain values);
        missing keys keep the defaults."""
        names = {
            "rolling_window_business_days": "rolling_window_business_days",
            "dd_warn_portfolio": "dd_warn",
            "dd_halt_portfolio": "dd_halt",
            "dd_flatten_portfolio": "dd_flatten",
            "k_warn": "k_warn",
            "k_halt": "k_halt",
            "k_flatten": "k_flatten",
            "leverage_scale_warn": "leverage_scale_warn",
            "pair_sigma_min_days": "pair_sigma_min_days",
        }
        kw: dict[str, Any] = {}
        for src, dst in names.items():
            if src in dd_policy:
                v = dd_policy[src]
                v = v["value"] if isinstance(v, Mapping) else v
                kw[dst] = int(v) if dst.endswith("days") else float(v)
        return cls(**kw)


@dataclass(frozen=True)
class PortfolioParams:
    """Capital-account rules of a portfolio backtest (config/backtest_policy.yaml ``portfolio``).

    Parameters
    ----------
    pair_gross_cap : float
        Largest gross notional (both legs) of one pair's position, as a fraction of ``E_0``;
        ``inf`` = none. Default 3.0.
    total_gross_cap : float
        Largest total gross notional of all positions (pending entries included), fraction of
        ``E_0``; ``inf`` = none. Default 20.0 (= the 5 % margin requirement's 20× leverage).
    maintenance_margin_fraction : float
        Ruin when equity ``<= maintenance_margin_fraction × used margin`` (or ``<= 0``), in
        [0, 1]. Default 0.5.
    dd_policy : DDPolicy or None
        Drawdown policy; None disables it. Default :class:`DDPolicy` ().
    stop_at_ruin : bool
        Liquidate and stop at ruin (module docstring). Default True; False lets equity run below
        the maintenance level (a research diagnostic: no real account trades on).

    Raises
    ------
    ValueError
        Non-positive caps or a maintenance fraction outside [0, 1].
    """

    pair_gross_cap: float = 3.0
    total_gross_cap: float = 20.0
    maintenance_margin_fraction: float = 0.5
    dd_policy: DDPolicy | None = field(default_factory=DDPolicy)
    stop_at_ruin: bool = True

    def __post_init__(self) -> None:
        for name in ("pair_gross_cap", "total_gross_cap"):
            v = getattr(self, name)
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not (0 <= self.maintenance_margin_fraction <= 1):
            raise ValueError(
                "maintenance_margin_fraction must be in [0, 1], "
                f"got {self.maintenance_margin_fraction!r}"
            )

    @classmethod
    def unconstrained(cls, *, stop_at_ruin: bool = False) -> PortfolioParams:
        """No caps, no margin (maintenance 0), no drawdown policy and, by default, no ruin stop:
        the rules of :func:`pairdesk.quant.backtest.run_backtest` (with ``stop_at_ruin`` the run
        is liquidated and stopped once equity is ``<= 0``)."""
        return cls(math.inf, math.inf, 0.0, None, stop_at_ruin)

    @classmethod
    def from_policy(
        cls, backtest_policy: Mapping[str, Any], dd_policy: Mapping[str, Any] | None = None
    ) -> PortfolioParams:
        """Build from parsed ``backtest_policy.yaml`` (``portfolio.value``) and
        ``dd_policy.yaml`` (None: the :class:`DDPolicy` defaults)."""
        v = dict(backtest_policy.get("portfolio", {}).get("value", {}))
        unknown = set(v) - {"pair_gross_cap", "total_gross_cap", "maintenance_margin_fraction"}
        if unknown:
            raise ValueError(f"portfolio: unknown keys {sorted(unknown)}")
        dd = DDPolicy() if dd_policy is None else DDPolicy.from_policy(dd_policy)
        return cls(
            pair_gross_cap=float(v.get("pair_gross_cap", 3.0)),
            total_gross_cap=float(v.get("total_gross_cap", 20.0)),
            maintenance_margin_fraction=float(v.get("maintenance_margin_fraction", 0.5)),
            dd_policy=dd,
        )

    def vector(self, initial_capital: float) -> FloatArray:
        """Packed kernel parameters (private layout); caps in USD of ``initial_capital``."""
        out = np.zeros(PP_SIZE)
        out[PP_GROSS_CAP] = self.total_gross_cap * initial_capital
        out[PP_MAINT] = self.maintenance_margin_fraction
        out[PP_RUIN_ON] = 1.0 if self.stop_at_ruin else 0.0
        d = self.dd_policy
        out[PP_WINDOW] = 2.0
        if d is not None:
            out[PP_DD_ON] = 1.0
            out[PP_WINDOW] = d.rolling_window_business_days
            out[PP_WARN], out[PP_HALT], out[PP_FLAT] = d.dd_warn, d.dd_halt, d.dd_flatten
            out[PP_K_WARN], out[PP_K_HALT], out[PP_K_FLAT] = d.k_warn, d.k_halt, d.k_flatten
            out[PP_LEV_WARN] = d.leverage_scale_warn
            out[PP_PAIR_ON] = 1.0 if d.pair_level else 0.0
            out[PP_MIN_DAYS] = d.pair_sigma_min_days
        return out


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
class PairInputs:
    """Per-bar inputs of one pair (all arrays of the pair's own length ``n ≥ 1``).

    Attributes
    ----------
    pair_id : str
        E.g. ``"XAUUSD_XAGUSD"``; unique within a portfolio.
    ts : array_like, shape (n,)
        Bar open times (int64 ns UTC, datetime64 or DatetimeIndex), strictly increasing.
    close_a, close_b : array_like of float, shape (n,)
        Leg closes (each leg's quote currency), finite and > 0.
    z, beta : array_like of float, shape (n,)
        Spread z-score and hedge ratio (features v1); NaN in the warm-up.
    return_prob : array_like of float, shape (n,)
        AI1 out-of-sample probability; NaN where the bar is not an AI1 candidate.
    risk_score : array_like of float, shape (n,)
        AI2 out-of-sample risk probability; NaN where unavailable.
    tradable : array_like of bool, shape (n,)
        Both legs inside their trading sessions at the bar close.
    leg_a, leg_b : LegSpec
        Order units (tick size, contract size, min lot, lot step, symbol for the costs).
    min_notional_usd : float
        Per-leg minimum notional (universe ``constraints.min_notional_usd``). Default 0.
    margin_requirement : float
        Margin per USD of gross notional (universe ``constraints.margin_requirement``, 0.05 =
        20×). Default 0 (no margin check).
    risk_label : array_like of float, shape (n,), optional
        AI2 labels (0/1, NaN unknown) for the AI2 false-positive counters.
    quote_to_account_a, quote_to_account_b : array_like of float, shape (n,), optional
        Per-bar conversion rate of each leg's quote currency to the account currency (account
        units per 1 unit of quote currency, as-of the bar close, finite and > 0); ``None`` = 1.0
        (USD-quoted leg). Sizing, notional, margin, caps, costs and swap use ``price × rate``;
        the mark at bar ``t`` is ``q·cs·(P_t − P_entry)·rate_t``, realised PnL uses the exit
        fill bar's rate (docs/quant-contracts.md §Currency conversion).
    """

    pair_id: str
    ts: npt.ArrayLike
    close_a: npt.ArrayLike
    close_b: npt.ArrayLike
    z: npt.ArrayLike
    beta: npt.ArrayLike
    return_prob: npt.ArrayLike
    risk_score: npt.ArrayLike
    tradable: npt.ArrayLike
    leg_a: LegSpec
    leg_b: LegSpec
    min_notional_usd: float = 0.0
    margin_requirement: float = 0.0
    risk_label: npt.ArrayLike | None = None
    quote_to_account_a: npt.ArrayLike | None = None
    quote_to_account_b: npt.ArrayLike | None = None


def _rate_col(x: npt.ArrayLike | None, name: str, pair_id: str, n: int) -> FloatArray:
    if x is None:
        return np.ones(n)
    a = _col(x, np.float64, name, pair_id, n)
    if not bool(np.all(np.isfinite(a) & (a > 0.0))):
        raise ValueError(f"pair {pair_id}: {name} must be finite and > 0 on every bar")
    return a


@dataclass(frozen=True)
class BacktestCounters:
    """Decision-point counters (flat, tradable, AI1 candidate) of one pair or a portfolio.

    ``candidates``, ``passed_theta1`` (``p > θ1``), ``vetoed_by_ai2`` (passed θ1, not
    ``risk < θ2``), ``entry_signals`` (orders placed), ``entries`` (filled = trades),
    ``ai2_negatives`` / ``ai2_false_positives`` (with AI2 labels), ``blocked`` (rule entries
    blocked by the drawdown policy or the ops gate), ``refused`` (sized entries refused by a cap
    or the margin), ``scaled`` (entries placed with a drawdown scale < 1).
    """

    candidates: int
    passed_theta1: int
    vetoed_by_ai2: int
    entry_signals: int
    entries: int
    ai2_negatives: int
    ai2_false_positives: int
    blocked: int = 0
    refused: int = 0
    scaled: int = 0

    @classmethod
    def from_array(cls, counts: npt.ArrayLike, has_labels: bool = True) -> BacktestCounters:
        """From a counters vector in :data:`pairdesk.quant.rule.COUNTER_NAMES` order."""
        c = {n: int(x) for n, x in zip(COUNTER_NAMES, np.asarray(counts), strict=True)}
        if not has_labels:
            c["ai2_negatives"] = c["ai2_false_positives"] = 0
        return cls(**c)

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


# ----------------------------------------------------------------------------------------------
# input preparation
# ----------------------------------------------------------------------------------------------


def _col(x: npt.ArrayLike, dtype: type, name: str, pair_id: str, n: int) -> np.ndarray:
    a: np.ndarray = np.require(np.asarray(x, dtype=dtype), requirements=["C", "W"])
    if a.shape != (n,):
        raise ValueError(f"pair {pair_id}: {name} must have shape ({n},), got {a.shape}")
    return a


@dataclass(frozen=True)
class _Prepared:
    pair_ids: tuple[str, ...]
    ts: list[IntArray]
    off: IntArray  # pair i owns [off[i], off[i + 1]) of the flat columns
    cols: tuple[Any, ...]  # flat ts, ca, cb, z, beta, prob, risk, tradable, label, xa, xb
    has_labels: bool
    specs: FloatArray
    clock: IntArray
    bar_ns: int
    mult: FloatArray
    swapc: FloatArray
    day_idx: IntArray
    day_last: BoolArray
    n_days: int
    e0: float


def _prepare(
    pairs: Sequence[PairInputs],
    costs: CostModel,
    params: BacktestParams,
    portfolio: PortfolioParams,
    bar_ns: int | None,
    *,
    strict_tradable: bool = True,
) -> _Prepared:
    if len(pairs) == 0:
        raise ValueError("need at least one pair")
    ids = tuple(p.pair_id for p in pairs)
    if len(set(ids)) != len(ids):
        raise ValueError("pair_id values must be unique")
    e0 = float(params.initial_capital)
    cols: list[list[np.ndarray]] = [[] for _ in range(11)]
    specs = np.empty((len(pairs), 30))
    has_labels = any(p.risk_label is not None for p in pairs)
    for i, p in enumerate(pairs):
        t = _as_ts_ns(p.ts)
        if t.ndim != 1 or t.shape[0] < 1:
            raise ValueError(f"pair {p.pair_id}: ts must be 1-d and non-empty, got {t.shape}")
        n = t.shape[0]
        tr = np.asarray(p.tradable)
        if strict_tradable and (tr.shape != (n,) or tr.dtype != np.bool_):
            raise ValueError(f"tradable must be a bool array of shape ({n},)")
        cols[0].append(np.require(t, requirements=["C", "W"]))
        for j, (name, x) in enumerate(
            (
                ("close_a", p.close_a),
                ("close_b", p.close_b),
                ("z", p.z),
                ("beta", p.beta),
                ("return_prob", p.return_prob),
                ("risk_score", p.risk_score),
            ),
            start=1,
        ):
            cols[j].append(_col(x, np.float64, name, p.pair_id, n))
        cols[7].append(_col(tr, np.bool_, "tradable", p.pair_id, n))
        lab = (
            np.empty(0)
            if p.risk_label is None
            else _col(p.risk_label, np.float64, "risk_label", p.pair_id, n)
        )
        cols[8].append(lab)
        cols[9].append(_rate_col(p.quote_to_account_a, "quote_to_account_a", p.pair_id, n))
        cols[10].append(_rate_col(p.quote_to_account_b, "quote_to_account_b", p.pair_id, n))
        cap = portfolio.pair_gross_cap * e0
        specs[i] = rule_spec(
            params,
            p.leg_a,
            p.leg_b,
            costs,
            p.min_notional_usd,
            margin_requirement=p.margin_requirement,
            pair_gross_cap_usd=cap,
        )
    off = np.zeros(len(pairs) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in cols[0]], out=off[1:])
    flat = tuple(c[0] if len(c) == 1 else np.concatenate(c) for c in cols[:8])
    if has_labels:
        labs = [
            np.full(len(t), np.nan) if lab.shape[0] == 0 else lab
            for t, lab in zip(cols[0], cols[8], strict=True)
        ]
        flat = (*flat, labs[0] if len(labs) == 1 else np.concatenate(labs))
    else:
        flat = (*flat, np.empty(0))
    flat = (*flat, *(c[0] if len(c) == 1 else np.concatenate(c) for c in cols[9:]))
    bad, code = validate_nb(flat[0], flat[1], flat[2], off)
    if bad >= 0:
        pid = ids[bad]
        msg = {
            1: "ts must be strictly increasing",
            2: "close_a must be finite and > 0 on every bar",
            3: "close_b must be finite and > 0 on every bar",
        }[int(code)]
        raise ValueError(msg if len(pairs) == 1 else f"pair {pid}: {msg}")
    clock = merge_clock_nb(flat[0], off)
    if bar_ns is None:
        if clock.shape[0] < 2:
            raise ValueError("need at least 2 bars to infer the bar length; pass bar_ns")
        b = int(np.diff(clock).min())
    else:
        b = int(bar_ns)
    if b <= 0:
        raise ValueError(f"bar_ns must be > 0, got {b}")
    close_time = clock + b
    days = clock // _NS_PER_DAY
    day_last = np.ones(clock.shape[0], dtype=np.bool_)
    day_last[:-1] = days[1:] != days[:-1]
    day_idx = np.zeros(clock.shape[0], dtype=np.int64)
    if clock.shape[0] > 1:
        np.cumsum(days[1:] != days[:-1], out=day_idx[1:])
    return _Prepared(
        pair_ids=ids,
        ts=cols[0],
        off=off,
        cols=flat,
        has_labels=has_labels,
        specs=specs,
        clock=clock,
        bar_ns=b,
        mult=costs.slippage_multiplier(close_time),
        swapc=costs.swap_cumulative(close_time),
        day_idx=day_idx,
        day_last=day_last,
        n_days=int(day_idx[-1]) + 1 if clock.shape[0] else 0,
        e0=e0,
    )


@dataclass
class _Raw:
    equity: FloatArray
    trades: FloatArray
    trade_pair: IntArray
    counters: IntArray
    events: FloatArray
    pair_day_pnl: FloatArray
    ruin_c: int


def _run(p: _Prepared, theta1: float, theta2: float, pp: FloatArray, trade_cap: int = 0) -> _Raw:
    c = p.cols
    eq, tr, tp, cnt, ev, pdp, k, nev, ruin_c = portfolio_kernel_nb(
        p.off,
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[7],
        c[8],
        c[9],
        c[10],
        p.specs,
        p.clock,
        p.mult,
        p.swapc,
        p.day_idx,
        p.n_days,
        float(theta1),
        float(theta2),
        pp,
        trade_cap or max(64, c[0].shape[0] // 64),
    )
    return _Raw(eq, tr[:k], tp[:k], cnt, ev[:nev], pdp, int(ruin_c))


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------


def _utc(ns: IntArray) -> pd.DatetimeIndex:
    """int64 ns since the epoch → tz-aware UTC DatetimeIndex (no per-element parsing)."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).tz_localize(
        "UTC"
    )


def _trades_frame(
    tr: FloatArray, pair: IntArray, ts: list[IntArray], bar_ns: int, ids: tuple[str, ...]
) -> pd.DataFrame:
    n = tr.shape[0]
    t_in = np.empty(n, dtype=np.int64)
    t_out = np.empty(n, dtype=np.int64)
    bar_in = tr[:, _C_BAR_IN].astype(np.int64)
    bar_out = tr[:, _C_BAR_OUT].astype(np.int64)
    for i, t in enumerate(ts):
        m = pair == i
        if m.any():
            t_in[m] = t[bar_in[m]] + bar_ns
            t_out[m] = t[bar_out[m]] + bar_ns
    reasons = np.array(EXIT_REASONS, dtype=object)
    return pd.DataFrame(
        {
            "trade_id": np.arange(1, n + 1, dtype=np.int64),
            "pair_id": np.array(ids, dtype=object)[pair],
            "timestamp_entry": _utc(t_in),
            "timestamp_exit": _utc(t_out),
            "side": np.where(tr[:, _C_SIDE] > 0, "LONG_SPREAD", "SHORT_SPREAD").astype(object),
            "qty_a": tr[:, _C_QA],
            "qty_b": tr[:, _C_QB],
            "price_a_entry": tr[:, _C_PA_IN],
            "price_b_entry": tr[:, _C_PB_IN],
            "price_a_exit": tr[:, _C_PA_OUT],
            "price_b_exit": tr[:, _C_PB_OUT],
            "z_at_entry": tr[:, _C_Z_IN],
            "z_at_exit": tr[:, _C_Z_OUT],
            "return_prob": tr[:, _C_PROB],
            "risk_score": tr[:, _C_RISK],
            "exit_reason": reasons[tr[:, _C_REASON].astype(np.int64)],
            "cost_spread": tr[:, _C_SPREAD],
            "cost_slippage": tr[:, _C_SLIP],
            "cost_commission": tr[:, _C_COMM],
            "cost_swap": tr[:, _C_SWAP],
            "pnl_gross": tr[:, _C_GROSS],
            "pnl": tr[:, _C_PNL],
            "return_on_capital": tr[:, _C_ROC],
            "bar_signal_entry": tr[:, _C_SIG_IN].astype(np.int64),
            "bar_entry": bar_in,
            "bar_signal_exit": tr[:, _C_SIG_OUT].astype(np.int64),
            "bar_exit": bar_out,
        }
    )


def _position_from_trades(n: int, trades: pd.DataFrame) -> npt.NDArray[np.int8]:
    """Spread position after each bar: side from the entry fill bar up to (excluding) the exit
    fill bar."""
    acc = np.zeros(n + 1, dtype=np.int64)
    side = np.where(trades["side"].to_numpy() == "LONG_SPREAD", 1, -1)
    np.add.at(acc, trades["bar_entry"].to_numpy(), side)
    np.add.at(acc, trades["bar_exit"].to_numpy(), -side)
    return np.cumsum(acc[:n]).astype(np.int8)


@dataclass(frozen=True)
class PortfolioResult:
    """Output of :func:`run_portfolio`.

    Attributes
    ----------
    pair_ids : tuple of str
        Pairs in input order.
    trades : pandas.DataFrame
        bt_trades rows in exit-fill order: ``trade_id``, ``pair_id``, then the columns of
        :attr:`pairdesk.quant.backtest.BacktestResult.trades` (``bar_*`` are the pair's own bar
        indices; timestamps are fill times = close time of the fill bar, UTC).
    ts : ndarray of int64, shape (n_clock,)
        The clock: bar open times (ns UTC).
    equity : ndarray of float64, shape (n_clock,)
        Portfolio equity (USD) marked at each clock step's close.
    bar_ns : int
        Bar length (ns).
    initial_capital : float
        ``E_0`` (USD).
    pair_daily_pnl : pandas.DataFrame
        Cumulative PnL (USD, realised + unrealised) of each pair at the end of each trading day;
        index ``date`` (UTC), one column per pair id.
    counters : dict of str to BacktestCounters
        Per pair, plus :data:`PORTFOLIO_ID` (the sums).
    dd_events : pandas.DataFrame
        Drawdown-level transitions: ``ts`` (close time of the clock step, UTC), ``scope``
        (:data:`PORTFOLIO_ID` or a pair id), ``level`` (:data:`DD_LEVELS`), ``dd`` (fraction of
        ``E_0``), ``sigma`` (pair σ of daily PnL as a fraction of ``E_0``; NaN for the portfolio).
    ruined : bool
        The account hit the maintenance level and was liquidated.
    ruin_ts : pandas.Timestamp or None
        Close time (UTC) of the ruin clock step.
    theta1, theta2 : float
        Thresholds used.
    pair_ts : tuple of ndarray of int64
        Each pair's bar open times.
    """

    pair_ids: tuple[str, ...]
    trades: pd.DataFrame
    ts: IntArray
    equity: FloatArray
    bar_ns: int
    initial_capital: float
    pair_daily_pnl: pd.DataFrame
    counters: dict[str, BacktestCounters]
    dd_events: pd.DataFrame
    ruined: bool
    ruin_ts: pd.Timestamp | None
    theta1: float
    theta2: float
    pair_ts: tuple[IntArray, ...]

    def daily_equity(self) -> pd.DataFrame:
        """bt_daily_equity rows ``date, equity, dd`` of the portfolio
        (:func:`pairdesk.quant.metrics.daily_equity_frame`; ``dd`` in units of ``E_0``)."""
        return daily_equity_frame(self.ts, self.equity, self.initial_capital)

    def kpis(self, params: KpiParams | None = None) -> dict[str, float]:
        """Portfolio KPIs (:func:`pairdesk.quant.metrics.compute_kpis` on the portfolio equity
        and all trades) plus ``halt_rate``, ``theta_pass_rate``, ``fp_rate_ai2``."""
        k = compute_kpis(
            self.ts,
            self.equity,
            self.trades["pnl"].to_numpy(),
            self.trades["return_on_capital"].to_numpy(),
            initial_capital=self.initial_capital,
            bar_ns=self.bar_ns,
            params=params,
        )
        c = self.counters[PORTFOLIO_ID]
        k["halt_rate"] = c.halt_rate
        k["theta_pass_rate"] = c.theta_pass_rate
        k["fp_rate_ai2"] = c.fp_rate_ai2
        return k

    def pair_kpis(self, pair_id: str, params: KpiParams | None = None) -> dict[str, float]:
        """Diagnostic KPIs of one pair: equity ``E_0 +`` its daily cumulative PnL on the
        portfolio's trading days, its trades; annualised over the portfolio's calendar span.

        Raises
        ------
        KeyError
            Unknown ``pair_id``.
        """
        if pair_id not in self.pair_ids:
            raise KeyError(pair_id)
        day_ts = self.ts[_period_last(self.ts, "D")]
        eq = self.initial_capital + self.pair_daily_pnl[pair_id].to_numpy()
        tr = self.trades[self.trades["pair_id"] == pair_id]
        days = float(self.ts[-1] + self.bar_ns - self.ts[0]) / _NS_PER_DAY
        k = compute_kpis(
            day_ts,
            eq,
            tr["pnl"].to_numpy(),
            tr["return_on_capital"].to_numpy(),
            initial_capital=self.initial_capital,
            bar_ns=self.bar_ns,
            params=params,
            days=days,
        )
        c = self.counters[pair_id]
        k["halt_rate"] = c.halt_rate
        k["theta_pass_rate"] = c.theta_pass_rate
        k["fp_rate_ai2"] = c.fp_rate_ai2
        return k

    def summary(self, params: KpiParams | None = None) -> pd.DataFrame:
        """bt_summary: one :data:`PORTFOLIO_ID` row (the KPIs that count) then one row per pair
        (diagnostics), columns ``pair_id, theta1, theta2``, the KPIs of :meth:`kpis`,
        ``ruined``."""
        rows = [{"pair_id": PORTFOLIO_ID, **self.kpis(params)}]
        rows += [{"pair_id": pid, **self.pair_kpis(pid, params)} for pid in self.pair_ids]
        df = pd.DataFrame(rows)
        df.insert(1, "theta1", self.theta1)
        df.insert(2, "theta2", self.theta2)
        df["ruined"] = [self.ruined] + [False] * len(self.pair_ids)
        return df

    def position(self, pair_id: str) -> npt.NDArray[np.int8]:
        """Spread position of a pair after each of its own bars (+1 long, −1 short, 0 flat).

        Raises
        ------
        KeyError
            Unknown ``pair_id``.
        """
        i = self.pair_ids.index(pair_id) if pair_id in self.pair_ids else -1
        if i < 0:
            raise KeyError(pair_id)
        return _position_from_trades(
            self.pair_ts[i].shape[0], self.trades[self.trades["pair_id"] == pair_id]
        )


def _events_frame(ev: FloatArray, p: _Prepared) -> pd.DataFrame:
    c = ev[:, 0].astype(np.int64)
    scope = ev[:, 1].astype(np.int64)
    names = np.array((*p.pair_ids, PORTFOLIO_ID), dtype=object)
    return pd.DataFrame(
        {
            "ts": _utc(p.clock[c] + p.bar_ns),
            "scope": names[np.where(scope < 0, len(p.pair_ids), scope)],
            "level": np.array(DD_LEVELS, dtype=object)[ev[:, 2].astype(np.int64)],
            "dd": ev[:, 3],
            "sigma": ev[:, 4],
        }
    )


def _result(p: _Prepared, raw: _Raw, theta1: float, theta2: float) -> PortfolioResult:
    counters = {
        pid: BacktestCounters.from_array(raw.counters[i], p.has_labels)
        for i, pid in enumerate(p.pair_ids)
    }
    counters[PORTFOLIO_ID] = BacktestCounters.from_array(raw.counters.sum(axis=0), p.has_labels)
    dates = _utc(p.clock[p.day_last]).date
    return PortfolioResult(
        pair_ids=p.pair_ids,
        trades=_trades_frame(raw.trades, raw.trade_pair, p.ts, p.bar_ns, p.pair_ids),
        ts=p.clock,
        equity=raw.equity,
        bar_ns=p.bar_ns,
        initial_capital=p.e0,
        pair_daily_pnl=pd.DataFrame(
            raw.pair_day_pnl.T, index=pd.Index(dates, name="date"), columns=list(p.pair_ids)
        ),
        counters=counters,
        dd_events=_events_frame(raw.events, p),
        ruined=raw.ruin_c >= 0,
        ruin_ts=(
            pd.Timestamp(int(p.clock[raw.ruin_c] + p.bar_ns), tz="UTC") if raw.ruin_c >= 0 else None
        ),
        theta1=float(theta1),
        theta2=float(theta2),
        pair_ts=tuple(p.ts),
    )


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def run_portfolio(
    pairs: Sequence[PairInputs],
    costs: CostModel,
    params: BacktestParams | None = None,
    portfolio: PortfolioParams | None = None,
    *,
    bar_ns: int | None = None,
) -> PortfolioResult:
    """Backtest N pairs on one clock with shared capital (rules in the module docstring).

    Parameters
    ----------
    pairs : sequence of PairInputs
        The pairs (unique ``pair_id``); their bars may differ (the clock is the union).
    costs : CostModel
        Must contain every leg symbol.
    params : BacktestParams, optional
        Rule, execution and capital (``initial_capital`` = ``E_0``, shared by all pairs).
    portfolio : PortfolioParams, optional
        Caps, maintenance margin and drawdown policy (defaults: :class:`PortfolioParams` ()).
    bar_ns : int, optional
        Bar length in ns (inferred as the smallest gap of the clock when omitted).

    Returns
    -------
    PortfolioResult

    Raises
    ------
    ValueError
        No pairs, duplicate ids, shape mismatches, non-increasing ``ts``, non-positive or
        non-finite closes, a non-bool ``tradable``, or a leg symbol missing from ``costs``.
    """
    prm = params or BacktestParams()
    pf = portfolio if portfolio is not None else PortfolioParams()
    p = _prepare(pairs, costs, prm, pf, bar_ns)
    raw = _run(p, prm.theta1, prm.theta2, pf.vector(prm.initial_capital))
    return _result(p, raw, prm.theta1, prm.theta2)


def _score_cells(
    p: _Prepared,
    pp: FloatArray,
    g1: FloatArray,
    g2: FloatArray,
    obj: ThetaObjectiveParams,
    kp: KpiParams,
) -> np.ndarray:
    n = p.clock.shape[0]
    days = float(p.clock[-1] + p.bar_ns - p.clock[0]) / _NS_PER_DAY
    month_last = _period_last(p.clock, "M")
    scratch = np.empty(n)
    kpi = np.empty(len(KPI_NAMES))
    dtype = [(f, np.bool_ if f == "feasible" else np.float64) for f in GRID_FIELDS]
    out = np.zeros((g1.size, g2.size), dtype=dtype)
    cap = 0
    for i, t1 in enumerate(g1):
        for j, t2 in enumerate(g2):
            raw = _run(p, float(t1), float(t2), pp, cap)
            cap = max(cap, raw.trades.shape[0])
            stats = _trade_stats_nb(
                np.ascontiguousarray(raw.trades[:, _C_PNL]),
                np.ascontiguousarray(raw.trades[:, _C_ROC]),
            )
            _kpi_core_nb(
                raw.equity,
                p.day_last,
                month_last,
                p.e0,
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
            c = raw.counters.sum(axis=0)
            pass1, veto, cand, neg = (
                int(c[_K_PASS1]),
                int(c[_K_VETO]),
                int(c[_K_CAND]),
                int(c[_K_NEG]),
            )
            cell["halt_rate"] = veto / pass1 if pass1 else np.nan
            cell["theta_pass_rate"] = (pass1 - veto) / cand if cand else np.nan
            fp = int(c[_K_FP]) / neg if (p.has_labels and neg) else np.nan
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


def _check_grids(
    theta1_grid: npt.ArrayLike, theta2_grid: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    g1 = np.asarray(theta1_grid, dtype=np.float64).ravel()
    g2 = np.asarray(theta2_grid, dtype=np.float64).ravel()
    for g in (g1, g2):
        if g.size == 0 or not (np.isfinite(g).all() and (g >= 0).all() and (g <= 1).all()):
            raise ValueError("theta grids must be non-empty with values in [0, 1]")
    return g1, g2


def grid_search_portfolio(
    pairs: Sequence[PairInputs],
    costs: CostModel,
    params: BacktestParams | None,
    theta1_grid: npt.ArrayLike,
    theta2_grid: npt.ArrayLike,
    portfolio: PortfolioParams | None = None,
    *,
    bar_ns: int | None = None,
    objective: ThetaObjectiveParams | None = None,
    kpi_params: KpiParams | None = None,
) -> np.ndarray:
    """Portfolio KPIs and the θ objective for every (θ1, θ2) cell (spec 004 §閾値最適化 粗グリッド).

    Inputs are prepared once; each cell is one compiled call of the portfolio kernel, exactly
    :func:`run_portfolio` with ``theta1``/``theta2`` replaced, scored on the **portfolio**
    equity and all trades (feasibility ``MaxDD <= max_dd_max`` and ``trades/yr >=
    trades_per_year_min`` are portfolio figures).

    Parameters
    ----------
    pairs, costs, params, portfolio, bar_ns
        As in :func:`run_portfolio` (``params.theta1``/``theta2`` are ignored).
    theta1_grid, theta2_grid : array_like of float
        Threshold values in [0, 1].
    objective : ThetaObjectiveParams, optional
        Score weights and hard constraints.
    kpi_params : KpiParams, optional
        KPI annualisation conventions.

    Returns
    -------
    numpy structured ndarray, shape (len(theta1_grid), len(theta2_grid))
        Fields :data:`GRID_FIELDS`: the thresholds, every KPI of ``KPI_NAMES``, ``halt_rate``,
        ``theta_pass_rate``, ``fp_rate_ai2`` (NaN without labels), ``score`` and ``feasible``.

    Raises
    ------
    ValueError
        As :func:`run_portfolio`, or empty / out-of-range grids.
    """
    prm = params or BacktestParams()
    pf = portfolio if portfolio is not None else PortfolioParams()
    g1, g2 = _check_grids(theta1_grid, theta2_grid)
    p = _prepare(pairs, costs, prm, pf, bar_ns)
    return _score_cells(
        p,
        pf.vector(prm.initial_capital),
        g1,
        g2,
        objective or ThetaObjectiveParams(),
        kpi_params or KpiParams(),
    )

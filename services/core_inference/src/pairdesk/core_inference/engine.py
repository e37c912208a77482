"""Live inference of one pair: features v1 → AI1/AI2 → the backtest's trading rule, bar by bar.

Spec 004 §backtest-assets-engine 売買ルール, §運用Runbook (停止レベル), §特徴量仕様 v1 (計算・更新
ポリシー: incremental update once per closed bar); DESIGN.md §1 (core_inference: on each closed
bar, O(1) feature update → AI1/AI2 → signal).

Nothing here touches PostgreSQL or Redis: :class:`PairEngine` takes aligned closed bars and ops
gates in, and returns one :class:`BarOutcome` per bar. The same code path runs the live bars and
the replay that rebuilds the state after a (re)start, so both agree by construction.

Equivalence with the batch path (what ``bt run`` does):

* **Features**: :class:`pairdesk.quant.incremental.PairFeatureState`, bit-identical to
  :func:`pairdesk.quant.features.compute_features` over the same bars from the same first bar.
* **AI1 candidates**: :func:`pairdesk.quant.labels.ai1_candidates` on a trailing buffer of feature
  rows. The event machine is reset by every bar with ``|z| <= z_exit`` (finite z), so the buffer
  only has to reach ``speed_k`` bars before the latest such bar to give the full-history answer;
  older rows are dropped (see :meth:`PairEngine._trim_buffer`).
* **Predictions**: :func:`pairdesk.research.train.predict_signals` (normalisation, LightGBM,
  isotonic calibration; row-wise, so a 1-row frame gives the batch value).
* **Rule and paper equity**: :class:`PaperBook` is :class:`pairdesk.quant.rule.PairBook`, the
  one public per-bar trading rule that :func:`pairdesk.quant.backtest.run_backtest` and the
  portfolio backtest run (flat → entry pending → open → exit pending; fills, costs, swaps,
  sizing), stepped one bar at a time, so the paper equity equals the backtest equity bar for bar. Signals are decided at the close of bar
  ``t`` (``ts_utc`` = its open time); the backtest fills them at the close of bar
  ``t + latency_bars``, which is what the paper equity assumes too. The only difference is the
  end of data: the backtest closes an open position on its last bar, live trading does not.

Ops gates (spec 004 §運用Runbook 停止レベル, ``core:ops:flags``):

* soft halt, pair halted, pair flatten, or flags unreadable → no new entry: a bar that would have
  entered is recorded as ``entry_blocked`` with the reason;
* hard halt, or flags unreadable (``read_flags_failsafe`` status ``unknown`` is a hard halt) →
  signal generation stops: no entry and no exit is decided (the bar is ``halted``; an exit that
  would have fired is reported as ``exit_suppressed`` and re-evaluated on the next bar), while
  orders already sent keep filling in the paper book;
* flatten (pair in ``flatten_pairs``) → an open position is exited (reason ``flatten``), also
  under a hard halt.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pairdesk.common.bus import FlagsReading, HaltLevel
from pairdesk.quant.costs import CostModel, round_to_tick
from pairdesk.quant.features import FEATURE_COLUMNS, FeatureParams
from pairdesk.quant.incremental import PairFeatureState
from pairdesk.quant.labels import LabelParams, ai1_candidates
from pairdesk.quant.models import TrainedModel
from pairdesk.quant.rule import (
    STEP_ENTRY_BLOCKED,
    STEP_ENTRY_SIGNAL,
    STEP_EXIT_SIGNAL,
    STEP_EXIT_SUPPRESSED,
    BacktestParams,
    PairBook,
    RuleBar,
    RuleGate,
)
from pairdesk.research.train import predict_signals
from pairdesk.research.universe import TIMEFRAME_MINUTES, PairConfig

__all__ = [
    "ENTRY_ACTIONS",
    "OPEN_GATE",
    "Action",
    "BarOutcome",
    "Gate",
    "PairEngine",
    "PaperBook",
    "PositionState",
    "Recorded",
]

FloatArray = npt.NDArray[np.float64]

_Z = FEATURE_COLUMNS.index("z")
_BETA = FEATURE_COLUMNS.index("beta")
_RHO = FEATURE_COLUMNS.index("rho_rolling")
_NS_PER_MINUTE = 60_000_000_000
#: Trailing feature rows kept for the AI1 candidate rule when ``z`` never reverts (safety cap).
_MAX_BUFFER_ROWS = 50_000
#: Days of daily max drawdown kept for ``days_below_dd_warn``.
_MAX_DAYS = 2_000


class Action(StrEnum):
    """``signals_history.action`` values."""

    ENTER_LONG = "enter_long_spread"  # buy A, sell B (z < 0)
    ENTER_SHORT = "enter_short_spread"  # sell A, buy B (z > 0)
    EXIT = "exit"
    HOLD = "hold"  # position open or pending, nothing to do
    NONE = "none"  # flat, no entry
    ENTRY_BLOCKED = "entry_blocked"  # the rule said enter, the ops flags said no
    HALTED = "halted"  # hard halt / flags unreadable: no decision made


ENTRY_ACTIONS: frozenset[str] = frozenset({Action.ENTER_LONG.value, Action.ENTER_SHORT.value})


class PositionState(IntEnum):
    """Paper position state, the ``state`` codes of :mod:`pairdesk.quant.rule`."""

    FLAT = 0
    ENTRY_PENDING = 1
    OPEN = 2
    EXIT_PENDING = 3


@dataclass(frozen=True)
class Gate:
    """What the ops flags allow on one bar (spec 004 §運用Runbook 停止レベル).

    Attributes
    ----------
    block_entry : str or None
        Reason no new entry may be opened (``flags_unknown``, ``global_halt_hard``,
        ``global_halt_soft``, ``pair_flatten``, ``pair_halted``); None = entries allowed.
    freeze : bool
        Hard halt or unreadable flags: no entry/exit decision is made.
    flatten : bool
        Exit an open position now (reason ``flatten``).
    leverage_scale : float
        Size multiplier in ``[0, 1]`` applied to new entries.
    """

    block_entry: str | None = None
    freeze: bool = False
    flatten: bool = False
    leverage_scale: float = 1.0

    @classmethod
    def from_reading(cls, reading: FlagsReading, pair_id: str) -> Gate:
        """Gate of ``pair_id`` under a fail-safe flags reading.

        ``status != "ok"`` (Redis unreadable, too slow or invalid) is treated as a hard halt.
        """
        flags = reading.flags
        if reading.status != "ok" or flags is None:
            return cls(block_entry="flags_unknown", freeze=True, leverage_scale=0.0)
        flatten = pair_id in flags.flatten_pairs
        if flags.global_halt is HaltLevel.HARD:
            reason: str | None = "global_halt_hard"
        elif flags.global_halt is HaltLevel.SOFT:
            reason = "global_halt_soft"
        elif flatten:
            reason = "pair_flatten"
        elif pair_id in flags.halted_pairs:
            reason = "pair_halted"
        else:
            reason = None
        return cls(
            block_entry=reason,
            freeze=flags.global_halt is HaltLevel.HARD,
            flatten=flatten,
            leverage_scale=flags.leverage_scale,
        )


#: Gate of a bar with no ops restriction (also used for the silent replay of history).
OPEN_GATE = Gate()


@dataclass(frozen=True)
class Recorded:
    """A decision already recorded in ``signals_history`` for a replayed bar.

    When the engine replays history after a restart or a model switch, bars that already have
    a recorded signal take that decision instead of recomputing it, so the rebuilt position is
    the one the execution side was told about (blocked entries stay blocked, halts stay halts).
    """

    action: str
    reason: str | None = None
    position_scale: float = 1.0


@dataclass(frozen=True)
class MarketBar:
    """Inputs of the rule at the close of one aligned bar (the backtest's per-bar arrays)."""

    t: int
    ts: pd.Timestamp
    close_a: float
    close_b: float
    ref_a: float
    ref_b: float
    z: float
    beta: float
    prob: float
    risk: float
    rho: float
    tradable: bool
    candidate: bool
    mult: float
    swapc: float
    ready: bool


@dataclass(frozen=True)
class BarOutcome:
    """Result of one bar: the decision and the state after it.

    Attributes
    ----------
    action : Action
        The signal action of the bar.
    reason : str or None
        Exit reason (``z_exit``, ``risk_stop``, ``max_bars``, ``flatten``) for exits, the gate
        reason for ``entry_blocked`` / ``halted``.
    side : int
        +1 long spread / −1 short spread for entries, blocked entries and exits; 0 otherwise.
    qty_a, qty_b : float or None
        Signed lots of an entry (+ buy, − sell), None otherwise.
    position_scale : float or None
        Size multiplier applied to an entry.
    exit_suppressed : str or None
        Exit reason that fired while signal generation was stopped (hard halt).
    exit_reason_same_bar : str or None
        With ``latency_bars = 0`` an exit and a new entry can happen on one bar; the exit's
        reason is kept here when ``action`` is the entry.
    state : PositionState
        Paper position state after the bar.
    equity, dd : float
        Paper equity (USD, marked at the close) and drawdown from its running peak (fraction).
    predict_s : float
        Seconds spent in AI1/AI2 for the bar (0 in a batched replay).
    bar : MarketBar
        The rule's inputs.
    """

    action: Action
    reason: str | None
    side: int
    qty_a: float | None
    qty_b: float | None
    position_scale: float | None
    exit_suppressed: str | None
    exit_reason_same_bar: str | None
    state: PositionState
    equity: float
    dd: float
    predict_s: float
    bar: MarketBar


def _rule_bar(b: MarketBar) -> RuleBar:
    return RuleBar(
        t=b.t,
        close_a=b.close_a,
        close_b=b.close_b,
        ref_a=b.ref_a,
        ref_b=b.ref_b,
        z=b.z,
        beta=b.beta,
        prob=b.prob,
        risk=b.risk,
        tradable=b.tradable,
        mult=b.mult,
        swapc=b.swapc,
    )


class PaperBook(PairBook):
    """The trading rule's paper book of one pair (:class:`pairdesk.quant.rule.PairBook`) fed
    :class:`MarketBar` inputs; ``t`` is the aligned bar index since the book was created.

    Parameters
    ----------
    params : BacktestParams
        θ are passed per bar; the rest (z_exit, M, θ_stop, latency, capital, sizing) is used.
    leg_a, leg_b : LegSpec
        Order units of the legs.
    costs : CostModel
        Costs of both legs.
    min_notional : float
        Per-leg minimum notional (USD).
    """

    @property
    def state(self) -> PositionState:
        """Position state after the last call."""
        return PositionState(self.position_state)

    def apply_fills(self, b: MarketBar) -> None:
        """Fill the pending entry or exit due at this close (tradable bars only)."""
        self.fill(_rule_bar(b))

    def can_exit_bar(self, b: MarketBar) -> bool:
        """An exit may be signalled: position open, after the entry signal bar."""
        return self.can_exit(_rule_bar(b))

    def decide_bar(self, b: MarketBar, gate: RuleGate) -> int:
        """The rule's exit/entry decisions at this close under ``gate``; returns the step flags."""
        return self.decide(_rule_bar(b), gate)

    def exit_bar(self, b: MarketBar, reason: str) -> None:
        """Exit signal at this close; fills now when ``latency_bars == 0`` and tradable."""
        self.signal_exit(_rule_bar(b), reason)

    def enter_bar(self, b: MarketBar, side: int, scale: float = 1.0) -> tuple[float, float]:
        """Entry signal at this close sized from this bar's closes and ``beta``, ``scale`` (ops
        ``leverage_scale``) applied on top of ``position_scale``; returns the signed lots."""
        return self.signal_entry(_rule_bar(b), side, scale)

    def mark_bar(self, b: MarketBar) -> float:
        """Paper equity (USD) at this close."""
        return self.mark(_rule_bar(b))


@dataclass
class _DailyDD:
    """Max drawdown per UTC trading day (most recent last)."""

    days: deque[tuple[date, float]] = field(default_factory=lambda: deque(maxlen=_MAX_DAYS))

    def add(self, day: date, dd: float) -> None:
        if self.days and self.days[-1][0] == day:
            self.days[-1] = (day, max(self.days[-1][1], dd))
        else:
            self.days.append((day, dd))

    def days_below(self, threshold: float) -> int:
        n = 0
        for _, dd in reversed(self.days):
            if not dd < threshold:
                break
            n += 1
        return n


class PairEngine:
    """Features, predictions, rule and paper equity of one pair, one closed bar at a time.

    Parameters
    ----------
    pair : PairConfig
        Legs (contract specs, session calendars) and minimum notional.
    timeframe : str
        ``15m``, ``1h`` or ``4h``.
    features : FeatureParams
        Feature windows (must be the ones the model was trained with).
    labels : LabelParams
        AI1 event rule (``z_entry``, ``z_exit``, ``M``, speed filter) for the candidate bars.
    params : BacktestParams
        Trading rule and execution parameters; ``theta1``/``theta2`` are passed per bar.
    costs : CostModel
        Costs of both legs.
    ai1, ai2 : TrainedModel
        The active model's classifiers.
    dd_warn : float
        ``dd_policy.yaml`` ``dd_warn_portfolio`` (fraction) for ``days_below_dd_warn``.

    Raises
    ------
    ValueError
        Unknown timeframe, or a leg without costs.
    """

    def __init__(
        self,
        *,
        pair: PairConfig,
        timeframe: str,
        features: FeatureParams,
        labels: LabelParams,
        params: BacktestParams,
        costs: CostModel,
        ai1: TrainedModel,
        ai2: TrainedModel,
        dd_warn: float,
    ) -> None:
        if timeframe not in TIMEFRAME_MINUTES:
            raise ValueError(f"unknown timeframe {timeframe!r}")
        self.pair = pair
        self.timeframe = timeframe
        self.labels = labels
        self.params = params
        self.costs = costs
        self.ai1, self.ai2 = ai1, ai2
        self.dd_warn = float(dd_warn)
        self.bar_ns = TIMEFRAME_MINUTES[timeframe] * _NS_PER_MINUTE
        self.warmup_bars = features.warmup_bars
        self._fs = PairFeatureState(features)
        self.book = PaperBook(
            params, pair.leg_a.spec, pair.leg_b.spec, costs, pair.min_notional_usd
        )
        self._buf_rows: list[FloatArray] = []
        self._buf_ts: list[int] = []
        self._last_sync = -1
        self.t = -1
        self.equity = self.book.e0
        self.peak = self.book.e0
        self.dd = 0.0
        self._daily = _DailyDD()
        self.last: BarOutcome | None = None

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """Past the feature warm-up: every feature is defined from now on."""
        return self._fs.n_bars > self.warmup_bars

    @property
    def last_ts(self) -> pd.Timestamp | None:
        """Open time (UTC) of the last consumed bar."""
        ns = self._fs.last_ts_ns
        return None if ns is None else pd.Timestamp(ns, tz="UTC")

    @property
    def n_bars(self) -> int:
        """Aligned bars consumed."""
        return self._fs.n_bars

    def days_below_dd_warn(self) -> int:
        """Consecutive most recent trading days (UTC dates with bars) whose max drawdown stayed
        below ``dd_warn`` (the current day included)."""
        return self._daily.days_below(self.dd_warn)

    def pair_metrics(self, now: pd.Timestamp) -> dict[str, Any]:
        """Live metrics for the ops resume guards (``SignalBus.set_pair_metrics`` contract).

        Returns
        -------
        dict
            ``as_of`` (RFC 3339 UTC open time of the last bar), ``dd`` (drawdown fraction of the
            paper equity), ``days_below_dd_warn`` (int), ``corr`` (``rho_rolling`` of the last
            bar, None in the warm-up), ``updated_at`` (RFC 3339 ``now``).
        """
        last = self.last
        rho = last.bar.rho if last is not None else float("nan")
        ts = self.last_ts
        return {
            "as_of": ts.isoformat() if ts is not None else None,
            "dd": float(self.dd),
            "days_below_dd_warn": int(self.days_below_dd_warn()),
            "corr": float(rho) if math.isfinite(rho) else None,
            "updated_at": now.tz_convert("UTC").isoformat(),
        }

    # ------------------------------------------------------------------ candidates

    def _trim_buffer(self) -> None:
        """Drop feature rows that can no longer change the candidate rule's answer.

        Every bar with finite ``|z| <= z_exit`` closes the open AI1 event in both a full-history
        and a windowed run of :func:`~pairdesk.quant.labels.ai1_candidates`, and the speed filter
        at bar ``t`` reads only ``z[t − speed_k .. t]``; keeping ``speed_k`` rows before the last
        such bar therefore gives the full-history result for every later bar.
        """
        k = self.labels.speed_k
        cut = self._last_sync - k
        if cut <= 0 and len(self._buf_rows) <= _MAX_BUFFER_ROWS:
            return
        if cut <= 0:  # z never reverted for a very long time: bound the memory
            cut = len(self._buf_rows) - _MAX_BUFFER_ROWS
        del self._buf_rows[:cut]
        del self._buf_ts[:cut]
        self._last_sync -= cut

    def _append_buffer(self, ts_ns: int, row: FloatArray) -> None:
        self._buf_rows.append(row)
        self._buf_ts.append(ts_ns)
        z = row[_Z]
        if math.isfinite(z) and abs(z) <= self.labels.z_exit:
            self._last_sync = len(self._buf_rows) - 1
        self._trim_buffer()

    def _buffer_frame(self) -> pd.DataFrame:
        idx = pd.DatetimeIndex(pd.to_datetime(self._buf_ts, utc=True), name="ts_utc")
        return pd.DataFrame(np.vstack(self._buf_rows), index=idx, columns=list(FEATURE_COLUMNS))

    def _candidate_now(self, row: FloatArray) -> bool:
        z = row[_Z]
        if not (math.isfinite(z) and abs(z) >= self.labels.z_entry):
            return False  # cheap exit: the rule needs |z| >= z_entry
        return bool(ai1_candidates(self._buffer_frame(), self.labels)[-1])

    # ------------------------------------------------------------------ bars

    def _market(
        self,
        t: int,
        ts: pd.Timestamp,
        row: FloatArray,
        close_a: float,
        close_b: float,
        prob: float,
        risk: float,
        tradable: bool,
        candidate: bool,
        mult: float,
        swapc: float,
        ready: bool,
    ) -> MarketBar:
        return MarketBar(
            t=t,
            ts=ts,
            close_a=close_a,
            close_b=close_b,
            ref_a=round_to_tick(close_a, self.pair.leg_a.spec.tick_size),
            ref_b=round_to_tick(close_b, self.pair.leg_b.spec.tick_size),
            z=float(row[_Z]),
            beta=float(row[_BETA]),
            prob=float(prob),
            risk=float(risk),
            rho=float(row[_RHO]),
            tradable=bool(tradable),
            candidate=bool(candidate),
            mult=float(mult),
            swapc=float(swapc),
            ready=ready,
        )

    def _tradable(self, idx: pd.DatetimeIndex) -> np.ndarray:
        tf = self.timeframe
        a = self.pair.leg_a.calendar.is_tradable(idx, tf)
        b = self.pair.leg_b.calendar.is_tradable(idx, tf)
        return np.asarray(a & b, dtype=bool)

    def step(
        self,
        ts: pd.Timestamp,
        bar_a: tuple[float, float, float, float],
        bar_b: tuple[float, float, float, float],
        *,
        theta1: float,
        theta2: float,
        gate: Gate = OPEN_GATE,
        recorded: Recorded | None = None,
    ) -> BarOutcome:
        """Consume one closed aligned bar and decide (spec 004 §backtest 売買ルール).

        Parameters
        ----------
        ts : pandas.Timestamp
            Bar open time (tz-aware UTC), strictly after the previous bar's.
        bar_a, bar_b : tuple of 4 float
            ``(open, high, low, close)`` of legs A and B.
        theta1, theta2 : float
            Entry thresholds (``return_prob > θ1`` and ``risk_score < θ2``).
        gate : Gate
            Ops restrictions for this bar.
        recorded : Recorded, optional
            Decision already recorded for this bar (replay); replaces the rule.

        Returns
        -------
        BarOutcome

        Raises
        ------
        ValueError
            Non-increasing timestamp or a non-positive/NaN price (state unchanged).
        """
        ts_ns = int(pd.Timestamp(ts).value)
        row = self._fs.update_array(ts_ns, bar_a, bar_b)
        self._append_buffer(ts_ns, row)
        ready = self.ready
        candidate = ready and self._candidate_now(row)
        stamp = pd.Timestamp(ts_ns, tz="UTC")
        started = time.perf_counter()
        frame = pd.DataFrame(row[None, :], index=[stamp], columns=list(FEATURE_COLUMNS))
        prob_a, risk_a = predict_signals(self.ai1, self.ai2, frame, np.array([candidate]))
        predict_s = time.perf_counter() - started
        close_ns = np.array([ts_ns + self.bar_ns], dtype=np.int64)
        tradable = bool(self._tradable(pd.DatetimeIndex([stamp]))[0])
        self.t += 1
        b = self._market(
            self.t,
            stamp,
            row,
            float(bar_a[3]),
            float(bar_b[3]),
            float(prob_a[0]),
            float(risk_a[0]),
            tradable,
            candidate,
            float(self.costs.slippage_multiplier(close_ns)[0]),
            float(self.costs.swap_cumulative(close_ns)[0]),
            ready,
        )
        return self._advance(b, theta1, theta2, gate, recorded, predict_s)

    def replay(
        self,
        bars_a: pd.DataFrame,
        bars_b: pd.DataFrame,
        *,
        theta1: float,
        theta2: float,
        recorded: Mapping[int, Recorded] | None = None,
    ) -> list[BarOutcome]:
        """Consume stored history in one batch (warm-up after a start or a model switch).

        Features are updated bar by bar as in :meth:`step`; candidates and predictions are
        computed for the whole batch at once with the same functions (the results are the
        per-bar ones). Bars without a recorded decision follow the rule with no ops
        restriction — what the backtest would have done.

        Parameters
        ----------
        bars_a, bars_b : pandas.DataFrame
            Aligned OHLC of the legs, identical UTC ``DatetimeIndex``, after any bar consumed.
        theta1, theta2 : float
            Entry thresholds.
        recorded : mapping of int to Recorded, optional
            Decisions already recorded, by bar open time (ns since the Unix epoch, UTC).

        Returns
        -------
        list of BarOutcome
            One per bar.
        """
        if not bars_a.index.equals(bars_b.index):
            raise ValueError("bars_a and bars_b must share the same aligned index")
        if len(bars_a) == 0:
            return []
        idx = pd.DatetimeIndex(bars_a.index).tz_convert("UTC")
        ts_ns = idx.as_unit("ns").asi8
        ohlc = ["open", "high", "low", "close"]
        va = bars_a[ohlc].to_numpy(np.float64)
        vb = bars_b[ohlc].to_numpy(np.float64)
        rows = np.empty((len(idx), len(FEATURE_COLUMNS)))
        for i in range(len(idx)):
            oa, ha, la, ca = va[i]
            ob, hb, lb, cb = vb[i]
            rows[i] = self._fs.update_array(int(ts_ns[i]), (oa, ha, la, ca), (ob, hb, lb, cb))
        start_n = self._fs.n_bars - len(idx)
        buf_prev = self._buffer_frame() if self._buf_rows else None
        frame = pd.DataFrame(rows, index=idx.rename("ts_utc"), columns=list(FEATURE_COLUMNS))
        full = frame if buf_prev is None else pd.concat([buf_prev, frame])
        cand_all = np.asarray(ai1_candidates(full, self.labels), dtype=bool)[-len(idx) :]
        ready = (start_n + np.arange(1, len(idx) + 1)) > self.warmup_bars
        cand_all &= ready
        prob, risk = predict_signals(self.ai1, self.ai2, frame, cand_all)
        tradable = self._tradable(idx)
        close_ns = ts_ns + self.bar_ns
        mult = self.costs.slippage_multiplier(close_ns)
        swapc = self.costs.swap_cumulative(close_ns)
        for i in range(len(idx)):
            self._append_buffer(int(ts_ns[i]), rows[i])
        out = []
        rec = recorded or {}
        for i in range(len(idx)):
            self.t += 1
            b = self._market(
                self.t,
                idx[i],
                rows[i],
                float(va[i, 3]),
                float(vb[i, 3]),
                float(prob[i]),
                float(risk[i]),
                bool(tradable[i]),
                bool(cand_all[i]),
                float(mult[i]),
                float(swapc[i]),
                bool(ready[i]),
            )
            out.append(self._advance(b, theta1, theta2, OPEN_GATE, rec.get(int(ts_ns[i])), 0.0))
        return out

    # ------------------------------------------------------------------ decision

    def _apply_recorded(
        self, b: MarketBar, rec: Recorded
    ) -> tuple[Action, str | None, int, tuple[float, float] | None]:
        book = self.book
        try:
            action = Action(rec.action)
        except ValueError:
            action = Action.NONE
        side = 0
        qty: tuple[float, float] | None = None
        if action is Action.EXIT and book.can_exit_bar(b):
            side = book.side
            book.exit_bar(b, rec.reason or "recorded")
        elif (
            action.value in ENTRY_ACTIONS
            and book.state is PositionState.FLAT
            and math.isfinite(b.beta)
            and b.beta != 0.0
        ):
            side = 1 if action is Action.ENTER_LONG else -1
            qty = book.enter_bar(b, side, rec.position_scale)
        return action, rec.reason, side, qty

    def _advance(
        self,
        b: MarketBar,
        theta1: float,
        theta2: float,
        gate: Gate,
        recorded: Recorded | None,
        predict_s: float,
    ) -> BarOutcome:
        book = self.book
        book.apply_fills(b)
        exit_suppressed: str | None = None
        exit_same_bar: str | None = None
        qty: tuple[float, float] | None = None
        scale: float | None = None
        if recorded is not None:
            action, reason, side, qty = self._apply_recorded(b, recorded)
            if qty is not None:
                scale = recorded.position_scale
        else:
            action, reason, side = Action.NONE, None, 0
            side_before = book.side
            rule_gate = RuleGate(
                theta1=theta1,
                theta2=theta2,
                entry_scale=gate.leverage_scale,
                block_entry=gate.block_entry is not None,
                freeze=gate.freeze,
                flatten="flatten" if gate.flatten else None,
            )
            flags = book.decide_bar(b, rule_gate)
            exited = bool(flags & STEP_EXIT_SIGNAL)
            if flags & STEP_EXIT_SUPPRESSED:
                exit_suppressed = book.suppressed_reason
            if exited:
                action, reason, side = Action.EXIT, book.exit_reason, side_before
            if flags & STEP_ENTRY_SIGNAL:
                want = book.wanted_side
                scale = min(self.params.position_scale, 1.0) * gate.leverage_scale
                qty = book.qty
                if exited:
                    exit_same_bar = reason
                action = Action.ENTER_LONG if want > 0 else Action.ENTER_SHORT
                reason, side = None, want
            elif flags & STEP_ENTRY_BLOCKED and not exited:
                action, reason, side = Action.ENTRY_BLOCKED, gate.block_entry, book.wanted_side
            if action is Action.NONE:
                if gate.freeze:
                    action, reason = Action.HALTED, gate.block_entry
                elif book.state is not PositionState.FLAT:
                    action = Action.HOLD
        self.equity = book.mark_bar(b)
        self.peak = max(self.peak, self.equity)
        self.dd = 1.0 - self.equity / self.peak
        self._daily.add(b.ts.date(), self.dd)
        out = BarOutcome(
            action=action,
            reason=reason,
            side=side,
            qty_a=None if qty is None else qty[0],
            qty_b=None if qty is None else qty[1],
            position_scale=scale,
            exit_suppressed=exit_suppressed,
            exit_reason_same_bar=exit_same_bar,
            state=book.state,
            equity=self.equity,
            dd=self.dd,
            predict_s=predict_s,
            bar=b,
        )
        self.last = out
        return out

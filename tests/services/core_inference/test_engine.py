"""The live engine against the batch path (``bt run``), and the ops gates, on real bars.

No servers: :class:`pairdesk.core_inference.engine.PairEngine` is pure logic.

Latency note: a live signal is decided at the close of bar ``t`` and carries ``ts_utc`` = the
open time of bar ``t``; the backtest fills it at the close of bar ``t + latency_bars``
(``bt_trades.timestamp_entry`` = ``ts_utc + (1 + latency_bars) · bar``). The comparison below is
on signal bars (``bar_signal_entry`` / ``bar_signal_exit``), and the paper equity assumes the
backtest's fills, so it matches the backtest equity on every bar but the last (where the
backtest closes the open position because its data ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from pairdesk.common.bus import FlagsReading, HaltLevel, OpsFlags
from pairdesk.core_inference.engine import (
    ENTRY_ACTIONS,
    Action,
    BarOutcome,
    Gate,
    PairEngine,
    PositionState,
    Recorded,
)

if TYPE_CHECKING:
    from conftest import CoreInputs

SOFT = Gate.from_reading(FlagsReading("ok", OpsFlags(global_halt=HaltLevel.SOFT)), "XAUUSD_XAGUSD")
HARD = Gate.from_reading(FlagsReading("ok", OpsFlags(global_halt=HaltLevel.HARD)), "XAUUSD_XAGUSD")


def _engine(ci: CoreInputs, dd_warn: float = 0.08) -> PairEngine:
    return PairEngine(
        pair=ci.pair,
        timeframe="1h",
        features=ci.settings.features,
        labels=ci.settings.labels,
        params=ci.params,
        costs=ci.costs,
        ai1=ci.ai1,
        ai2=ci.ai2,
        dd_warn=dd_warn,
    )


def _bar(frame: pd.DataFrame, i: int) -> tuple[float, float, float, float]:
    o, h, lo, c = (float(x) for x in frame.iloc[i][["open", "high", "low", "close"]])
    return o, h, lo, c


def _step(eng: PairEngine, ci: CoreInputs, i: int, gate: Gate | None = None) -> BarOutcome:
    kw = {} if gate is None else {"gate": gate}
    return eng.step(
        ci.bars_a.index[i],
        _bar(ci.bars_a, i),
        _bar(ci.bars_b, i),
        theta1=ci.params.theta1,
        theta2=ci.params.theta2,
        **kw,
    )


def _replay(
    eng: PairEngine, ci: CoreInputs, start: int, end: int, **kw: object
) -> list[BarOutcome]:
    return eng.replay(
        ci.bars_a.iloc[start:end],
        ci.bars_b.iloc[start:end],
        theta1=ci.params.theta1,
        theta2=ci.params.theta2,
        **kw,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class LiveRun:
    engine: PairEngine
    outcomes: list[BarOutcome]
    go_live: int
    end: int


@pytest.fixture(scope="module")
def live_run(core_inputs: CoreInputs) -> LiveRun:
    """Replay 2023-06-01 → 2024-04-10 in one batch, then step every later bar live."""
    ci = core_inputs
    go_live, end = ci.pos("2024-04-10"), len(ci.bars_a)
    eng = _engine(ci)
    outs = _replay(eng, ci, 0, go_live)
    outs += [_step(eng, ci, i) for i in range(go_live, end)]
    return LiveRun(eng, outs, go_live, end)


def test_live_signals_and_paper_equity_equal_the_batch_backtest(
    core_inputs: CoreInputs, live_run: LiveRun
) -> None:
    ci, outs = core_inputs, live_run.outcomes
    batch = ci.batch(0, live_run.end)
    first_live = ci.bars_a.index[live_run.go_live]
    live = outs[live_run.go_live :]
    entries = [(o.bar.ts, o.side) for o in live if o.action.value in ENTRY_ACTIONS]
    exits = [(o.bar.ts, o.reason) for o in live if o.action is Action.EXIT]
    assert entries == batch.entries(first_live)
    assert exits == batch.exits(first_live)
    assert len(entries) >= 3
    assert len(exits) >= 3
    # the replayed history traded exactly like the backtest too
    assert [(o.bar.ts, o.side) for o in outs if o.action.value in ENTRY_ACTIONS] == batch.entries()
    # inputs of the rule: candidates and model outputs are the batch values bit for bit
    assert np.array_equal([o.bar.candidate for o in outs], batch.candidates)
    prob = np.array([o.bar.prob for o in outs])
    np.testing.assert_array_equal(prob, np.where(batch.candidates, batch.return_prob, np.nan))
    np.testing.assert_array_equal([o.bar.risk for o in outs], batch.risk_score)
    np.testing.assert_array_equal([o.bar.z for o in outs], batch.features["z"].to_numpy())
    # paper equity = backtest equity (the backtest force-closes on its last bar only)
    equity = np.array([o.equity for o in outs])
    np.testing.assert_array_equal(equity[:-1], batch.result.equity[:-1])
    position = np.array([o.bar and o.state is not PositionState.FLAT for o in outs])
    assert position.any()
    # entries carry β-neutral signed lots of opposite signs (β > 0 on metals)
    for o in live:
        if o.action.value in ENTRY_ACTIONS:
            assert o.qty_a is not None
            assert o.qty_b is not None
            assert np.sign(o.qty_a) == o.side
            assert np.sign(o.qty_b) == -o.side
            assert o.position_scale == 1.0


def test_batched_replay_equals_bar_by_bar_steps(core_inputs: CoreInputs, live_run: LiveRun) -> None:
    eng = _engine(core_inputs)
    outs = _replay(eng, core_inputs, 0, live_run.end)
    assert [(o.action, o.reason, o.equity) for o in outs] == [
        (o.action, o.reason, o.equity) for o in live_run.outcomes
    ]
    assert eng.book.state is live_run.engine.book.state


def test_candidate_buffer_stays_small(live_run: LiveRun) -> None:
    # the AI1 event state resets at every |z| <= z_exit; the buffer keeps only what can matter
    assert len(live_run.engine._buf_rows) < 1_000 < live_run.end


def test_pair_metrics_follow_the_paper_equity(core_inputs: CoreInputs, live_run: LiveRun) -> None:
    eng, outs = live_run.engine, live_run.outcomes
    now = pd.Timestamp("2024-07-01T00:00:00", tz="UTC")
    m = eng.pair_metrics(now)
    assert set(m) == {"as_of", "dd", "days_below_dd_warn", "corr", "updated_at"}
    assert m["as_of"] == core_inputs.bars_a.index[-1].isoformat()
    assert m["updated_at"] == now.isoformat()
    equity = np.array([o.equity for o in outs])
    peak = np.maximum.accumulate(np.r_[core_inputs.params.initial_capital, equity])[1:]
    dd = 1.0 - equity / peak
    assert m["dd"] == pytest.approx(dd[-1], abs=1e-15)
    assert m["corr"] == pytest.approx(outs[-1].bar.rho)
    daily = pd.Series(dd, index=[o.bar.ts.date() for o in outs]).groupby(level=0).max()
    try:
        for warn in (0.08, float(np.quantile(daily, 0.7)), 1e-12):
            below = daily.to_numpy() < warn
            expect = len(below) if below.all() else int(np.argmin(below[::-1]))
            eng.dd_warn = warn
            assert eng.days_below_dd_warn() == expect
    finally:
        eng.dd_warn = 0.08
    assert 0 <= m["days_below_dd_warn"] <= len(daily)


def _first_live_entry(ci: CoreInputs, live_run: LiveRun) -> tuple[int, int, int, str]:
    """(entry signal row, side, exit signal row, exit reason) of the first live trade."""
    tr = ci.batch(0, live_run.end).result.trades
    first = tr[tr["bar_signal_entry"] >= live_run.go_live].iloc[0]
    side = 1 if first["side"] == "LONG_SPREAD" else -1
    return (
        int(first["bar_signal_entry"]),
        side,
        int(first["bar_signal_exit"]),
        str(first["exit_reason"]),
    )


def test_soft_halt_blocks_the_entry_and_records_why(
    core_inputs: CoreInputs, live_run: LiveRun
) -> None:
    k, side, _, _ = _first_live_entry(core_inputs, live_run)
    eng = _engine(core_inputs)
    _replay(eng, core_inputs, 0, k)
    out = _step(eng, core_inputs, k, SOFT)
    assert (out.action, out.reason, out.side) == (Action.ENTRY_BLOCKED, "global_halt_soft", side)
    assert out.state is PositionState.FLAT
    assert out.qty_a is None
    # a halted pair blocks too, and the other pairs are untouched
    pair_halted = Gate.from_reading(
        FlagsReading("ok", OpsFlags(halted_pairs=frozenset({"XAUUSD_XAGUSD"}))), "XAUUSD_XAGUSD"
    )
    eng2 = _engine(core_inputs)
    _replay(eng2, core_inputs, 0, k)
    assert _step(eng2, core_inputs, k, pair_halted).reason == "pair_halted"
    other = Gate.from_reading(
        FlagsReading("ok", OpsFlags(halted_pairs=frozenset({"XAUUSD_XAGUSD"}))), "BTCUSDT_ETHUSDT"
    )
    assert other.block_entry is None
    assert not other.freeze


def test_hard_halt_and_unreadable_flags_stop_signal_generation(
    core_inputs: CoreInputs, live_run: LiveRun
) -> None:
    ci = core_inputs
    k, side, x, reason = _first_live_entry(ci, live_run)
    unknown = Gate.from_reading(FlagsReading("unknown", None, "ConnectionError"), "XAUUSD_XAGUSD")
    assert unknown.freeze
    assert unknown.block_entry == "flags_unknown"
    for gate, why in ((HARD, "global_halt_hard"), (unknown, "flags_unknown")):
        eng = _engine(ci)
        _replay(eng, ci, 0, k)
        out = _step(eng, ci, k, gate)
        assert (out.action, out.reason, out.side) == (Action.ENTRY_BLOCKED, why, side)
        nxt = [_step(eng, ci, i, gate) for i in range(k + 1, k + 30)]
        assert {o.action for o in nxt} <= {Action.HALTED, Action.ENTRY_BLOCKED}
        assert all(o.reason == why for o in nxt)
    # an open position is frozen under a hard halt: its exit is suppressed, not sent
    eng = _engine(ci)
    assert x > k + 2
    _replay(eng, ci, 0, k + 2)  # entry signalled at k and filled at k+1 (latency 1)
    assert eng.book.state is PositionState.OPEN
    held = [_step(eng, ci, i, HARD) for i in range(k + 2, x + 1)]
    assert all(o.action is Action.HALTED for o in held)
    assert held[-1].exit_suppressed == reason
    assert eng.book.state is PositionState.OPEN
    resumed = _step(eng, ci, x + 1)
    assert resumed.action in (Action.EXIT, Action.HOLD)


def test_flatten_exits_an_open_position(core_inputs: CoreInputs, live_run: LiveRun) -> None:
    ci = core_inputs
    k, side, x, _ = _first_live_entry(ci, live_run)
    flatten = Gate.from_reading(
        FlagsReading(
            "ok", OpsFlags(global_halt=HaltLevel.HARD, flatten_pairs=frozenset({ci.pair.pair_id}))
        ),
        ci.pair.pair_id,
    )
    assert flatten.flatten
    assert flatten.freeze
    assert flatten.block_entry == "global_halt_hard"
    eng = _engine(ci)
    _replay(eng, ci, 0, k)
    entered = _step(eng, ci, k)
    assert entered.action.value in ENTRY_ACTIONS
    assert entered.state is PositionState.ENTRY_PENDING
    assert k + 1 < x  # the rule itself would hold on
    out = _step(eng, ci, k + 1, flatten)  # filled at this close, then flattened
    assert (out.action, out.reason, out.side) == (Action.EXIT, "flatten", side)
    assert out.state is PositionState.EXIT_PENDING
    done = _step(eng, ci, k + 2, flatten)
    assert done.state is PositionState.FLAT
    assert eng.book.trades_closed >= 1
    assert done.action in (Action.HALTED, Action.ENTRY_BLOCKED)


def test_leverage_scale_shrinks_new_entries(core_inputs: CoreInputs, live_run: LiveRun) -> None:
    ci = core_inputs
    k, _, _, _ = _first_live_entry(ci, live_run)
    full = _engine(ci)
    _replay(full, ci, 0, k)
    a = _step(full, ci, k)
    half = _engine(ci)
    _replay(half, ci, 0, k)
    b = _step(half, ci, k, Gate(leverage_scale=0.5))
    assert b.action is a.action
    assert b.position_scale == 0.5
    assert a.qty_a is not None
    assert b.qty_a is not None
    assert abs(b.qty_a) == pytest.approx(abs(a.qty_a) / 2, rel=0.05)


def test_replay_takes_recorded_decisions(core_inputs: CoreInputs, live_run: LiveRun) -> None:
    ci = core_inputs
    k, side, _x, _ = _first_live_entry(ci, live_run)
    ts_k = int(ci.bars_a.index[k].value)
    # the entry was blocked when it happened: the rebuilt state stays flat
    eng = _engine(ci)
    outs = _replay(
        eng, ci, 0, k + 5, recorded={ts_k: Recorded("entry_blocked", "global_halt_soft")}
    )
    assert (outs[k].action, outs[k].reason) == (Action.ENTRY_BLOCKED, "global_halt_soft")
    assert all(o.state is PositionState.FLAT for o in outs[k:])
    # an entry recorded where the rule would not enter is rebuilt as a position, and a
    # recorded exit closes it
    j = k - 60
    assert live_run.outcomes[j].state is PositionState.FLAT
    enter = Action.ENTER_LONG if side > 0 else Action.ENTER_SHORT
    rec = {
        int(ci.bars_a.index[j].value): Recorded(enter.value, None, 0.5),
        int(ci.bars_a.index[j + 3].value): Recorded("exit", "flatten"),
    }
    eng2 = _engine(ci)
    outs2 = _replay(eng2, ci, 0, j + 6, recorded=rec)
    assert outs2[j].action is enter
    assert outs2[j].position_scale == 0.5
    assert outs2[j + 1].state is PositionState.OPEN
    assert (outs2[j + 3].action, outs2[j + 3].reason) == (Action.EXIT, "flatten")
    assert outs2[j + 5].state is PositionState.FLAT
    assert math.isfinite(outs2[-1].equity)
    assert outs2[-1].equity != ci.params.initial_capital

"""core_inference end to end on a real PostgreSQL and Redis: closed bars in ``canonical_bars`` →
live loop → ``signals_history`` / ``signals_live`` → Redis stream + pub/sub, compared with the
batch path; model activation with RBAC and audit; halts; unreadable flags; a Redis restart
without persistence.

Each test has its own migrated database (model activations and signals stay in the test) and
its own Redis namespace. The live state starts from the newest ``replay_bars`` stored bars, so
the batch reference starts at that same bar.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pairdesk.common.auth import Role, create_token
from pairdesk.common.bus import SignalBus, SignalMessage, create_redis
from pairdesk.common.db import create_engine
from pairdesk.common.models import AnalyticsAction, SignalHistory, SignalLive
from pairdesk.common.settings import Settings
from pairdesk.common.testing import RedisTestHandle
from pairdesk.core_inference.engine import ENTRY_ACTIONS
from pairdesk.core_inference.main import create_app
from pairdesk.core_inference.settings import CoreSettings
from sqlalchemy import select

if TYPE_CHECKING:
    from conftest import CoreInputs, Helpers, PrivateRedis

REPLAY = 1000
PAIR = "XAUUSD_XAGUSD"

# ------------------------------------------------------------------------------ harness


class App:
    """A running core_inference app (TestClient) with tokens and DB/Redis readers."""

    def __init__(
        self, client: TestClient, settings: Settings, db_url: str, redis_url: str, ns: str
    ):
        self.client = client
        self.settings = settings
        self.db_url = db_url
        self.redis_url = redis_url
        self.ns = ns

    def headers(self, role: Role = Role.VIEWER, sub: str = "vera") -> dict[str, str]:
        return {"Authorization": f"Bearer {create_token(sub, role, self.settings)}"}

    def get(self, path: str, role: Role = Role.VIEWER, **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", headers=self.headers(role), params=params)

    def status(self) -> dict[str, Any]:
        r = self.get("/inference/status")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def pair_status(self) -> dict[str, Any]:
        return dict(self.status()["pairs"][0])

    def wait(
        self, cond: Callable[[dict[str, Any]], bool], timeout: float = 180.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st = self.status()
        while not cond(st):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status: {st}")
            time.sleep(0.2)
            st = self.status()
        return st

    def wait_watermark(self, ts: pd.Timestamp, *, published: bool = True) -> dict[str, Any]:
        def done(st: dict[str, Any]) -> bool:
            wm = st["pairs"][0]["watermark"]
            ok = wm is not None and pd.Timestamp(wm) == ts
            return ok and (not published or st["pending_unpublished"] == 0)

        return self.wait(done)

    def history(self) -> list[SignalHistory]:
        return _db(self.db_url, select(SignalHistory).order_by(SignalHistory.id))

    def live(self) -> list[SignalLive]:
        return _db(self.db_url, select(SignalLive))

    def bus_call(self, fn: Callable[[SignalBus], Any]) -> Any:
        async def run() -> Any:
            client = create_redis(self.redis_url)
            try:
                return await fn(SignalBus(client, namespace=self.ns))
            finally:
                await client.aclose()

        return asyncio.run(run())

    def announce(self, last: pd.Timestamp) -> None:
        self.bus_call(
            lambda bus: bus.announce_bars_closed(
                {
                    "timeframe": "1h",
                    "symbols": ["XAUUSD", "XAGUSD"],
                    "last_ts_utc": last.isoformat(),
                }
            )
        )


def _db(url: str, stmt: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(url, pool=False)
        try:
            async with engine.connect() as conn:
                from sqlalchemy.ext.asyncio import AsyncSession

                async with AsyncSession(bind=conn) as session:
                    return list((await session.scalars(stmt)).all())
        finally:
            await engine.dispose()

    return asyncio.run(run())


@contextmanager
def running(db_url: str, redis_url: str, ns: str, **core: Any) -> Iterator[App]:
    settings = Settings.from_mapping(
        {"POSTGRES_URL": db_url, "REDIS_URL": redis_url, "PAIRDESK_BUS_NAMESPACE": ns}
    )
    cfg = {"poll_s": 0.3, "theta1": 0.05, "theta2": 0.45, "replay_bars": REPLAY, **core}
    app = create_app(settings, core=CoreSettings(**cfg))
    with TestClient(app) as client:
        yield App(client, settings, db_url, redis_url, ns)


class Listener(threading.Thread):
    """Collects pub/sub signal messages in a thread of its own."""

    def __init__(self, url: str, ns: str) -> None:
        super().__init__(daemon=True)
        self.url, self.ns = url, ns
        self.messages: list[SignalMessage] = []
        self.ready = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        client = create_redis(self.url)
        try:
            async with SignalBus(client, namespace=self.ns).subscribe_signals() as sub:
                self.ready.set()
                while not self.halt.is_set():
                    msg = await sub.get(timeout_s=0.2)
                    if msg is not None:
                        self.messages.append(msg)
        finally:
            await client.aclose()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def _window(ci: CoreInputs, go_live: str) -> tuple[int, int]:
    """(first stored bar, first live bar): exactly REPLAY bars are stored before going live."""
    i0 = ci.pos(go_live)
    return i0 - REPLAY, i0


def _first_entry(ci: CoreInputs, s: int, i0: int) -> int:
    batch = ci.batch(s, len(ci.bars_a))
    first = ci.bars_a.index[i0]
    ts, _ = batch.entries(first)[0]
    return int(ci.bars_a.index.get_loc(ts))


# ------------------------------------------------------------------------------ tests


def test_without_an_active_model_the_service_runs_and_says_so(
    fresh_db: str, redis_client: RedisTestHandle
) -> None:
    with running(fresh_db, redis_client.url, redis_client.namespace) as app:
        st = app.wait(lambda s: s["state"] == "no_active_model")
        assert st["model_version"] is None
        assert st["pairs"][0]["loaded"] is False
        assert app.client.get("/readyz").status_code == 200
        assert app.client.get("/api/v1/inference/status").status_code == 401
        assert app.get("/signals/latest").json()["data"] == []
        missing = app.get("/signals/latest", pair_id=PAIR)
        assert missing.status_code == 404
        assert missing.json()["error"]["id"] == "CORE_SIGNAL_NOTFOUND"
        page = app.get("/signals/history").json()["data"]
        assert (page["total"], page["items"]) == (0, [])
        assert app.get("/models").json()["data"] == []
        bad = app.get("/signals/history", limit=0)
        assert bad.status_code == 422
        assert bad.json()["error"]["id"] == "CORE_API_VALIDATION"


def test_live_signals_reach_postgres_stream_and_pubsub_equal_to_the_batch_path(
    fresh_db: str, redis_client: RedisTestHandle, core_inputs: CoreInputs, helpers: Helpers
) -> None:
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    i1 = ci.pos("2024-06-01")
    idx = ci.bars_a.index
    helpers.insert_bars(fresh_db, ci, s, i0)
    version = helpers.register_and_activate(fresh_db, ci.model_dir)
    with running(fresh_db, redis_client.url, redis_client.namespace) as app:
        st = app.wait_watermark(idx[i0 - 1])
        assert (st["state"], st["model_version"]) == ("running", version)
        assert (st["theta1"], st["theta2"]) == (0.05, 0.45)
        assert st["theta_source"] == {"theta1": "settings", "theta2": "settings"}
        assert app.history() == []  # the stored history is warm-up, never emitted
        listener = Listener(redis_client.url, redis_client.namespace)
        listener.start()
        assert listener.ready.wait(10)
        for lo, hi in ((i0, i0 + 300), (i0 + 300, i0 + 700), (i0 + 700, i1)):
            helpers.insert_bars(fresh_db, ci, lo, hi)
            app.announce(idx[hi - 1])
        st = app.wait_watermark(idx[i1 - 1])
        time.sleep(0.5)
        listener.stop()
        rows = app.history()
        metrics = app.bus_call(lambda bus: bus.get_pair_metrics())
        stream = app.bus_call(lambda bus: bus.replay_signals())
        api_latest = app.get("/signals/latest", pair_id=PAIR).json()["data"]
        page = app.get("/signals/history", pair_id=PAIR, limit=5).json()["data"]
        entered = app.get("/signals/history", action="enter_short_spread", limit=1000).json()[
            "data"
        ]
        since = app.get("/signals/history", since=idx[i1 - 10].isoformat()).json()["data"]
        models = app.get("/models").json()["data"]
        prom = app.client.get("/metrics").text

    # one signal per live bar, in bar order, all published
    assert [pd.Timestamp(r.ts_utc) for r in rows] == list(idx[i0:i1])
    assert all(r.model_version == version and r.stream_id for r in rows)
    # the same decisions as compute_features → ai1_candidates → predict_signals → run_backtest
    batch = ci.batch(s, i1 + 1)  # one bar more: the backtest force-closes on its last bar
    first = idx[i0]
    entries = [
        (pd.Timestamp(r.ts_utc), 1 if r.action == "enter_long_spread" else -1)
        for r in rows
        if r.action in ENTRY_ACTIONS
    ]
    exits = [(pd.Timestamp(r.ts_utc), r.payload["reason"]) for r in rows if r.action == "exit"]
    assert entries == [e for e in batch.entries(first) if e[0] < idx[i1]]
    assert exits == [e for e in batch.exits(first) if e[0] < idx[i1]]
    assert len(entries) >= 3
    assert len(exits) >= 2
    pos = {ts: i for i, ts in enumerate(batch.index)}
    for r in rows:
        j = pos[pd.Timestamp(r.ts_utc)]
        assert r.payload["z"] == pytest.approx(batch.features["z"].iloc[j], abs=0, rel=0)
        assert r.payload["risk_score"] == batch.risk_score[j]
        assert r.payload["candidate"] == bool(batch.candidates[j])
    ent = next(r for r in rows if r.action in ENTRY_ACTIONS)
    assert ent.payload["side"] in ("LONG_SPREAD", "SHORT_SPREAD")
    assert ent.payload["leg_a"]["qty"]
    assert ent.payload["leg_b"]["qty"]
    assert ent.return_prob is not None
    assert float(ent.return_prob) > 0.05
    assert float(ent.risk_score) < 0.45
    # stream: every row, in id order, with the recorded ids; pub/sub: the same messages
    assert [e.payload["signal_id"] for e in stream] == [r.id for r in rows]
    assert [e.id for e in stream] == [r.stream_id for r in rows]
    assert [m.stream_id for m in listener.messages] == [r.stream_id for r in rows]
    assert listener.messages[-1].payload == stream[-1].payload
    # signals_live is the last signal
    assert len(api_latest) == 1
    assert pd.Timestamp(api_latest[0]["ts_utc"]) == idx[i1 - 1]
    assert api_latest[0]["stream_id"] == rows[-1].stream_id
    # paged history, newest first, and filters
    assert page["total"] == len(rows)
    assert [pd.Timestamp(x["ts_utc"]) for x in page["items"]] == list(idx[i1 - 5 : i1][::-1])
    assert entered["total"] == sum(1 for _, side in entries if side < 0)
    assert since["total"] == 10
    assert [m["status"] for m in models] == ["active"]
    # live pair metrics for the ops resume guards: the backtest's equity and drawdown
    m = metrics[PAIR]
    assert m["as_of"] == idx[i1 - 1].isoformat()
    eq = batch.result.equity[: len(batch.index) - 1]
    peak = np.maximum.accumulate(np.r_[ci.params.initial_capital, eq])[1:]
    assert m["dd"] == pytest.approx(1.0 - eq[-1] / peak[-1], abs=1e-12)
    assert m["corr"] == pytest.approx(batch.features["rho_rolling"].iloc[-2], abs=1e-12)
    assert isinstance(m["days_below_dd_warn"], int)
    assert m["days_below_dd_warn"] >= 0
    assert st["pairs"][0]["dd"] == pytest.approx(m["dd"], abs=1e-12)
    # spec metrics were updated by the real predictions
    assert f'ml_predictions_total{{model="ai2",model_version="{version}"}}' in prom
    assert "ml_prediction_duration_bucket" in prom


def test_model_activation_is_rbac_guarded_audited_and_switches_the_loop(
    fresh_db: str,
    redis_client: RedisTestHandle,
    core_inputs: CoreInputs,
    helpers: Helpers,
    tmp_path: Path,
) -> None:
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    idx = ci.bars_a.index
    helpers.insert_bars(fresh_db, ci, s, i0)
    v1 = helpers.register_and_activate(fresh_db, ci.model_dir)
    v2_dir = helpers.copy_bundle(ci.model_dir, tmp_path / "t_v2", "t_v2")
    v2 = helpers.register_and_activate(fresh_db, v2_dir, activate=False)
    ops_theta = {"theta1": 0.07, "theta2": 0.4, "applies_to_model_version": v1, "set_by": "ops"}
    with running(
        fresh_db, redis_client.url, redis_client.namespace, theta1=None, theta2=None
    ) as app:
        app.wait(lambda st: st["model_version"] == v1 and st["pairs"][0]["loaded"])
        st = app.status()
        assert st["theta_source"] == {"theta1": "registry", "theta2": "registry"}
        # an ops θ rollback (ops_api writes core:ops:theta[<timeframe>]) overrides the registry
        key = f"{app.ns}:core:ops:theta"
        app.bus_call(lambda bus: bus.client.hset(key, "1h", json.dumps(ops_theta)))
        st = app.wait(lambda st: st["theta_source"].get("theta1") == "ops")
        assert (st["theta1"], st["theta2"]) == (0.07, 0.4)
        url = f"/api/v1/models/{v2}/activate"
        body = {"reason": "monthly retrain passed the adoption rule"}
        assert app.client.post(url, json=body).status_code == 401
        for role in (Role.VIEWER, Role.EDITOR):
            r = app.client.post(url, json=body, headers=app.headers(role))
            assert r.status_code == 403
            assert r.json()["error"]["id"] == "CORE_AUTH_FORBIDDEN"
        approver = app.headers(Role.APPROVER, "ana")
        r = app.client.post(url, json={}, headers=approver)
        assert r.status_code == 422
        r = app.client.post("/api/v1/models/nope/activate", json=body, headers=approver)
        assert r.status_code == 404
        assert r.json()["error"]["id"] == "CORE_MODEL_NOTFOUND"
        r = app.client.post(url, json=body, headers=approver)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert (data["model"]["model_version"], data["previous_version"], data["changed"]) == (
            v2,
            v1,
            True,
        )
        assert data["model"]["activated_by"] == "ana"
        st = app.wait(lambda st: st["model_version"] == v2 and st["pairs"][0]["loaded"])
        assert pd.Timestamp(st["pairs"][0]["watermark"]) == idx[i0 - 1]
        # the override was for the model that is no longer active
        assert st["theta_source"] == {"theta1": "registry", "theta2": "registry"}
        again = app.client.post(url, json=body, headers=approver).json()["data"]
        assert again["changed"] is False
        statuses = {m["model_version"]: m["status"] for m in app.get("/models").json()["data"]}
        assert statuses == {v1: "retired", v2: "active"}
        helpers.insert_bars(fresh_db, ci, i0, i0 + 20)
        app.announce(idx[i0 + 19])
        app.wait_watermark(idx[i0 + 19])
        rows = app.history()
    assert len(rows) == 20
    assert {r.model_version for r in rows} == {v2}
    audit = _db(fresh_db, select(AnalyticsAction).order_by(AnalyticsAction.id))
    assert [(a.action, a.actor, a.actor_role, a.result) for a in audit] == [
        ("model.activate", "ana", "approver", "activated"),
        ("model.activate", "ana", "approver", "unchanged"),
    ]
    assert audit[0].reason == body["reason"]
    assert audit[0].diff == {"timeframe": "1h", "model_version": {"from": v1, "to": v2}}
    assert audit[0].request_id


def test_soft_and_hard_halts_block_entries_and_record_why(
    fresh_db: str, redis_client: RedisTestHandle, core_inputs: CoreInputs, helpers: Helpers
) -> None:
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    k = _first_entry(ci, s, i0)
    idx = ci.bars_a.index
    helpers.insert_bars(fresh_db, ci, s, i0)
    helpers.register_and_activate(fresh_db, ci.model_dir)
    with running(fresh_db, redis_client.url, redis_client.namespace) as app:
        app.wait_watermark(idx[i0 - 1])
        app.bus_call(lambda bus: bus.set_global_halt("soft", updated_by="ops"))
        helpers.insert_bars(fresh_db, ci, i0, k + 1)
        app.announce(idx[k])
        st = app.wait_watermark(idx[k])
        assert (st["flags_status"], st["global_halt"]) == ("ok", "soft")
        soft_rows = app.history()
        app.bus_call(lambda bus: bus.set_global_halt("hard", updated_by="ops"))
        helpers.insert_bars(fresh_db, ci, k + 1, k + 40)
        app.announce(idx[k + 39])
        app.wait_watermark(idx[k + 39])
        hard_rows = app.history()[len(soft_rows) :]
        app.bus_call(lambda bus: bus.set_global_halt("none", updated_by="ops"))
        helpers.insert_bars(fresh_db, ci, k + 40, k + 60)
        app.announce(idx[k + 59])
        app.wait_watermark(idx[k + 59])
        resumed = app.history()[len(soft_rows) + len(hard_rows) :]
    assert not any(r.action in ENTRY_ACTIONS for r in soft_rows + hard_rows)
    blocked = soft_rows[-1]
    assert pd.Timestamp(blocked.ts_utc) == idx[k]
    assert (blocked.action, blocked.payload["reason"]) == ("entry_blocked", "global_halt_soft")
    assert blocked.payload["side"] in ("LONG_SPREAD", "SHORT_SPREAD")
    assert {r.action for r in soft_rows[:-1]} <= {"none", "entry_blocked"}
    assert len(hard_rows) == 39
    assert {r.action for r in hard_rows} <= {"halted", "entry_blocked"}
    assert {r.payload["reason"] for r in hard_rows} == {"global_halt_hard"}
    assert len(resumed) == 20
    assert "halted" not in {r.action for r in resumed}


def test_unreadable_flags_mean_no_entries(
    fresh_db: str, private_redis: PrivateRedis, core_inputs: CoreInputs, helpers: Helpers
) -> None:
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    k = _first_entry(ci, s, i0)
    idx = ci.bars_a.index
    helpers.insert_bars(fresh_db, ci, s, i0)
    helpers.register_and_activate(fresh_db, ci.model_dir)
    with running(fresh_db, private_redis.url, "pdtest:private") as app:
        app.wait_watermark(idx[i0 - 1])
        private_redis.kill()
        helpers.insert_bars(fresh_db, ci, i0, k + 1)  # no notice can be sent: the loop polls
        st = app.wait_watermark(idx[k], published=False)
        assert st["flags_status"] == "unknown"
        assert st["subscribed"] is False
        assert st["pending_unpublished"] == k + 1 - i0
        assert app.client.get("/readyz").status_code == 503
        rows = app.history()
    assert len(rows) == k + 1 - i0
    assert not any(r.action in ENTRY_ACTIONS for r in rows)
    assert (rows[-1].action, rows[-1].payload["reason"]) == ("entry_blocked", "flags_unknown")
    assert {r.action for r in rows[:-1]} <= {"halted", "entry_blocked"}
    assert all(r.stream_id is None for r in rows)


def test_redis_restart_without_persistence_loses_no_signal(
    fresh_db: str, private_redis: PrivateRedis, core_inputs: CoreInputs, helpers: Helpers
) -> None:
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    idx = ci.bars_a.index
    ns = "pdtest:restart"
    helpers.insert_bars(fresh_db, ci, s, i0)
    helpers.register_and_activate(fresh_db, ci.model_dir)
    with running(fresh_db, private_redis.url, ns) as app:
        app.wait_watermark(idx[i0 - 1])
        helpers.insert_bars(fresh_db, ci, i0, i0 + 50)
        app.announce(idx[i0 + 49])
        app.wait_watermark(idx[i0 + 49])
        before = app.history()
        assert len(app.bus_call(lambda bus: bus.replay_signals())) == 50
        private_redis.kill()  # mid-stream: the next bars arrive while Redis is down
        helpers.insert_bars(fresh_db, ci, i0 + 50, i0 + 100)
        st = app.wait_watermark(idx[i0 + 99], published=False)
        assert st["pending_unpublished"] == 50
        private_redis.start()  # same port, empty: the 50 published entries are gone too
        app.wait(lambda st: st["pending_unpublished"] == 0 and st["subscribed"])
        after_restart = app.history()
        stream = app.bus_call(lambda bus: bus.replay_signals())
        helpers.insert_bars(fresh_db, ci, i0 + 100, i0 + 150)
        app.announce(idx[i0 + 149])
        app.wait_watermark(idx[i0 + 149])
        final = app.history()
        final_stream = app.bus_call(lambda bus: bus.replay_signals())
    assert [r.id for r in after_restart] == [r.id for r in before] + [
        r.id for r in after_restart[50:]
    ]
    assert len(after_restart) == 100
    # every stored signal is back in the stream, in order, with the id recorded in PostgreSQL
    assert [e.payload["signal_id"] for e in stream] == [r.id for r in after_restart]
    assert [e.id for e in stream] == [r.stream_id for r in after_restart]
    assert {r.action for r in after_restart[50:]} <= {"halted", "entry_blocked"}
    # inference resumed normally after the restart (flags readable again, nothing halted)
    assert len(final) == 150
    assert "halted" not in {r.action for r in final[100:]}
    assert [e.payload["signal_id"] for e in final_stream] == [r.id for r in final]
    assert all(r.stream_id for r in final)


def test_a_restart_rebuilds_the_position_and_catches_up(
    fresh_db: str, redis_client: RedisTestHandle, core_inputs: CoreInputs, helpers: Helpers
) -> None:
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    idx = ci.bars_a.index
    batch = ci.batch(s, len(ci.bars_a))
    (t_in, side), *_ = batch.entries(idx[i0])
    (t_out, reason), *_ = batch.exits(idx[i0])
    k, x = idx.get_loc(t_in), idx.get_loc(t_out)
    assert x > k + 5
    helpers.insert_bars(fresh_db, ci, s, i0)
    helpers.register_and_activate(fresh_db, ci.model_dir)
    ns = redis_client.namespace
    with running(fresh_db, redis_client.url, ns) as app:
        app.wait_watermark(idx[i0 - 1])
        helpers.insert_bars(fresh_db, ci, i0, k + 3)
        app.announce(idx[k + 2])
        app.wait_watermark(idx[k + 2])
        assert app.pair_status()["position"] == "open"
    # down while the trade is open; the bars up to its exit arrive meanwhile
    helpers.insert_bars(fresh_db, ci, k + 3, x + 5)
    with running(fresh_db, redis_client.url, ns, max_catchup_bars=500) as app:
        app.wait_watermark(idx[x + 4])
        rows = app.history()
    assert [pd.Timestamp(r.ts_utc) for r in rows] == list(idx[i0 : x + 5])  # no gap, no double
    enter = "enter_long_spread" if side > 0 else "enter_short_spread"
    assert [(pd.Timestamp(r.ts_utc), r.action) for r in rows if r.action in ENTRY_ACTIONS] == [
        (t_in, enter)
    ]
    exits = [(pd.Timestamp(r.ts_utc), r.payload["reason"]) for r in rows if r.action == "exit"]
    assert exits == [(t_out, reason)]  # the rebuilt position exits where the backtest does
    assert {r.action for r in rows[k + 3 - i0 : x - i0]} == {"hold"}
    # a longer outage: only the newest max_catchup_bars stored bars are emitted
    helpers.insert_bars(fresh_db, ci, x + 5, x + 25)
    with running(fresh_db, redis_client.url, ns, max_catchup_bars=5) as app:
        app.wait_watermark(idx[x + 24])
        later = app.history()[len(rows) :]
    assert [pd.Timestamp(r.ts_utc) for r in later] == list(idx[x + 20 : x + 25])


def test_a_lost_stream_tail_is_resent(
    fresh_db: str, redis_client: RedisTestHandle, core_inputs: CoreInputs, helpers: Helpers
) -> None:
    # Redis restarted from an append-only file that missed its last writes: the newest entries
    # are gone, the older ones are still there and must not be duplicated
    ci = core_inputs
    s, i0 = _window(ci, "2024-04-15")
    idx = ci.bars_a.index
    helpers.insert_bars(fresh_db, ci, s, i0)
    helpers.register_and_activate(fresh_db, ci.model_dir)
    with running(fresh_db, redis_client.url, redis_client.namespace) as app:
        app.wait_watermark(idx[i0 - 1])
        helpers.insert_bars(fresh_db, ci, i0, i0 + 30)
        app.announce(idx[i0 + 29])
        app.wait_watermark(idx[i0 + 29])
        stream = app.bus_call(lambda bus: bus.replay_signals())
        assert len(stream) == 30
        tail = [e.id for e in stream[-4:]]
        app.bus_call(lambda bus: bus.client.xdel(bus.names.signals_stream, *tail))
        helpers.insert_bars(fresh_db, ci, i0 + 30, i0 + 31)
        app.announce(idx[i0 + 30])
        app.wait_watermark(idx[i0 + 30])
        rows = app.history()
        after = app.bus_call(lambda bus: bus.replay_signals())
    assert [e.payload["signal_id"] for e in after] == [r.id for r in rows]
    assert [e.id for e in after] == [r.stream_id for r in rows]
    assert [e.id for e in after[:26]] == [e.id for e in stream[:26]]  # kept, not re-sent
    assert not set(tail) & {e.id for e in after}

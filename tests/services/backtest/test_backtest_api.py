"""Backtest service end to end: real PostgreSQL, real Redis, a real Celery worker, the real engine."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from pairdesk.backtest import repository as repo
from pairdesk.backtest.queue import RunPublisher, make_celery
from pairdesk.backtest.service import classify_failure, sweep_runs, trade_uuid
from pairdesk.common.db import create_engine, create_session_factory, session_scope
from pairdesk.common.models import BtRun, BtRunStatus
from pairdesk.research.config import REPO_ROOT
from pairdesk.research.pipeline import KPI_ROWS, run_backtest_cli
from pairdesk.research.store import StoreError
from sqlalchemy import select

from .conftest import BtEnv, wait_terminal

RUNS = "/api/v1/bt/runs"
PAIR = "XAUUSD_XAGUSD"

# Column scales of the tables (spec 004 §データディクショナリ): the API returns the stored value.
SUMMARY_SCALE = {
    "win_rate": 4,
    "e_per_trade": 8,
    "ann_return": 6,
    "sharpe": 6,
    "max_dd": 6,
    "calmar": 6,
    "trades_per_year": 4,
    "halt_rate": 4,
    "theta1": 4,
    "theta2": 4,
}
# bt_trades API field -> (CSV column, scale, transform)
TRADE_FIELDS: dict[str, tuple[str, int, Any]] = {
    "qty_a": ("qty_a", 6, abs),
    "qty_b": ("qty_b", 6, abs),
    "price_a": ("price_a_entry", 6, None),
    "price_b": ("price_b_entry", 6, None),
    "exit_price_a": ("price_a_exit", 6, None),
    "exit_price_b": ("price_b_exit", 6, None),
    "z_at_entry": ("z_at_entry", 5, None),
    "z_at_exit": ("z_at_exit", 5, None),
    "return_prob": ("return_prob", 4, None),
    "risk_score": ("risk_score", 4, None),
    "cost_commission": ("cost_commission", 6, None),
    "cost_slippage": ("cost_slippage", 6, None),
    "cost_spread": ("cost_spread", 6, None),
    "cost_swap": ("cost_swap", 6, None),
    "pnl": ("pnl", 6, None),
}
STAMPS = ("model_version", "feature_schema_hash", "data_hash", "code_hash", "params_hash")


def body(model: str, **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pair_ids": [PAIR],
        "period": "2024-01:2024-06",
        "timeframe": "1h",
        "model_version": model,
        "theta1": 0.05,
        "theta2": 0.45,
    }
    out.update(over)
    return out


def assert_stored(api: Any, engine_value: Any, scale: int, what: str) -> None:
    """The API value is the engine value rounded to the column's scale (NULL if not finite)."""
    ev = float(engine_value)
    if not math.isfinite(ev):
        assert api is None, what
        return
    assert isinstance(api, float), f"{what}: {api!r} is not a JSON number"
    assert abs(api - ev) <= 0.5 * 10.0**-scale + 1e-12 * max(1.0, abs(ev)), (what, api, ev)


def assert_ci(api: list[Any], low: float, high: float, what: str) -> None:
    for got, want in zip(api, (low, high), strict=True):
        if math.isfinite(want):
            assert got == want, what
        else:
            assert got is None, what


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------


def test_run_end_to_end_matches_engine_files(bt_worker: BtEnv, tmp_path: Path) -> None:
    env = bt_worker
    editor = env.token("editor")
    viewer = env.token("viewer", sub="victor")
    key = f"k-{secrets.token_hex(6)}"
    req = body(env.model_version)
    with env.client() as client:
        resp = client.post(RUNS, json=req, headers={**editor, "Idempotency-Key": key})
        assert resp.status_code == 202, resp.text
        run = resp.json()["data"]
        run_id = run["run_id"]
        assert run["status"] == "queued"
        assert run["requested_by"] == "alice"
        assert resp.headers["Location"] == f"{RUNS}/{run_id}"

        # Idempotency: same key + same body -> same run (200); different body -> 409.
        again = client.post(RUNS, json=req, headers={**editor, "Idempotency-Key": key})
        assert again.status_code == 200
        assert again.json()["data"]["run_id"] == run_id
        other = client.post(
            RUNS,
            json=body(env.model_version, theta1=0.1),
            headers={**editor, "Idempotency-Key": key},
        )
        assert other.status_code == 409
        assert other.json()["error"]["id"] == "BT_IDEMP_CONFLICT"
        by_other_user = client.post(
            RUNS, json=req, headers={**env.token("editor", sub="bob"), "Idempotency-Key": key}
        )
        assert by_other_user.status_code == 409

        done = wait_terminal(client, run_id, viewer)
        assert done["status"] == "succeeded", done
        assert done["error_id"] is None
        assert done["started_at"] <= done["finished_at"]

        out = env.out_dir / run_id
        files = {
            n: pd.read_csv(out / f"{n}.csv") for n in ("bt_summary", "bt_trades", "bt_daily_equity")
        }
        s_csv = files["bt_summary"].iloc[0]
        assert s_csv["run_id"] == run_id  # the engine stamped the service's run id
        for k in STAMPS:
            assert done[k] == s_csv[k], k
        assert done["seed"] == int(s_csv["seed"])

        # --- summary: KPI columns + CIs equal the engine's file
        summary = client.get("/api/v1/bt/summary", params={"run_id": run_id}, headers=viewer)
        assert summary.status_code == 200, summary.text
        rows = summary.json()["data"]
        assert len(rows) == 1
        row = rows[0]
        assert row["pair_id"] == PAIR
        assert row["period"] == "2024-01-01:2024-06-30"
        assert row["trades"] == int(s_csv["trades"]) > 0
        for col, scale in SUMMARY_SCALE.items():
            assert_stored(row[col], s_csv[col], scale, col)
        assert_stored(row["pnl_std"], s_csv["pnl_sigma"], 6, "pnl_std")
        assert set(row["ci"]) == {k for k, _ in KPI_ROWS}
        for kpi, _ in KPI_ROWS:
            assert_ci(row["ci"][kpi], s_csv[f"{kpi}_ci_low"], s_csv[f"{kpi}_ci_high"], kpi)
        for k in STAMPS:
            assert row[k] == s_csv[k]

        # --- trades: every page, every column
        t_csv = files["bt_trades"]
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = client.get(
                "/api/v1/bt/trades",
                params={"run_id": run_id, "limit": 2, "offset": offset},
                headers=viewer,
            ).json()["data"]
            assert page["total"] == len(t_csv)
            assert page["limit"] == 2
            items.extend(page["items"])
            offset += 2
            if offset >= page["total"]:
                break
        assert len(items) == len(t_csv) == len({t["trade_id"] for t in items})
        for api_row, (_, csv_row) in zip(items, t_csv.iterrows(), strict=True):
            assert api_row["trade_id"] == trade_uuid(run_id, PAIR, int(csv_row["trade_id"]))
            assert api_row["side"] == csv_row["side"]
            assert api_row["exit_reason"] == csv_row["exit_reason"]
            assert pd.Timestamp(api_row["timestamp_entry"]) == pd.Timestamp(
                csv_row["timestamp_entry"]
            )
            assert pd.Timestamp(api_row["timestamp_exit"]) == pd.Timestamp(
                csv_row["timestamp_exit"]
            )
            for field, (col, scale, fn) in TRADE_FIELDS.items():
                value = csv_row[col] if fn is None else fn(csv_row[col])
                assert_stored(api_row[field], value, scale, field)
            assert api_row["run_id"] == run_id
            assert api_row["seed"] == int(csv_row["seed"])
        by_pair = client.get(
            "/api/v1/bt/trades", params={"run_id": run_id, "pair_id": "NOPE"}, headers=viewer
        )
        assert by_pair.json()["data"]["total"] == 0

        # --- daily equity
        e_csv = files["bt_daily_equity"]
        equity = client.get("/api/v1/bt/equity", params={"run_id": run_id}, headers=viewer)
        eq = equity.json()["data"]
        assert len(eq) == len(e_csv) > 100
        for api_row, (_, csv_row) in zip(eq, e_csv.iterrows(), strict=True):
            assert api_row["date"] == str(csv_row["date"])
            assert_stored(api_row["equity"], csv_row["equity"], 6, "equity")
            assert_stored(api_row["dd"], csv_row["dd"], 6, "dd")

        # --- list
        listed = client.get(RUNS, params={"status": "succeeded", "limit": 100}, headers=viewer)
        assert run_id in {r["run_id"] for r in listed.json()["data"]["items"]}

    # The same inputs through the engine directly give the same numbers (only run_id differs).
    direct = tmp_path / "direct"
    run_backtest_cli(
        universe=REPO_ROOT / "config" / "universe.yaml",
        period="2024-01:2024-06",
        timeframe="1h",
        model_dir=env.model_dir,
        cost=REPO_ROOT / "config" / "cost_table.yaml",
        store=env.store,
        out=direct,
        theta1=0.05,
        theta2=0.45,
        latency_bars=None,
        pair_ids=[PAIR],
    )
    for name, df in files.items():
        mine = pd.read_csv(direct / f"{name}.csv")
        assert (mine["run_id"] != run_id).all()
        pd.testing.assert_frame_equal(df.drop(columns="run_id"), mine.drop(columns="run_id"))


def test_failed_runs_carry_error_ids(bt_worker: BtEnv) -> None:
    env = bt_worker
    editor = env.token("editor")
    with env.client() as client:
        cases = {
            "2019-01:2019-06": "BT_DATA_NODATA",  # nothing stored before 2021-10
            "2024-07:2024-08": "BT_DATA_FEWBARS",  # warm-up bars only, none in the period
        }
        ids = {}
        for period in cases:
            resp = client.post(RUNS, json=body(env.model_version, period=period), headers=editor)
            assert resp.status_code == 202, resp.text
            ids[period] = resp.json()["data"]["run_id"]
        for period, eid in cases.items():
            done = wait_terminal(client, ids[period], editor)
            assert done["status"] == "failed"
            assert done["error_id"] == eid, done
            assert done["finished_at"] is not None
            msg = done["error_message"]
            assert period in msg
            assert "/" not in msg
            summary = client.get(
                "/api/v1/bt/summary", params={"run_id": ids[period]}, headers=editor
            )
            assert summary.status_code == 409
            err = summary.json()["error"]
            assert err["id"] == "BT_RUN_NOTREADY"
            assert err["details"]["error_id"] == eid


# --------------------------------------------------------------------------------------------
# validation and auth (no worker needed: nothing is executed)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "eid"),
    [
        ({"period": "2024-06:2024-01"}, 422, "BT_API_VALIDATION"),  # inverted
        ({"period": "2024-13:2024-14"}, 422, "BT_API_VALIDATION"),  # not a month
        ({"period": "last year"}, 422, "BT_API_VALIDATION"),
        ({"pair_ids": PAIR}, 422, "BT_API_VALIDATION"),  # wrong type
        ({"pair_ids": []}, 422, "BT_API_VALIDATION"),
        ({"pair_ids": [PAIR, PAIR]}, 422, "BT_API_VALIDATION"),
        ({"theta1": "0.05"}, 422, "BT_API_VALIDATION"),  # string, not a number
        ({"theta2": 1.5}, 422, "BT_API_VALIDATION"),
        ({"latency_bars": -1}, 422, "BT_API_VALIDATION"),
        ({"timeframe": "2h"}, 422, "BT_API_VALIDATION"),
        ({"universe": "/etc/passwd"}, 422, "BT_API_VALIDATION"),
        ({"universe": "config/../pyproject.yaml"}, 422, "BT_API_VALIDATION"),
        ({"surprise": 1}, 422, "BT_API_VALIDATION"),  # extra="forbid"
        ({"universe": "config/nope.yaml"}, 422, "BT_CONFIG_NOTFOUND"),
        ({"pair_ids": ["EURUSD_GBPUSD"]}, 422, "BT_PAIR_UNKNOWN"),
        ({"model_version": "no_such_model"}, 422, "BT_MODEL_NOTFOUND"),
        ({"timeframe": "4h"}, 422, "BT_MODEL_TIMEFRAME"),
    ],
)
def test_invalid_requests_are_refused_in_the_envelope(
    bt_env: BtEnv, payload: dict[str, Any], status: int, eid: str
) -> None:
    with bt_env.client() as client:
        before = client.get(RUNS, headers=bt_env.token("viewer")).json()["data"]["total"]
        resp = client.post(
            RUNS, json=body(bt_env.model_version, **payload), headers=bt_env.token("editor")
        )
        assert resp.status_code == status, resp.text
        out = resp.json()
        assert out["status"] == "error"
        assert out["data"] is None
        assert out["error"]["id"] == eid
        assert client.get(RUNS, headers=bt_env.token("viewer")).json()["data"]["total"] == before


def test_malformed_json_and_unknown_run(bt_env: BtEnv) -> None:
    editor = bt_env.token("editor")
    with bt_env.client() as client:
        bad = client.post(
            RUNS, content=b'{"pair_ids": [', headers={**editor, "Content-Type": "application/json"}
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["id"] == "BT_API_VALIDATION"
        assert bad.json()["error"]["message"] == "Malformed JSON body"
        bad_key = client.post(
            RUNS, json=body(bt_env.model_version), headers={**editor, "Idempotency-Key": "a b"}
        )
        assert bad_key.status_code == 422
        for path, params in (
            (f"{RUNS}/nope", None),
            ("/api/v1/bt/summary", {"run_id": "nope"}),
            ("/api/v1/bt/trades", {"run_id": "nope"}),
            ("/api/v1/bt/equity", {"run_id": "nope"}),
        ):
            resp = client.get(path, params=params, headers=editor)
            assert resp.status_code == 404, path
            assert resp.json()["error"]["id"] == "BT_RUN_NOTFOUND"
        assert client.get("/api/v1/bt/summary", headers=editor).status_code == 422


def test_rbac(bt_env: BtEnv) -> None:
    with bt_env.client() as client:
        viewer = client.post(RUNS, json=body(bt_env.model_version), headers=bt_env.token("viewer"))
        assert viewer.status_code == 403
        assert viewer.json()["error"]["id"] == "BT_AUTH_FORBIDDEN"
        anonymous = client.post(RUNS, json=body(bt_env.model_version))
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["id"] == "BT_AUTH_MISSING"
        assert client.get(RUNS).status_code == 401
        assert client.get(RUNS, headers={"Authorization": "Bearer x.y.z"}).status_code == 401
        assert client.get(RUNS, headers=bt_env.token("viewer")).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert "pairdesk_bt_runs_submitted_total" in client.get("/metrics").text


# --------------------------------------------------------------------------------------------
# recovery sweep
# --------------------------------------------------------------------------------------------


async def _insert(pg_url: str, run_id: str, status: BtRunStatus) -> None:
    engine = create_engine(pg_url, pool=False)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            session.add(
                BtRun(run_id=run_id, status=status, request={"pair_ids": [PAIR]}, requested_by="t")
            )
            await session.flush()
            if status == BtRunStatus.RUNNING:
                await session.execute(
                    BtRun.__table__.update()
                    .where(BtRun.run_id == run_id)
                    .values(started_at=BtRun.created_at)
                )
    finally:
        await engine.dispose()


def test_sweep_fails_orphans_keeps_live_runs_and_requeues_lost_messages(bt_env: BtEnv) -> None:
    ids = {name: f"sweep-{name}-{secrets.token_hex(4)}" for name in ("orphan", "live", "queued")}
    asyncio.run(_insert(bt_env.pg_url, ids["orphan"], BtRunStatus.RUNNING))
    asyncio.run(_insert(bt_env.pg_url, ids["live"], BtRunStatus.RUNNING))
    asyncio.run(_insert(bt_env.pg_url, ids["queued"], BtRunStatus.QUEUED))
    queue = f"bt-nobody-{secrets.token_hex(4)}"  # no worker consumes it: the message stays
    bt = bt_env.bt_settings(bt_queue=queue)
    publisher = RunPublisher(make_celery(bt_env.settings(), bt), queue=queue, timeout_s=5)

    async def scenario() -> tuple[Any, Any, dict[str, BtRun]]:
        engine = create_engine(bt_env.pg_url, pool=False)
        sessions = create_session_factory(engine)
        try:
            # A live worker holds the lock of "live" on its own connection.
            async with engine.connect() as worker_conn:
                assert await repo.try_hold_run_lock(worker_conn, ids["live"])
                first = await sweep_runs(sessions, requeue_after_s=0, publish=publisher)
                second = await sweep_runs(sessions, requeue_after_s=3600, publish=publisher)
                await repo.release_run_lock(worker_conn, ids["live"])
            async with sessions() as session:
                rows = (
                    await session.scalars(select(BtRun).where(BtRun.run_id.in_(ids.values())))
                ).all()
            return first, second, {r.run_id: r for r in rows}
        finally:
            await engine.dispose()

    try:
        first, second, rows = asyncio.run(scenario())
    finally:
        publisher.close()
    assert ids["orphan"] in first.orphaned
    assert ids["live"] not in first.orphaned
    assert rows[ids["orphan"]].status == BtRunStatus.FAILED
    assert rows[ids["orphan"]].error_id == "BT_RUN_ORPHANED"
    assert rows[ids["live"]].status == BtRunStatus.RUNNING
    assert ids["queued"] in first.requeued
    assert ids["queued"] not in second.requeued
    assert rows[ids["queued"]].status == BtRunStatus.QUEUED
    # The republished task sits in the namespaced Redis queue with the run id as task id.
    client = redis.Redis.from_url(bt_env.redis_url)
    try:
        raw = client.lrange(f"{bt_env.namespace}:{queue}", 0, -1)
    finally:
        client.close()
    assert ids["queued"] in {json.loads(m)["headers"]["id"] for m in raw}


def test_classify_failure_gives_caller_safe_ids() -> None:
    req = {"pair_ids": [PAIR], "period": "2024-01:2024-06", "timeframe": "1h", "model_version": "m"}
    assert classify_failure(SoftTimeLimitExceeded(), req)[0] == "BT_RUN_TIMEOUT"
    eid, msg = classify_failure(StoreError("no usable 1h bars for XAUUSD under /srv/store"), req)
    assert eid == "BT_DATA_NODATA"
    assert "/srv" not in msg
    eid, msg = classify_failure(ValueError("X: fewer than 2 bars in 2024"), req)
    assert eid == "BT_DATA_FEWBARS"
    eid, msg = classify_failure(RuntimeError("boom at /secret/path"), req)
    assert eid == "BT_RUN_FAILED"
    assert "/secret" not in msg


def test_in_sample_period_fails_the_run_with_its_own_id(bt_worker: BtEnv, tmp_path: Path) -> None:
    """The engine's honesty guard: a period overlapping the model's training period (2022-01 →
    2023-12-29, widened by M = 48 bars) is refused; the service never runs in-sample."""
    env = bt_worker
    editor = env.token("editor")
    with env.client() as client:
        resp = client.post(
            RUNS, json=body(env.model_version, period="2023-10:2024-01"), headers=editor
        )
        assert resp.status_code == 202, resp.text
        done = wait_terminal(client, resp.json()["data"]["run_id"], editor)
    assert done["status"] == "failed"
    assert done["error_id"] == "BT_PERIOD_INSAMPLE"
    assert "training period" in done["error_message"]
    assert str(env.store) not in done["error_message"]
    with pytest.raises(ValueError, match="overlaps the model's training period") as exc:
        run_backtest_cli(
            universe=REPO_ROOT / "config" / "universe.yaml",
            period="2023-12-31:2024-06-30",
            timeframe="1h",
            model_dir=env.model_dir,
            cost=REPO_ROOT / "config" / "cost_table.yaml",
            store=env.store,
            out=tmp_path / "never",
            theta1=None,
            theta2=None,
            latency_bars=None,
            pair_ids=[PAIR],
        )
    assert (
        classify_failure(exc.value, {"period": "2023-12-31:2024-06-30"})[0] == "BT_PERIOD_INSAMPLE"
    )
    assert not (tmp_path / "never").exists()

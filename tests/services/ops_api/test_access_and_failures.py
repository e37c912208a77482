"""RBAC, request validation and dependency failures of ops_api (real servers, closed ports)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pairdesk.common.bus import HaltLevel
from pairdesk.ops_api.main import create_app

PAIR = "XAUUSD_XAGUSD"
HALT = {"scope": "portfolio", "level": "soft", "reason": "DD_WARN reached"}
RESUME = {"scope": "portfolio", "reason": "recovered", "checklist_url": "https://wiki.example/c"}
CLOSED_PORT = "127.0.0.1:1"  # loopback port 1 refuses connections at once


def test_viewer_cannot_halt(client, auth, redis_view) -> None:
    response = client.post("/api/v1/ops/halt", json=HALT, headers=auth("viewer"))
    assert response.status_code == 403
    assert response.json()["error"]["id"] == "OPS_AUTH_FORBIDDEN"
    assert redis_view.flags().global_halt is HaltLevel.NONE


def test_editor_cannot_resume_or_rollback(client, auth) -> None:
    editor = auth("editor")
    resume = client.post("/api/v1/ops/resume", json=RESUME, headers=editor)
    assert resume.status_code == 403
    assert resume.json()["error"]["id"] == "OPS_AUTH_FORBIDDEN"
    rollback = client.post(
        "/api/v1/ops/rollback",
        json={"target": "model", "version": "m1", "reason": "KPI drop"},
        headers=editor,
    )
    assert rollback.status_code == 403


def test_token_required_and_viewer_reads(client, auth) -> None:
    missing = client.post("/api/v1/ops/halt", json=HALT)
    assert missing.status_code == 401
    assert missing.json()["error"]["id"] == "OPS_AUTH_MISSING"
    assert client.get("/api/v1/ops/state").status_code == 401
    bad = client.get("/api/v1/ops/state", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert client.get("/api/v1/ops/state", headers=auth("viewer")).status_code == 200
    assert client.get("/api/v1/ops/actions", headers=auth("viewer")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {**HALT, "scope": "desk"},
        {**HALT, "scope": "pair"},
        {**HALT, "pair_id": PAIR},
        {**HALT, "level": "medium"},
        {**HALT, "reason": ""},
        {**HALT, "levle": "hard"},
        {"scope": "portfolio", "reason": "no level"},
    ],
    ids=[
        "bad-scope",
        "pair-without-pair-id",
        "portfolio-with-pair-id",
        "bad-level",
        "empty-reason",
        "unknown-field",
        "missing-level",
    ],
)
def test_halt_validation_422(client, auth, redis_view, body) -> None:
    response = client.post("/api/v1/ops/halt", json=body, headers=auth("editor"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["id"] == "OPS_API_VALIDATION"
    assert redis_view.flags().global_halt is HaltLevel.NONE


def test_unknown_pair_422(client, auth) -> None:
    response = client.post(
        "/api/v1/ops/halt",
        json={**HALT, "scope": "pair", "pair_id": "EURUSD_GBPUSD"},
        headers=auth("editor"),
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["id"] == "OPS_PAIR_UNKNOWN"
    assert error["details"]["universe"] == [PAIR]


def test_malformed_json_422(client, auth) -> None:
    response = client.post(
        "/api/v1/ops/halt",
        content=b'{"scope": "portfolio", "level": ',
        headers={**auth("editor"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "id": "OPS_API_VALIDATION",
        "message": "Malformed JSON body",
        "details": response.json()["error"]["details"],
    }


def test_resume_validation_422(client, auth) -> None:
    approver = auth("approver")
    bad_url = client.post(
        "/api/v1/ops/resume", json={**RESUME, "checklist_url": "not a url"}, headers=approver
    )
    assert bad_url.status_code == 422
    no_pair = client.post("/api/v1/ops/resume", json={**RESUME, "scope": "pair"}, headers=approver)
    assert no_pair.status_code == 422


def test_redis_down_halt_is_503_and_audited_as_failed(
    settings_factory, ops_pg_url, auth, sql
) -> None:
    settings = settings_factory(ops_pg_url, f"redis://{CLOSED_PORT}/0", "pdtest:down")
    with TestClient(create_app(settings)) as down:
        response = down.post(
            "/api/v1/ops/halt",
            json=HALT,
            headers={**auth("editor"), "X-Request-ID": "req-halt-redis-down"},
        )
        state = down.get("/api/v1/ops/state", headers=auth("viewer"))
        actions = down.get("/api/v1/ops/actions", headers=auth("viewer"))
    assert state.status_code == 503
    assert state.json()["error"]["id"] == "OPS_BUS_UNAVAIL"
    assert actions.status_code == 200  # the audit trail only needs PostgreSQL
    assert response.status_code == 503
    assert response.json()["error"]["id"] == "OPS_BUS_UNAVAIL"
    (row,) = sql("SELECT * FROM audit.analytics_actions WHERE request_id = 'req-halt-redis-down'")
    assert (row["action"], row["result"]) == ("ops.halt", "failed")
    assert row["diff"]["error_id"] == "OPS_BUS_UNAVAIL"
    (incident,) = sql(
        "SELECT * FROM incident_logs WHERE (details->>'action_id')::bigint = :id", id=row["id"]
    )
    assert incident["error_id"] == "OPS_BUS_UNAVAIL"
    assert incident["level"] == "soft_halt"


def test_postgres_down_halt_stays_in_force(
    settings_factory, redis_client, auth, redis_view
) -> None:
    """A halt is never blocked by the database: flags written, 503 says the audit failed."""
    settings = settings_factory(
        f"postgresql://postgres@{CLOSED_PORT}/x", redis_client.url, redis_client.namespace
    )
    with TestClient(create_app(settings)) as no_db:
        response = no_db.post(
            "/api/v1/ops/halt", json={**HALT, "level": "hard"}, headers=auth("editor")
        )
        rollback = no_db.post(
            "/api/v1/ops/rollback",
            json={"target": "model", "version": "m1", "reason": "KPI drop"},
            headers=auth("approver"),
        )
        actions = no_db.get("/api/v1/ops/actions", headers=auth("viewer"))
    assert rollback.status_code == 503
    assert rollback.json()["error"]["id"] == "OPS_DB_UNAVAIL"
    assert actions.status_code == 503
    assert actions.json()["error"]["id"] == "OPS_DB_UNAVAIL"
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["id"] == "OPS_AUDIT_UNAVAIL"
    assert error["details"]["applied"] is True
    assert error["details"]["state"]["global_halt"] == "hard"
    assert redis_view.flags().global_halt is HaltLevel.HARD


def test_invalid_flags_hash_refuses_resume_and_is_repaired_by_a_halt(
    client, auth, redis_client, redis_view
) -> None:
    async def corrupt() -> None:
        async with redis_client.client() as c:
            await c.hset(f"{redis_client.namespace}:core:ops:flags", "global_halt", "maybe")

    asyncio.run(corrupt())
    now = datetime.now(UTC)
    redis_view.set_metrics(
        PAIR,
        {
            "as_of": (now - timedelta(hours=1)).isoformat(),
            "dd": 0.01,
            "days_below_dd_warn": 30,
            "corr": 0.9,
            "updated_at": now.isoformat(),
        },
    )
    resume = client.post("/api/v1/ops/resume", json=RESUME, headers=auth("approver"))
    assert resume.status_code == 503
    assert resume.json()["error"]["id"] == "OPS_BUS_INVALID"
    state = client.get("/api/v1/ops/state", headers=auth("viewer"))
    assert state.status_code == 503
    assert state.json()["error"]["id"] == "OPS_BUS_INVALID"

    response = client.post("/api/v1/ops/halt", json=HALT, headers=auth("editor"))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["after"]["global_halt"] == "soft"
    assert redis_view.flags().global_halt is HaltLevel.SOFT

"""ops_api halt and flatten against real PostgreSQL and Redis (spec 004 §運用Runbook 停止レベル)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from pairdesk.common.auth import create_token
from pairdesk.common.bus import HaltLevel, SignalBus
from pairdesk.common.settings import Settings
from pairdesk.common.testing import RedisTestHandle
from pairdesk.ops_api.main import create_app

PAIR = "XAUUSD_XAGUSD"


def _halt(client: Any, headers: dict[str, str], **body: Any) -> httpx.Response:
    payload = {"scope": "portfolio", "level": "soft", "reason": "DD_WARN reached", **body}
    response: httpx.Response = client.post("/api/v1/ops/halt", json=payload, headers=headers)
    return response


def test_portfolio_halt_writes_flags_audit_and_incident(client, auth, redis_view, sql) -> None:
    response = client.post(
        "/api/v1/ops/halt",
        json={
            "scope": "portfolio",
            "level": "soft",
            "reason": "portfolio DD 8.3% >= DD_WARN",
            "attachments": ["https://grafana.example/d/ops?from=now-6h"],
        },
        headers={**auth("editor"), "X-Request-ID": "req-halt-1"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["request_id"] == "req-halt-1"
    data = body["data"]
    assert data["action"] == "ops.halt"
    assert data["level"] == "soft"
    assert data["pair_ids"] == [PAIR]
    assert data["before"]["global_halt"] == "none"
    assert data["after"]["global_halt"] == "soft"
    assert data["after"]["updated_by"] == "editor-1"

    flags = redis_view.flags()
    assert flags.global_halt is HaltLevel.SOFT
    assert flags.updated_by == "editor-1"

    (action,) = sql("SELECT * FROM audit.analytics_actions WHERE id = :id", id=data["action_id"])
    assert action["action"] == "ops.halt"
    assert action["result"] == "applied"
    assert action["actor"] == "editor-1"
    assert action["actor_role"] == "editor"
    assert action["scope"] == "portfolio"
    assert action["pair_id"] is None
    assert action["request_id"] == "req-halt-1"
    assert action["reason"] == "portfolio DD 8.3% >= DD_WARN"
    assert action["diff"]["before"]["global_halt"] == "none"
    assert action["diff"]["after"]["global_halt"] == "soft"
    assert action["diff"]["level"] == "soft"

    (incident,) = sql("SELECT * FROM incident_logs WHERE id = :id", id=data["incident_id"])
    assert incident["level"] == "soft_halt"
    assert incident["recorded_by"] == "editor-1"
    assert incident["scope"] == "portfolio"
    assert incident["attachments"] == ["https://grafana.example/d/ops?from=now-6h"]
    assert incident["details"]["action_id"] == data["action_id"]
    assert incident["error_id"] is None


def test_halt_escalates_but_never_lowers(client, auth, redis_view) -> None:
    editor = auth("editor")
    assert _halt(client, editor, level="soft").json()["data"]["level"] == "soft"
    hard = _halt(client, editor, level="hard").json()["data"]
    assert (hard["before"]["global_halt"], hard["after"]["global_halt"]) == ("soft", "hard")
    again = _halt(client, editor, level="soft").json()["data"]
    assert again["level"] == "hard"  # a soft halt does not loosen a hard one
    assert redis_view.flags().global_halt is HaltLevel.HARD


def test_pair_halt_adds_the_pair_only(client, auth, redis_view, sql) -> None:
    response = _halt(client, auth("editor"), scope="pair", pair_id=PAIR, level="hard")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["after"]["halted_pairs"] == [PAIR]
    assert data["after"]["global_halt"] == "none"
    flags = redis_view.flags()
    assert flags.halted_pairs == {PAIR}
    assert flags.global_halt is HaltLevel.NONE
    (incident,) = sql("SELECT * FROM incident_logs WHERE id = :id", id=data["incident_id"])
    assert (incident["level"], incident["scope"], incident["pair_id"]) == (
        "hard_halt",
        "pair",
        PAIR,
    )


def test_flatten_pair_and_portfolio(client, auth, redis_view, sql) -> None:
    editor = auth("editor")
    response = client.post(
        "/api/v1/ops/flatten",
        json={"scope": "pair", "pair_id": PAIR, "mode": "graceful", "reason": "DD_FLATTEN_PAIR"},
        headers=editor,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["mode"] == "graceful"
    assert data["after"]["flatten_pairs"] == [PAIR]
    assert data["after"]["halted_pairs"] == [PAIR]  # no new entries while flattening
    flags = redis_view.flags()
    assert flags.flatten_pairs == {PAIR}
    assert flags.halted_pairs == {PAIR}
    (incident,) = sql("SELECT * FROM incident_logs WHERE id = :id", id=data["incident_id"])
    assert incident["level"] == "flatten"
    assert incident["details"]["mode"] == "graceful"
    (action,) = sql("SELECT * FROM audit.analytics_actions WHERE id = :id", id=data["action_id"])
    assert action["action"] == "ops.flatten"
    assert action["diff"]["mode"] == "graceful"
    assert action["diff"]["before"]["flatten_pairs"] == []
    assert action["diff"]["after"]["flatten_pairs"] == [PAIR]

    whole = client.post(
        "/api/v1/ops/flatten",
        json={"scope": "portfolio", "mode": "immediate", "reason": "DD_FLATTEN portfolio"},
        headers=editor,
    )
    assert whole.status_code == 200, whole.text
    assert whole.json()["data"]["pair_ids"] == [PAIR]  # every universe pair
    assert whole.json()["data"]["mode"] == "immediate"


def test_halt_is_announced_to_flag_subscribers(
    settings: Settings, redis_client: RedisTestHandle
) -> None:
    """A subscriber of ``core:ops:flags:changed`` sees each halt (timing: benchmarks/ops_halt.py)."""
    token = create_token("editor-1", "editor", settings)

    async def run() -> list[str]:
        app = create_app(settings)
        seen: list[str] = []
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ops"
            ) as http,
            redis_client.client() as redis,
        ):
            bus = SignalBus(redis, namespace=redis_client.namespace)
            async with bus.subscribe_flags() as sub:
                for level in ("soft", "hard"):
                    post = asyncio.create_task(
                        http.post(
                            "/api/v1/ops/halt",
                            json={"scope": "portfolio", "level": level, "reason": "test halt"},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    )
                    message = await sub.get(timeout_s=5.0)
                    response = await post
                    assert response.status_code == 200, response.text
                    assert message is not None
                    assert message.updated_by == "editor-1"
                    seen.append(message.global_halt.value)
        return seen

    assert asyncio.run(run()) == ["soft", "hard"]

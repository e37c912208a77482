"""Rollback (model, θ, config) on real registered bundles; state and the audit trail."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pairdesk.common.db import create_engine, create_session_factory, session_scope
from pairdesk.common.registry import activate_model, register_model

PAIR = "XAUUSD_XAGUSD"
THETA_B = {"theta1": 0.62, "theta2": 0.4}


def _copy_bundle(src: Path, dest: Path, version: str, theta: dict[str, float] | None) -> Path:
    """A second real bundle: the trained one under another model_version (and θ)."""
    shutil.copytree(src, dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["model_version"] = version
    if theta is not None:
        params["theta"] = theta
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def _db(url: str, work: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url, pool=False)
        try:
            async with session_scope(create_session_factory(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def models(
    trained_bundle: dict[str, Path], ops_pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Two registered versions of the real trained bundle: ``a`` (trained θ) and ``b``."""
    root = tmp_path_factory.mktemp("ops_models")
    tag = secrets.token_hex(3)
    names = {"a": f"ops_a_{tag}", "b": f"ops_b_{tag}"}
    dirs = {
        "a": _copy_bundle(trained_bundle["models"], root / names["a"], names["a"], None),
        "b": _copy_bundle(trained_bundle["models"], root / names["b"], names["b"], THETA_B),
    }

    async def register(session: Any) -> None:
        for key in ("a", "b"):
            await register_model(session, dirs[key], registered_by="tests")

    _db(ops_pg_url, register)
    return names


def _activate(url: str, version: str) -> None:
    async def work(session: Any) -> None:
        await activate_model(session, version, activated_by="deploy")

    _db(url, work)


def _rollback(client: Any, headers: dict[str, str], **body: Any) -> Any:
    return client.post(
        "/api/v1/ops/rollback", json={"reason": "Sharpe -25% vs previous", **body}, headers=headers
    )


def test_model_rollback_reactivates_the_named_version(
    client, auth, sql, ops_pg_url, models
) -> None:
    _activate(ops_pg_url, models["b"])
    response = _rollback(
        client,
        {**auth("approver"), "X-Request-ID": "req-rollback-model"},
        target="model",
        version=models["a"],
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["target"] == "model"
    assert data["timeframe"] == "1h"
    assert data["active_model"]["model_version"] == models["a"]
    assert data["active_model"]["status"] == "active"
    assert data["active_model"]["activated_by"] == "approver-1"
    assert data["previous_model"]["model_version"] == models["b"]
    assert data["previous_model"]["status"] == "rolled_back"

    rows = sql(
        "SELECT model_version, status FROM model_registry WHERE model_version IN (:a, :b)",
        a=models["a"],
        b=models["b"],
    )
    assert {r["model_version"]: r["status"] for r in rows} == {
        models["a"]: "active",
        models["b"]: "rolled_back",
    }
    (audit,) = sql("SELECT * FROM audit.analytics_actions WHERE request_id = 'req-rollback-model'")
    assert (audit["action"], audit["scope"], audit["result"]) == (
        "ops.rollback",
        "model",
        "applied",
    )
    assert audit["diff"]["before"]["active_model"]["model_version"] == models["b"]
    assert audit["diff"]["after"]["active_model"]["model_version"] == models["a"]


def test_theta_rollback_writes_the_override(client, auth, redis_view, ops_pg_url, models) -> None:
    _activate(ops_pg_url, models["a"])
    response = _rollback(client, auth("approver"), target="theta", version=models["b"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    override = data["theta_override"]
    assert (override["theta1"], override["theta2"]) == (0.62, 0.4)
    assert override["source_model_version"] == models["b"]
    assert override["applies_to_model_version"] == models["a"]
    assert override["in_effect"] is True
    assert data["active_model"]["model_version"] == models["a"]

    stored = json.loads(redis_view.hgetall("core:ops:theta")["1h"])
    assert stored["theta1"] == 0.62
    assert stored["applies_to_model_version"] == models["a"]
    assert stored["set_by"] == "approver-1"

    state = client.get("/api/v1/ops/state", headers=auth("viewer")).json()["data"]
    (shown,) = state["theta_overrides"]
    assert shown["in_effect"] is True
    assert state["recent_actions"][0]["action"] == "ops.rollback"
    assert state["recent_actions"][0]["scope"] == "theta"

    # another model becoming active voids the override
    _activate(ops_pg_url, models["b"])
    state = client.get("/api/v1/ops/state", headers=auth("viewer")).json()["data"]
    assert state["theta_overrides"][0]["in_effect"] is False
    assert [m["model_version"] for m in state["active_models"]] == [models["b"]]


def test_rollback_refusals(client, auth) -> None:
    approver = auth("approver")
    unknown = _rollback(client, approver, target="model", version="no_such_model")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["id"] == "OPS_ROLLBACK_NOTFOUND"
    unknown_theta = _rollback(client, approver, target="theta", version="no_such_model")
    assert unknown_theta.status_code == 404
    config = _rollback(client, approver, target="config", version="20240628_1200_abc123")
    assert config.status_code == 409
    error = config.json()["error"]
    assert error["id"] == "OPS_ROLLBACK_UNSUPPORT"
    assert "config_api" in error["message"]
    bad = _rollback(client, approver, target="weights", version="x")
    assert bad.status_code == 422


def test_state_and_paged_actions(client, auth, redis_view) -> None:
    editor = auth("editor")
    for level in ("soft", "hard"):
        r = client.post(
            "/api/v1/ops/halt",
            json={"scope": "portfolio", "level": level, "reason": f"state test {level}"},
            headers=editor,
        )
        assert r.status_code == 200
    r = client.post(
        "/api/v1/ops/flatten",
        json={"scope": "pair", "pair_id": PAIR, "mode": "graceful", "reason": "state test flat"},
        headers=editor,
    )
    assert r.status_code == 200
    redis_view.set_metrics(
        PAIR,
        {
            "as_of": "2024-06-28T20:00:00Z",
            "dd": 0.05,
            "days_below_dd_warn": 4,
            "corr": 0.7,
            "updated_at": "2024-06-28T20:00:05Z",
        },
    )

    response = client.get("/api/v1/ops/state?actions=3", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    state = response.json()["data"]
    assert state["flags"]["global_halt"] == "hard"
    assert state["flags"]["flatten_pairs"] == [PAIR]
    assert state["flags"]["halted_pairs"] == [PAIR]
    assert state["flags"]["updated_by"] == "editor-1"
    assert state["universe"] == [PAIR]
    (m,) = state["pair_metrics"]
    assert (m["pair_id"], m["status"], m["dd"], m["days_below_dd_warn"]) == (PAIR, "stale", 0.05, 4)
    assert state["policy"]["stability_days"] == 10
    assert state["policy"]["corr_threshold"] == 0.65
    assert state["policy"]["dd_warn"] == 0.08
    assert [a["reason"] for a in state["recent_actions"]] == [
        "state test flat",
        "state test hard",
        "state test soft",
    ]

    first = client.get("/api/v1/ops/actions?limit=2&offset=0", headers=auth("viewer")).json()
    second = client.get("/api/v1/ops/actions?limit=2&offset=2", headers=auth("viewer")).json()
    page1, page2 = first["data"], second["data"]
    assert page1["limit"] == 2
    assert page2["offset"] == 2
    assert page1["total"] == page2["total"] >= 3
    ids = [a["id"] for a in page1["items"] + page2["items"]]
    assert len(ids) == len(set(ids)) == min(4, page1["total"])
    assert all(a["action"].startswith("ops.") for a in page1["items"] + page2["items"])
    assert page1["items"][0]["reason"] == "state test flat"
    bad = client.get("/api/v1/ops/actions?limit=0", headers=auth("viewer"))
    assert bad.status_code == 422

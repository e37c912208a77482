"""Guarded resume (spec 004 §運用Runbook 再開手順) on live metrics written with set_pair_metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pairdesk.common.bus import HaltLevel, OpsFlags
from pairdesk.common.settings import Settings
from pairdesk.ops_api.main import create_app
from pairdesk.ops_api.settings import OpsSettings

PAIR = "XAUUSD_XAGUSD"
CHECKLIST = "https://wiki.example/runbook/resume-2024-06-28"


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def metrics(**override: Any) -> dict[str, Any]:
    """Metrics in core_inference's contract that satisfy every default guard."""
    now = datetime.now(UTC)
    body = {
        "as_of": _rfc3339(now - timedelta(hours=1)),
        "dd": 0.021,
        "days_below_dd_warn": 12,
        "corr": 0.81,
        "updated_at": _rfc3339(now),
    }
    body.update(override)
    return body


def _resume(client: Any, headers: dict[str, str], **body: Any) -> Any:
    payload = {
        "scope": "portfolio",
        "reason": "DD recovered, checklist done",
        "checklist_url": CHECKLIST,
        **body,
    }
    return client.post("/api/v1/ops/resume", json=payload, headers=headers)


def _halted(redis_view: Any) -> OpsFlags:
    return redis_view.set_flags(
        OpsFlags(
            global_halt=HaltLevel.HARD,
            halted_pairs=frozenset({PAIR}),
            flatten_pairs=frozenset({PAIR}),
            leverage_scale=0.5,
        )
    )


def _failed(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["id"] == "OPS_RESUME_GUARD"
    return {g["guard"]: g for g in error["details"]["failed_guards"]}


def test_resume_refused_without_metrics(client, auth, redis_view, sql) -> None:
    before = _halted(redis_view)
    response = _resume(client, {**auth("approver"), "X-Request-ID": "req-resume-nometrics"})
    failed = _failed(response)
    assert set(failed) == {"metrics_available"}
    guard = failed["metrics_available"]
    assert guard["pair_id"] == PAIR
    assert guard["observed"] is None
    assert guard["threshold"] == {"max_age_s": 259200.0}
    # nothing changed, and the refusal is audited
    assert redis_view.flags() == before
    (row,) = sql("SELECT * FROM audit.analytics_actions WHERE request_id = 'req-resume-nometrics'")
    assert (row["action"], row["result"], row["actor_role"]) == (
        "ops.resume",
        "refused",
        "approver",
    )
    assert row["diff"]["failed_guards"][0]["guard"] == "metrics_available"


@pytest.mark.parametrize(
    ("override", "guard", "observed", "threshold"),
    [
        ({"days_below_dd_warn": 3}, "stability_days", 3, 10),
        ({"corr": 0.41}, "corr_threshold", 0.41, 0.65),
        ({"dd": 0.093, "days_below_dd_warn": 0}, "dd_below_warn", 0.093, 0.08),
    ],
    ids=["dd-too-recent", "corr-too-low", "dd-above-warn"],
)
def test_resume_refused_names_the_failing_guard(
    client, auth, redis_view, override, guard, observed, threshold
) -> None:
    before = _halted(redis_view)
    redis_view.set_metrics(PAIR, metrics(**override))
    failed = _failed(_resume(client, auth("approver")))
    assert guard in failed
    assert failed[guard]["observed"] == observed
    assert failed[guard]["threshold"] == threshold
    assert failed[guard]["pair_id"] == PAIR
    assert "metrics_available" not in failed
    assert redis_view.flags() == before


def test_resume_refused_on_stale_metrics(client, auth, redis_view) -> None:
    _halted(redis_view)
    stale = datetime.now(UTC) - timedelta(days=5)
    redis_view.set_metrics(PAIR, metrics(as_of=_rfc3339(stale)))
    failed = _failed(_resume(client, auth("approver")))
    assert set(failed) == {"metrics_available"}
    observed = failed["metrics_available"]["observed"]
    assert observed["status"] == "stale"
    assert observed["age_s"] == pytest.approx(5 * 86400, abs=60)
    assert "old" in failed["metrics_available"]["message"]


def test_resume_refused_on_malformed_metrics(client, auth, redis_view) -> None:
    _halted(redis_view)
    redis_view.set_metrics(PAIR, {"as_of": "yesterday", "dd": 0.01, "corr": 0.9})
    failed = _failed(_resume(client, auth("approver")))
    assert failed["metrics_available"]["observed"]["status"] == "malformed"


def test_metrics_freshness_budget_is_configurable(settings: Settings, auth, redis_view) -> None:
    from fastapi.testclient import TestClient

    _halted(redis_view)
    redis_view.set_metrics(PAIR, metrics(as_of=_rfc3339(datetime.now(UTC) - timedelta(hours=2))))
    app = create_app(settings, ops_settings=OpsSettings(metrics_max_age_s=3600))
    with TestClient(app) as tight:
        failed = _failed(_resume(tight, auth("approver")))
    assert failed["metrics_available"]["threshold"] == {"max_age_s": 3600.0}


def test_resume_refused_without_checklist(client, auth, redis_view) -> None:
    _halted(redis_view)
    redis_view.set_metrics(PAIR, metrics())
    response = client.post(
        "/api/v1/ops/resume",
        json={"scope": "portfolio", "reason": "all green"},
        headers=auth("approver"),
    )
    failed = _failed(response)
    assert set(failed) == {"resume_checklist"}
    assert failed["resume_checklist"]["observed"] is None


def test_portfolio_resume_when_guards_pass(client, auth, redis_view, sql) -> None:
    _halted(redis_view)
    redis_view.set_metrics(PAIR, metrics())
    response = _resume(client, {**auth("approver"), "X-Request-ID": "req-resume-ok"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert all(g["passed"] for g in data["guards"])
    assert {g["guard"] for g in data["guards"]} == {
        "metrics_available",
        "dd_below_warn",
        "stability_days",
        "corr_threshold",
        "resume_checklist",
        "resume_approved",
    }
    assert data["approved_by"] == "approver-1"
    assert data["checklist_url"] == CHECKLIST
    assert data["canary_pairs"] == [PAIR]  # ceil(0.2 x 1 pair)
    assert data["before"]["global_halt"] == "hard"
    after = data["after"]
    assert after["global_halt"] == "none"
    assert after["leverage_scale"] == 1.0
    assert after["halted_pairs"] == []
    assert after["flatten_pairs"] == []

    flags = redis_view.flags()
    assert flags.global_halt is HaltLevel.NONE
    assert flags.leverage_scale == 1.0
    assert not flags.halted_pairs
    assert not flags.flatten_pairs

    (row,) = sql("SELECT * FROM audit.analytics_actions WHERE request_id = 'req-resume-ok'")
    assert (row["action"], row["result"]) == ("ops.resume", "applied")
    assert row["diff"]["before"]["global_halt"] == "hard"
    assert row["diff"]["after"]["global_halt"] == "none"
    assert row["diff"]["resume_approved_by"] == "approver-1"
    assert row["diff"]["checklist_url"] == CHECKLIST
    assert len(row["diff"]["guards"]) == 6


def test_pair_resume_keeps_the_global_halt(client, auth, redis_view) -> None:
    _halted(redis_view)
    redis_view.set_metrics(PAIR, metrics())
    response = _resume(client, auth("admin"), scope="pair", pair_id=PAIR)
    assert response.status_code == 200, response.text
    flags = redis_view.flags()
    assert flags.global_halt is HaltLevel.HARD
    assert flags.leverage_scale == 0.5
    assert not flags.halted_pairs
    assert not flags.flatten_pairs


def test_portfolio_resume_reenables_the_canary_pairs_first(
    settings: Settings, auth, redis_view, tmp_path
) -> None:
    """5 pairs, canary_ratio 0.2: the first pair trades again, the other 4 stay halted."""
    import yaml
    from fastapi.testclient import TestClient
    from pairdesk.research.config import CONFIG_DIR

    universe = yaml.safe_load((CONFIG_DIR / "universe.yaml").read_text())
    template = universe["pairs"][0]
    pair_ids = [f"P{i}_{PAIR}" for i in range(5)]
    universe["pairs"] = [{**template, "pair_id": pid} for pid in pair_ids]
    path = tmp_path / "universe5.yaml"
    path.write_text(yaml.safe_dump(universe))

    redis_view.set_flags(OpsFlags(global_halt=HaltLevel.SOFT, leverage_scale=0.5))
    for pid in pair_ids:
        redis_view.set_metrics(pid, metrics())
    app = create_app(settings, ops_settings=OpsSettings(universe_path=path))
    with TestClient(app) as five:
        response = _resume(five, auth("approver"))
        assert response.status_code == 200, response.text
        assert response.json()["data"]["canary_pairs"] == [pair_ids[0]]
        flags = redis_view.flags()
        assert flags.global_halt is HaltLevel.NONE
        assert flags.halted_pairs == set(pair_ids[1:])
        # widening after good KPIs: resume the next pair on its own
        second = _resume(five, auth("approver"), scope="pair", pair_id=pair_ids[1])
        assert second.status_code == 200, second.text
    assert redis_view.flags().halted_pairs == set(pair_ids[2:])


def test_metrics_from_the_future_are_malformed(client, auth, redis_view) -> None:
    _halted(redis_view)
    ahead = datetime.now(UTC) + timedelta(hours=2)
    redis_view.set_metrics(PAIR, metrics(as_of=_rfc3339(ahead)))
    failed = _failed(_resume(client, auth("approver")))
    assert failed["metrics_available"]["observed"]["status"] == "malformed"
    assert "future" in failed["metrics_available"]["message"]

"""config_api against a real PostgreSQL: tokens from the users table, config listing/reading,
validation with audit (spec 004 §設定変更ワークフロー仕様 v1, DESIGN.md §6).

The tests of this module share one database and run in file order (the audit test counts the
validations made before it).
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import yaml
from pairdesk.common.auth import AuthError, decode_token

from .conftest import USERS, Env

TOKEN = "/api/v1/auth/token"
VALIDATE = "/api/v1/configs/validate"


def _text(env: Env, name: str) -> str:
    return (env.config_dir / f"{name}.yaml").read_text()


def _validate(env: Env, name: str, content: str, role: str = "editor", **extra: object) -> dict:
    resp = env.client.post(
        VALIDATE, json={"name": name, "content": content, **extra}, headers=env.headers(role)
    )
    return {**resp.json(), "http": resp.status_code}


def test_health_and_readiness(env: Env) -> None:
    assert env.client.get("/healthz").json()["data"]["service"] == "config_api"
    assert env.client.get("/readyz").status_code == 200


def test_token_for_a_good_password_decodes_with_the_users_role(env: Env) -> None:
    password, role, _ = USERS["alice"]
    resp = env.client.post(TOKEN, json={"username": "alice", "password": password})
    assert resp.status_code == 200, resp.json()
    data = resp.json()["data"]
    assert data["token_type"] == "bearer"
    assert data["role"] == "editor"
    assert data["expires_in"] == 900
    claims = decode_token(data["access_token"], env.settings)
    assert claims.sub == "alice"
    assert claims.role == role
    assert 899 <= (claims.exp - claims.iat).total_seconds() <= 900
    # the token works on the other endpoints
    auth = {"Authorization": f"Bearer {data['access_token']}"}
    assert env.client.get("/api/v1/configs", headers=auth).status_code == 200

    viewer = env.client.post(TOKEN, json={"username": "vera", "password": USERS["vera"][0]})
    assert decode_token(viewer.json()["data"]["access_token"], env.settings).role == "viewer"


def test_token_refusals_look_the_same(env: Env) -> None:
    answers = []
    for username, password in (
        ("alice", "wrong password"),
        ("nobody", "whatever-password"),
        ("olga", USERS["olga"][0]),  # right password, inactive account
        ("ALICE", USERS["alice"][0]),  # usernames are exact
    ):
        t0 = time.perf_counter()
        resp = env.client.post(TOKEN, json={"username": username, "password": password})
        answers.append((resp.status_code, resp.json()["error"], time.perf_counter() - t0))
        assert resp.headers["www-authenticate"] == "Bearer"
    assert {(code, err["id"], err["message"]) for code, err, _ in answers} == {
        (401, "UI_AUTH_INVALID", "Invalid username or password")
    }
    # every refusal runs one argon2 verification: none is an order of magnitude faster
    times = [t for *_, t in answers]
    assert min(times) > max(times) / 10
    for body in ({"username": "alice"}, {"username": "", "password": "x"}, {}):
        resp = env.client.post(TOKEN, json=body)
        assert resp.status_code == 422
        assert resp.json()["error"]["id"] == "UI_API_VALIDATION"


def test_list_configs_with_checksums(env: Env) -> None:
    resp = env.client.get("/api/v1/configs", headers=env.headers("viewer"))
    assert resp.status_code == 200
    items = resp.json()["data"]
    expected = sorted(p.stem for p in env.config_dir.glob("*.yaml"))
    assert [i["name"] for i in items] == expected
    assert "dd_policy" in expected
    assert "universe" in expected
    for item in items:
        data = (env.config_dir / item["file"]).read_bytes()
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
        assert item["size"] == len(data)
        assert item["last_change"] is None


def test_get_config_content_and_not_found(env: Env) -> None:
    h = env.headers("viewer")
    resp = env.client.get("/api/v1/configs/dd_policy", headers=h)
    assert resp.status_code == 200
    data = resp.json()["data"]
    raw = (env.config_dir / "dd_policy.yaml").read_bytes()
    assert data["content"] == yaml.safe_load(raw)
    assert data["content"]["dd_halt_portfolio"] == {"value": 0.10}
    assert data["sha256"] == hashlib.sha256(raw).hexdigest()
    assert data["text"] == raw.decode()
    universe = env.client.get("/api/v1/configs/universe", headers=h).json()["data"]["content"]
    assert universe["pairs"][0]["pair_id"] == "XAUUSD_XAGUSD"

    missing = env.client.get("/api/v1/configs/no_such_config", headers=h)
    assert missing.status_code == 404
    assert missing.json()["error"]["id"] == "UI_CONFIG_NOTFOUND"
    for bad in ("Dd_policy", "dd-policy", "..%2Fpyproject", "dd_policy.yaml"):
        resp = env.client.get(f"/api/v1/configs/{bad}", headers=h)
        assert resp.status_code in (404, 422), bad
        assert resp.json()["error"]["id"] in ("UI_API_VALIDATION", "UI_API_NOTFOUND"), bad
    outside = env.config_dir.parent / "secret.yaml"
    outside.write_text("token: abc\n")
    os.symlink(outside, env.config_dir / "leak.yaml")
    try:
        resp = env.client.get("/api/v1/configs/leak", headers=h)
        assert resp.status_code == 404
        assert resp.json()["error"]["id"] == "UI_CONFIG_NOTFOUND"
    finally:
        (env.config_dir / "leak.yaml").unlink()


def test_valid_change_is_diffed_and_audited_as_draft(env: Env) -> None:
    text = _text(env, "dd_policy").replace(
        "dd_halt_portfolio: { value: 0.10 }", "dd_halt_portfolio: { value: 0.11 }"
    )
    out = _validate(env, "dd_policy", text, reason="raise the halt level")
    assert out["http"] == 200, out
    data = out["data"]
    assert data["valid"] is True
    assert data["state"] == "draft"
    assert data["name"] == "dd_policy"
    assert data["diff"] == [
        {"path": "dd_halt_portfolio.value", "op": "changed", "old": 0.1, "new": 0.11}
    ]
    assert data["risk_note"] is None
    assert data["approvals_required"] == 1
    assert data["warnings"] == []
    assert data["checksum"] == hashlib.sha256(text.encode()).hexdigest()
    assert (
        data["base_checksum"]
        == hashlib.sha256((env.config_dir / "dd_policy.yaml").read_bytes()).hexdigest()
    )
    row = env.sql(
        "SELECT config_name, state, actor, actor_role, reason, checksum, diff, request_id "
        "FROM audit.config_changes WHERE change_id = :cid",
        cid=data["change_id"],
    )[0]
    assert row[:6] == (
        "dd_policy",
        "draft",
        "editor-user",
        "editor",
        "raise the halt level",
        data["checksum"],
    )
    assert row[6]["changes"] == data["diff"]
    assert row[6]["problems"] == []
    assert row[7] == out["request_id"]
    # nothing is applied: the file is unchanged
    assert "dd_halt_portfolio: { value: 0.10 }" in _text(env, "dd_policy")


def test_theta_and_cost_changes_need_two_approvers(env: Env) -> None:
    core = _text(env, "core_policy").replace(
        'theta1_initial: { value: 0.70, label_ja: "θ1初期値" }',
        'theta1_initial: { value: 0.72, label_ja: "θ1初期値" }',
    )
    data = _validate(env, "core_policy", core)["data"]
    assert [d["path"] for d in data["diff"]] == ["theta1_initial.value"]
    assert data["approvals_required"] == 2
    assert "theta1_initial.value" in data["risk_note"]

    added = _text(env, "retrain_policy") + "\nnew_knob: { value: 3 }\n"
    data = _validate(env, "retrain_policy", added)["data"]
    assert data["diff"] == [{"path": "new_knob", "op": "added", "old": None, "new": {"value": 3}}]
    assert data["warnings"] == ["new_knob: new key (not in the current file)"]


@pytest.mark.parametrize(
    ("name", "edit", "problem"),
    [
        ("dd_policy", lambda t: t + "\n  bad: [unclosed\n", "YAML syntax error"),
        ("dd_policy", lambda t: "- just\n- a list\n", "top level must be a mapping"),
        (
            "dd_policy",
            lambda t: t.replace("k_halt: { value: 3.5 }\n", ""),
            "k_halt: key of the current file is missing",
        ),
        (
            "dd_policy",
            lambda t: t.replace("k_halt: { value: 3.5 }", 'k_halt: { value: "3.5" }'),
            "k_halt.value: expected a number, got a string",
        ),
        (
            "dd_policy",
            lambda t: t.replace("dd_warn_portfolio: { value: 0.08 }", "dd_warn_portfolio: 0.08"),
            "dd_warn_portfolio: the {value: ...} wrapper of the current file was removed",
        ),
        (
            "dd_policy",
            lambda t: t.replace(
                "dd_halt_portfolio: { value: 0.10 }", "dd_halt_portfolio: { value: 0.13 }"
            ),
            "dd_warn_portfolio < dd_halt_portfolio < dd_flatten_portfolio must increase",
        ),
        (
            "pipeline_policy",
            lambda t: t.replace(
                'timeframe_default: { value: "1h" }', 'timeframe_default: { value: "2h" }'
            ),
            "timeframe_default '2h' is not in timeframe_allowed",
        ),
        (
            "pipeline_policy",
            lambda t: (
                "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
                + "".join(
                    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                    f"*{chr(97 + i)}, *{chr(97 + i)}]\n"
                    for i in range(8)
                )
            ),
            "content is too large or too deeply nested",
        ),
    ],
    ids=[
        "syntax",
        "not-mapping",
        "missing-key",
        "type",
        "wrapper",
        "dd-order",
        "timeframe",
        "alias-bomb",
    ],
)
def test_invalid_change_is_rejected_and_audited(
    env: Env, name: str, edit: object, problem: str
) -> None:
    content = edit(_text(env, name))  # type: ignore[operator]
    out = _validate(env, name, content)
    assert out["http"] == 422, out
    err = out["error"]
    assert err["id"] == "UI_CONFIG_INVALID"
    assert any(p.startswith(problem) for p in err["details"]["problems"]), err
    row = env.sql(
        "SELECT state, config_name, diff->'problems' FROM audit.config_changes "
        "WHERE change_id = :cid",
        cid=err["details"]["change_id"],
    )[0]
    assert row[:2] == ("rejected", name)
    assert row[2] == err["details"]["problems"]


def test_validate_unknown_config_and_bad_bodies(env: Env) -> None:
    before = env.sql("SELECT count(*) FROM audit.config_changes")[0][0]
    missing = _validate(env, "no_such_config", "a: 1\n")
    assert missing["http"] == 404
    assert missing["error"]["id"] == "UI_CONFIG_NOTFOUND"
    for body in (
        {"name": "../pyproject", "content": "a: 1"},
        {"name": "dd_policy"},
        {"name": "dd_policy", "content": "x" * (256 * 1024 + 1)},
        {"name": "dd_policy", "content": "a: 1", "extra": True},
    ):
        resp = env.client.post(VALIDATE, json=body, headers=env.headers("editor"))
        assert resp.status_code == 422
        assert resp.json()["error"]["id"] == "UI_API_VALIDATION"
    assert env.sql("SELECT count(*) FROM audit.config_changes")[0][0] == before


def test_audit_is_paged_and_filtered(env: Env) -> None:
    h = env.headers("viewer")
    total = env.sql("SELECT count(*) FROM audit.config_changes")[0][0]
    rejected = env.sql("SELECT count(*) FROM audit.config_changes WHERE state = 'rejected'")[0][0]
    assert total == 11
    assert rejected == 8
    page = env.client.get("/api/v1/configs/audit?limit=5", headers=h).json()["data"]
    assert page["total"] == total
    assert len(page["items"]) == 5
    assert page["limit"] == 5
    rest = env.client.get("/api/v1/configs/audit?limit=500&offset=5", headers=h).json()["data"]
    ids = [i["id"] for i in page["items"] + rest["items"]]
    assert len(ids) == total == len(set(ids))
    stamps = [i["occurred_at"] for i in page["items"] + rest["items"]]
    assert stamps == sorted(stamps, reverse=True)
    only = env.client.get("/api/v1/configs/audit?state=rejected&limit=500", headers=h).json()[
        "data"
    ]
    assert only["total"] == rejected
    assert {i["state"] for i in only["items"]} == {"rejected"}
    dd = env.client.get("/api/v1/configs/audit?config_name=dd_policy&state=draft", headers=h)
    assert [i["diff"]["changes"][0]["path"] for i in dd.json()["data"]["items"]] == [
        "dd_halt_portfolio.value"
    ]
    window = env.client.get(
        "/api/v1/configs/audit?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z", headers=h
    ).json()["data"]
    assert window["total"] == 0
    bad = env.client.get(
        "/api/v1/configs/audit?from=2001-01-01T00:00:00Z&to=2000-01-01T00:00:00Z", headers=h
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["id"] == "UI_REQ_RANGE"
    assert env.client.get("/api/v1/configs/audit?state=merged_badly", headers=h).status_code == 422

    # the listing now shows each config's last change
    listing = {i["name"]: i for i in env.client.get("/api/v1/configs", headers=h).json()["data"]}
    assert listing["dd_policy"]["last_change"]["state"] in ("draft", "rejected")
    assert listing["cost_table"]["last_change"] is None


def test_auth_is_required_and_validate_needs_editor(env: Env) -> None:
    for path in ("/api/v1/configs", "/api/v1/configs/dd_policy", "/api/v1/configs/audit"):
        resp = env.client.get(path)
        assert resp.status_code == 401
        assert resp.json()["error"]["id"] == "UI_AUTH_MISSING"
    body = {"name": "dd_policy", "content": _text(env, "dd_policy")}
    assert env.client.post(VALIDATE, json=body).status_code == 401
    viewer = env.client.post(VALIDATE, json=body, headers=env.headers("viewer"))
    assert viewer.status_code == 403
    assert viewer.json()["error"]["id"] == "UI_AUTH_FORBIDDEN"
    approver = env.client.post(VALIDATE, json=body, headers=env.headers("approver"))
    assert approver.status_code == 200
    assert approver.json()["data"]["diff"] == []
    expired = env.client.get(
        "/api/v1/configs",
        headers={"Authorization": "Bearer " + _expired_token(env)},
    )
    assert expired.status_code == 401
    assert expired.json()["error"]["id"] == "UI_AUTH_EXPIRED"
    with pytest.raises(AuthError):
        decode_token("garbage", env.settings)


def _expired_token(env: Env) -> str:
    from datetime import UTC, datetime, timedelta

    from pairdesk.common.auth import create_token

    return create_token("x", "viewer", env.settings, 60, now=datetime.now(UTC) - timedelta(hours=1))

"""JWT, RBAC and password hashing (DESIGN.md §6; roles from spec 004)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from jose import jwt
from pairdesk.common.api import install_error_handlers
from pairdesk.common.auth import (
    ROLE_PERMISSIONS,
    AuthError,
    CurrentUser,
    Permission,
    RequireApprover,
    Role,
    create_token,
    decode_token,
    has_permission,
    hash_password,
    password_needs_rehash,
    require,
    verify_password,
)
from pairdesk.common.settings import Settings

SECRET = "s3cr3t-" + "x" * 40
HS = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_SECRET": SECRET})

# Hand-written expectation of DESIGN.md §6 (independent of ROLE_PERMISSIONS): the lowest role
# allowed to do each thing.
MIN_ROLE: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.BACKTEST_LAUNCH: Role.EDITOR,
    Permission.CONFIG_PR_CREATE: Role.EDITOR,
    Permission.OPS_HALT: Role.EDITOR,
    Permission.OPS_FLATTEN: Role.EDITOR,
    Permission.ALERT_TRIGGER: Role.EDITOR,
    Permission.REPORT_GENERATE: Role.EDITOR,
    Permission.CONFIG_APPROVE: Role.APPROVER,
    Permission.CONFIG_MERGE: Role.APPROVER,
    Permission.CONFIG_APPLY: Role.APPROVER,
    Permission.CONFIG_ROLLBACK: Role.APPROVER,
    Permission.OPS_RESUME: Role.APPROVER,
    Permission.OPS_ROLLBACK: Role.APPROVER,
    Permission.MODEL_ACTIVATE: Role.APPROVER,
    Permission.USERS_MANAGE: Role.ADMIN,
}
RANK = {"viewer": 0, "editor": 1, "approver": 2, "admin": 3}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_token(header: dict[str, Any], payload: dict[str, Any], sign_key: bytes | None) -> str:
    """Build a JWS by hand: base64url(header).base64url(payload).HMAC-SHA256 (or empty)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if sign_key is None:
        return signing_input + "."
    sig = hmac.new(sign_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "admin",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j-1",
        "iss": "pairdesk",
        "aud": "pairdesk-api",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _app(settings: Settings) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, "OPS")
    app.state.settings = settings

    @app.get("/me")
    def me(user: CurrentUser) -> dict[str, str]:
        return {"sub": user.sub, "role": user.role.value}

    @app.post("/approve")
    def approve(user: RequireApprover) -> dict[str, str]:
        return {"sub": user.sub}

    def endpoint(user: CurrentUser) -> dict[str, str]:
        return {"sub": user.sub}

    for perm in Permission:
        # current_user is cached per request, so require() and the endpoint share one decode
        app.add_api_route(
            f"/perm/{perm.name}", endpoint, methods=["POST"], dependencies=[Depends(require(perm))]
        )
    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app(HS))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_401(r: Any, eid: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["status"] == "error"
    assert body["data"] is None
    assert body["error"]["id"] == eid
    assert r.headers["www-authenticate"] == "Bearer"


# --- roles and permissions ---------------------------------------------------------------------


def test_role_order_is_privilege_not_alphabet() -> None:
    assert sorted(Role) == [Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.ADMIN]
    assert Role.VIEWER < Role.EDITOR < Role.APPROVER < Role.ADMIN
    assert Role.ADMIN > Role.VIEWER  # alphabetically "admin" < "viewer"
    assert Role.EDITOR >= "editor"
    assert Role.EDITOR <= "approver"
    assert max(Role) is Role.ADMIN
    with pytest.raises(TypeError, match=r"not a role name"):
        _ = Role.VIEWER < "superuser"


def test_role_permission_map_matches_design() -> None:
    assert set(MIN_ROLE) == set(Permission)
    for role in Role:
        expected = {p for p, floor in MIN_ROLE.items() if RANK[role.value] >= RANK[floor.value]}
        assert set(ROLE_PERMISSIONS[role]) == expected, role
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.VIEWER] == {Permission.READ}


@pytest.mark.parametrize("role", list(Role))
def test_full_role_permission_matrix_over_http(client: TestClient, role: Role) -> None:
    token = create_token(f"user-{role.value}", role, HS)
    for perm, floor in MIN_ROLE.items():
        r = client.post(f"/perm/{perm.name}", headers=_bearer(token))
        allowed = RANK[role.value] >= RANK[floor.value]
        assert has_permission(role, perm) is allowed
        if allowed:
            assert r.status_code == 200, (role, perm, r.text)
            assert r.json() == {"sub": f"user-{role.value}"}
        else:
            assert r.status_code == 403, (role, perm, r.text)
            body = r.json()
            assert body["error"]["id"] == "OPS_AUTH_FORBIDDEN"
            assert perm.value in body["error"]["message"]


@pytest.mark.parametrize(
    ("role", "status"), [("viewer", 403), ("editor", 403), ("approver", 200), ("admin", 200)]
)
def test_require_role_alias(client: TestClient, role: str, status: int) -> None:
    r = client.post("/approve", headers=_bearer(create_token("bob", role, HS)))
    assert r.status_code == status
    if status == 403:
        assert r.json()["error"]["id"] == "OPS_AUTH_FORBIDDEN"


# --- tokens ------------------------------------------------------------------------------------


def test_hs256_round_trip_claims() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = create_token("alice", Role.EDITOR, HS, ttl=120, now=now)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    raw = jwt.get_unverified_claims(token)
    assert set(raw) == {"sub", "role", "exp", "iat", "nbf", "jti", "iss", "aud"}
    assert raw["exp"] - raw["iat"] == 120
    assert raw["iat"] == raw["nbf"] == int(now.timestamp())
    claims = decode_token(token, HS)
    assert claims.sub == "alice"
    assert claims.role is Role.EDITOR
    assert claims.iss == "pairdesk"
    assert claims.aud == "pairdesk-api"
    assert claims.exp - claims.iat == timedelta(seconds=120)
    assert claims.permissions == ROLE_PERMISSIONS[Role.EDITOR]
    assert create_token("alice", "editor", HS) != create_token("alice", "editor", HS)  # jti


def test_default_ttl_from_settings() -> None:
    raw = jwt.get_unverified_claims(create_token("a", "viewer", HS))
    assert raw["exp"] - raw["iat"] == 3600


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sub": "", "role": "viewer"}, r"sub must be"),
        ({"sub": "a", "role": "root"}, r"'root' is not a valid Role"),
        ({"sub": "a", "role": "viewer", "ttl": 0}, r"ttl must be positive"),
        ({"sub": "a", "role": "viewer", "now": datetime(2026, 1, 1)}, r"timezone-aware"),
    ],
)
def test_create_token_argument_errors(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        create_token(settings=HS, **kwargs)


def test_me_with_valid_token(client: TestClient) -> None:
    r = client.get("/me", headers=_bearer(create_token("alice", "viewer", HS)))
    assert r.status_code == 200
    assert r.json() == {"sub": "alice", "role": "viewer"}


def test_missing_token_401(client: TestClient) -> None:
    _assert_401(client.get("/me"), "OPS_AUTH_MISSING")
    _assert_401(
        client.get("/me", headers={"Authorization": "Basic YWxpY2U6cHc="}), "OPS_AUTH_MISSING"
    )
    _assert_401(client.get("/me", headers={"Authorization": "Bearer "}), "OPS_AUTH_MISSING")


def test_garbage_token_401(client: TestClient) -> None:
    _assert_401(client.get("/me", headers=_bearer("not.a.jwt")), "OPS_AUTH_INVALID")
    _assert_401(client.get("/me", headers=_bearer("abc")), "OPS_AUTH_INVALID")


def test_alg_none_refused(client: TestClient) -> None:
    for alg in ("none", "None", "NONE"):
        token = _hand_token({"alg": alg, "typ": "JWT"}, _claims(), None)
        _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")
        with pytest.raises(AuthError, match=r"algorithm not accepted"):
            decode_token(token, HS)


def test_other_hmac_algorithms_refused(client: TestClient) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


def test_hand_made_token_with_right_key_accepted_then_forgeries_refused(client: TestClient) -> None:
    # Sanity check of the hand-built token: with the real secret it is accepted ...
    good = _hand_token({"alg": "HS256", "typ": "JWT"}, _claims(role="viewer"), SECRET.encode())
    assert client.get("/me", headers=_bearer(good)).status_code == 200
    # ... with another secret it is refused
    forged = _hand_token({"alg": "HS256", "typ": "JWT"}, _claims(), b"attacker-secret-" + b"y" * 32)
    _assert_401(client.get("/me", headers=_bearer(forged)), "OPS_AUTH_INVALID")
    # ... and so is a payload swapped under a genuine signature (privilege escalation)
    h, _, s = good.split(".")
    escalated = f"{h}.{_b64(json.dumps(_claims(role='admin')).encode())}.{s}"
    _assert_401(client.get("/me", headers=_bearer(escalated)), "OPS_AUTH_INVALID")


@pytest.mark.parametrize(
    "over",
    [{"PAIRDESK_JWT_AUDIENCE": "other-api"}, {"PAIRDESK_JWT_ISSUER": "someone-else"}],
)
def test_wrong_audience_or_issuer_refused(client: TestClient, over: dict[str, str]) -> None:
    other = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_SECRET": SECRET, **over})
    token = create_token("alice", "admin", other)
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


def test_audience_list_without_ours_refused(client: TestClient) -> None:
    token = jwt.encode(_claims(aud=["a", "b"]), SECRET, algorithm="HS256")
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


def test_expired_token_401_expired(client: TestClient) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token = create_token("alice", "admin", HS, ttl=60, now=past)
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_EXPIRED")
    with pytest.raises(AuthError, match=r"expired") as info:
        decode_token(token, HS)
    assert info.value.error_id == "UI_AUTH_EXPIRED"  # domain defaults to UI outside an app
    assert info.value.with_domain("BT").error_id == "BT_AUTH_EXPIRED"


def test_not_yet_valid_token_refused(client: TestClient) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    token = create_token("alice", "admin", HS, now=future)
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


def test_iat_in_future_without_nbf_refused(client: TestClient) -> None:
    now = int(time.time())
    token = jwt.encode(_claims(iat=now + 3600, nbf=None, exp=now + 7200), SECRET, algorithm="HS256")
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


@pytest.mark.parametrize("claim", ["sub", "role", "exp", "iat", "jti", "iss", "aud"])
def test_missing_claim_refused(client: TestClient, claim: str) -> None:
    token = jwt.encode(_claims(**{claim: None}), SECRET, algorithm="HS256")
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


@pytest.mark.parametrize("role", ["superuser", "ADMIN", "", 3])
def test_unknown_role_refused(client: TestClient, role: object) -> None:
    token = jwt.encode(_claims(role=role), SECRET, algorithm="HS256")
    _assert_401(client.get("/me", headers=_bearer(token)), "OPS_AUTH_INVALID")


# --- RS256 -------------------------------------------------------------------------------------


def test_rs256_round_trip_and_verifier_only_service(rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    issuer = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_PRIVATE_KEY": private})
    verifier = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_PUBLIC_KEY": public})
    token = create_token("carol", Role.APPROVER, issuer)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    for s in (issuer, verifier):
        claims = decode_token(token, s)
        assert (claims.sub, claims.role) == ("carol", Role.APPROVER)
    r = TestClient(_app(verifier)).post("/approve", headers=_bearer(token))
    assert r.status_code == 200
    with pytest.raises(ValueError, match=r"cannot issue"):
        create_token("carol", "viewer", verifier)


def test_hs_rs_confusion_refused(rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    verifier = Settings.from_mapping({"SERVICE_ENV": "prod", "PAIRDESK_JWT_PUBLIC_KEY": public})
    rs_client = TestClient(_app(verifier))
    # classic attack: HS256 "signed" with the (public) RSA key bytes as the HMAC secret
    confused = _hand_token({"alg": "HS256", "typ": "JWT"}, _claims(), public.encode())
    _assert_401(rs_client.get("/me", headers=_bearer(confused)), "OPS_AUTH_INVALID")
    # and the reverse: an RS256 token presented to an HS256 service
    issuer = Settings.from_mapping({"PAIRDESK_JWT_PRIVATE_KEY": private})
    rs_token = create_token("carol", "admin", issuer)
    _assert_401(TestClient(_app(HS)).get("/me", headers=_bearer(rs_token)), "OPS_AUTH_INVALID")
    # an HS256 token with the right shared secret is useless against an RS256 service
    _assert_401(
        rs_client.get("/me", headers=_bearer(create_token("a", "admin", HS))), "OPS_AUTH_INVALID"
    )


# --- passwords ---------------------------------------------------------------------------------


def test_password_hashing() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password("correct horse battery staple", hashed)
    assert not verify_password("correct horse battery stapler", hashed)
    assert not verify_password("anything", "not-a-hash")
    assert hash_password("pw") != hash_password("pw")  # salted
    assert not password_needs_rehash(hashed)
    with pytest.raises(ValueError, match=r"non-empty"):
        hash_password("")

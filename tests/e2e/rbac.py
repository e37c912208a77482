"""RBAC matrix over every /api/v1 route of the running platform (DESIGN.md §6).

Every route in ``openapi.yaml`` × {no token, expired, forged, alg none, viewer, editor, approver,
admin}. The minimum role of each route is written out here, independently of the code: reads
viewer; launch backtests, ingest, config PRs/validation, halt and flatten editor; resume,
rollback and model activation approver; ``POST /auth/token`` is public.

Below the minimum → 403 ``{DOMAIN}_AUTH_FORBIDDEN``; bad or missing tokens → 401 with
``WWW-Authenticate: Bearer``; at or above it the request passes auth: reads without required
parameters answer 2xx (or 404 ``*_NOTFOUND`` for "the latest X" before any X exists), everything else reaches validation/lookup (422 for an empty body, 404 for
an unknown id), never 401/403 and never 5xx.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pairdesk.common.auth import Role, create_token
from pairdesk.common.settings import Settings

from .conftest import Platform

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"

DOMAIN = {
    "data_pipeline": "DATA",
    "core_inference": "CORE",
    "backtest": "BT",
    "analytics": "ANALYTICS",
    "config_api": "UI",
    "ops_api": "OPS",
}

#: (method, path) → minimum role (None = public), per DESIGN.md §6.
MINIMUM_ROLE: dict[tuple[str, str], str | None] = {
    ("POST", "/api/v1/data/ingest/runs"): "editor",
    ("GET", "/api/v1/data/watermarks"): "viewer",
    ("GET", "/api/v1/data/quarantine"): "viewer",
    ("GET", "/api/v1/data/bars"): "viewer",
    ("GET", "/api/v1/signals/latest"): "viewer",
    ("GET", "/api/v1/signals/history"): "viewer",
    ("GET", "/api/v1/models"): "viewer",
    ("POST", "/api/v1/models/{version}/activate"): "approver",
    ("GET", "/api/v1/inference/status"): "viewer",
    ("POST", "/api/v1/bt/runs"): "editor",
    ("GET", "/api/v1/bt/runs"): "viewer",
    ("GET", "/api/v1/bt/runs/{run_id}"): "viewer",
    ("GET", "/api/v1/bt/summary"): "viewer",
    ("GET", "/api/v1/bt/trades"): "viewer",
    ("GET", "/api/v1/bt/equity"): "viewer",
    ("GET", "/api/v1/metrics/trading"): "viewer",
    ("GET", "/api/v1/metrics/model"): "viewer",
    ("GET", "/api/v1/metrics/data_quality"): "viewer",
    ("GET", "/api/v1/metrics/risk"): "viewer",
    ("POST", "/api/v1/auth/token"): None,
    ("GET", "/api/v1/configs"): "viewer",
    ("GET", "/api/v1/configs/audit"): "viewer",
    ("GET", "/api/v1/configs/{name}"): "viewer",
    ("POST", "/api/v1/configs/validate"): "editor",
    ("POST", "/api/v1/ops/halt"): "editor",
    ("POST", "/api/v1/ops/flatten"): "editor",
    ("POST", "/api/v1/ops/resume"): "approver",
    ("POST", "/api/v1/ops/rollback"): "approver",
    ("GET", "/api/v1/ops/state"): "viewer",
    ("GET", "/api/v1/ops/actions"): "viewer",
}

#: Values for required path/query parameters (unknown ids: auth must be decided before lookup).
PARAMS = {"version": "no-such-model", "run_id": "no-such-run", "name": "universe",
          "symbol": "XAUUSD", "timeframe": "1h"}  # fmt: skip
BAD_CREDENTIALS = ("none", "expired", "forged", "alg_none")


def _routes() -> list[tuple[str, str, str, bool]]:
    """(service, method, path, needs parameters) for every /api/v1 operation in openapi.yaml."""
    doc = yaml.safe_load(OPENAPI.read_text())
    out = []
    for path, item in doc["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            required = any(p.get("required") for p in op.get("parameters", []))
            out.append((item["x-pairdesk-service"], method.upper(), path, required))
    return out


ROUTES = _routes()


def test_matrix_covers_every_route() -> None:
    assert {(m, p) for _, m, p, _ in ROUTES} == set(MINIMUM_ROLE)


def _alg_none_token(settings: Settings) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "mallory", "role": "admin", "iat": now, "exp": now + 600, "jti": "x",
              "iss": settings.pairdesk_jwt_issuer, "aud": settings.pairdesk_jwt_audience}  # fmt: skip
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _credentials(platform: Platform, who: str) -> dict[str, str]:
    settings = Settings.from_mapping({"PAIRDESK_JWT_SECRET": platform.secret})
    if who == "none":
        return {}
    if who == "expired":
        token = create_token(
            "old", Role.ADMIN, settings, ttl=60, now=datetime.now(UTC) - timedelta(hours=2)
        )
    elif who == "forged":
        other = Settings.from_mapping({"PAIRDESK_JWT_SECRET": "f" * 48})
        token = create_token("mallory", Role.ADMIN, other)
    elif who == "alg_none":
        token = _alg_none_token(settings)
    else:
        token = create_token(f"{who}-rbac", Role(who), settings)
    return {"Authorization": f"Bearer {token}"}


def _call(
    platform: Platform, service: str, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    url = platform.urls[service] + path.format(**PARAMS)
    params = {k: v for k, v in PARAMS.items() if k in ("symbol", "timeframe")}
    if method == "GET":
        return httpx.get(url, params=params, headers=headers, timeout=60)
    return httpx.request(method, url, json={}, headers=headers, timeout=60)


def _as_expected(
    r: httpx.Response, service: str, method: str, needs_params: bool, who: str, minimum: str | None
) -> bool:
    body = r.json()
    if (
        r.status_code >= 500
        or body.get("status") not in ("ok", "error")
        or "request_id" not in body
    ):
        return False
    if minimum is None:  # public
        return r.status_code not in (401, 403)
    if who in BAD_CREDENTIALS:
        return (
            r.status_code == 401
            and body["error"]["id"].startswith(f"{DOMAIN[service]}_AUTH_")
            and r.headers.get("WWW-Authenticate") == "Bearer"
        )
    if Role(who) < Role(minimum):
        return r.status_code == 403 and body["error"]["id"] == f"{DOMAIN[service]}_AUTH_FORBIDDEN"
    if method == "GET" and not needs_params:
        # 2xx; reads of "the latest X" answer 404 *_NOTFOUND while there is no X yet
        return 200 <= r.status_code < 300 or (
            r.status_code == 404 and body["error"]["id"].endswith("_NOTFOUND")
        )
    return r.status_code not in (401, 403)


@pytest.mark.parametrize("who", [*BAD_CREDENTIALS, "viewer", "editor", "approver", "admin"])
def test_rbac_matrix(platform: Platform, who: str) -> None:
    headers = _credentials(platform, who)
    failures = []
    for service, method, path, needs_params in ROUTES:
        minimum = MINIMUM_ROLE[(method, path)]
        r = _call(platform, service, method, path, headers)
        if not _as_expected(r, service, method, needs_params, who, minimum):
            failures.append(f"{who}: {method} {path} → {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)

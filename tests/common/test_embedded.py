"""Embedded PostgreSQL / Redis (pairdesk.common.embedded): start, reach from another process,
reuse, stop, keep data across restarts; the test helpers' fallback servers use the same code."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import redis
from pairdesk.common import db
from pairdesk.common.embedded import start_postgres, start_redis
from sqlalchemy import text


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (another process) and return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _scalar(url: str, sql: str) -> object:
    engine = db.create_engine(url, pool=False)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text(sql))
    finally:
        await engine.dispose()


def test_postgres_reachable_from_another_process_reused_and_persistent(tmp_path: Path) -> None:
    import asyncio

    url, server = start_postgres(tmp_path / "pg")
    try:
        assert server.started
        assert server.is_running()
        assert url == f"postgresql://postgres@/pairdesk?host={server.socket_dir}"
        # another process writes through asyncpg with the URL it was handed
        _python(
            """
            import asyncio, os
            from sqlalchemy import text
            from pairdesk.common.db import create_engine

            async def main():
                engine = create_engine(os.environ["URL"], pool=False)
                async with engine.begin() as conn:
                    await conn.execute(text("CREATE TABLE kept (v int)"))
                    await conn.execute(text("INSERT INTO kept VALUES (42)"))
                await engine.dispose()

            asyncio.run(main())
            """,
            URL=url,
        )
        # a second start on the same folder reuses the running server
        url2, again = start_postgres(tmp_path / "pg")
        assert url2 == url
        assert not again.started
        pid = server.pid()
        assert pid is not None
        server.stop()
        assert not server.is_running()
        assert _gone(pid)
        server.stop()  # idempotent

        # restarted on the same folder: same data
        url3, restarted = start_postgres(tmp_path / "pg")
        assert restarted.started
        assert url3 == url
        assert asyncio.run(_scalar(url3, "SELECT v FROM kept")) == 42
    finally:
        server.stop()


def test_postgres_long_folder_uses_a_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 40) / "pg"
    deep.parent.mkdir(parents=True)
    url, server = start_postgres(deep, database="postgres")
    try:
        assert server.socket_dir != server.pgdata
        assert len(str(server.socket_dir / ".s.PGSQL.5432")) <= 100
        import asyncio

        assert asyncio.run(_scalar(url, "SELECT 1")) == 1
    finally:
        server.stop()
    assert not server.socket_dir.exists()  # the fallback folder is removed with the server


def test_start_postgres_rejects_bad_database_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid database name"):
        start_postgres(tmp_path / "pg", database='x"; DROP')


def test_redis_reachable_from_another_process_reused_and_persistent(tmp_path: Path) -> None:
    url, server = start_redis(tmp_path / "redis")
    try:
        assert server.started
        assert server.is_running()
        assert url.startswith("redis://:")
        assert f"@127.0.0.1:{server.port}/0" in url
        password = tmp_path / "redis" / "password"
        assert stat.S_IMODE(password.stat().st_mode) == 0o600
        # the port answers only with the password
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()

        _python(
            """
            import os, redis
            client = redis.Redis.from_url(os.environ["URL"])
            client.set("pairdesk:probe", "from-child")
            client.close()
            """,
            URL=url,
        )
        client = redis.Redis.from_url(url)
        assert client.get("pairdesk:probe") == b"from-child"
        client.close()

        url2, again = start_redis(tmp_path / "redis")
        assert url2 == url
        assert not again.started

        pid = server.pid
        server.stop()
        assert not server.is_running()
        assert _gone(pid)
        server.stop()  # idempotent

        url3, restarted = start_redis(tmp_path / "redis")
        assert restarted.started
        client = redis.Redis.from_url(url3)
        assert client.get("pairdesk:probe") == b"from-child"  # append-only file replayed
        client.close()
        restarted.stop()
    finally:
        server.stop()


def test_redis_without_persistence_starts_empty(tmp_path: Path) -> None:
    url, server = start_redis(tmp_path / "redis", persist=False)
    try:
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        client.close()
        server.stop()
        url2, server = start_redis(tmp_path / "redis", persist=False)
        client = redis.Redis.from_url(url2)
        assert client.get("k") is None
        client.close()
    finally:
        server.stop()


def test_testing_helpers_fall_back_to_embedded_servers_and_clean_up() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAIRDESK_TEST_")}
    code = textwrap.dedent(
        """
        import redis
        from pairdesk.common import testing

        pg = testing.postgres_url()
        rd = testing.redis_url()
        assert testing.postgres_url() == pg and testing.redis_url() == rd  # once per process
        with testing.temporary_database(pg, migrate=True) as url:
            print("DB", url)
        client = redis.Redis.from_url(rd)
        assert client.ping()
        client.close()
        print("PG", pg)
        print("REDIS", rd)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    socket_dir = Path(lines["PG"].split("host=", 1)[1])
    assert lines["PG"].startswith("postgresql://postgres@/postgres?host=")
    assert lines["REDIS"].startswith("redis://:")
    # at exit the servers were stopped and their temporary folders deleted
    assert not socket_dir.exists()
    port = int(lines["REDIS"].rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2).ping()

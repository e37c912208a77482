"""Alembic migrations on a real PostgreSQL: every table, round trip, canonical_bars layout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pairdesk.common import migrate, models, testing
from pairdesk.common.db import create_engine, metadata
from sqlalchemy import text
from sqlalchemy.engine import Connection

EXPECTED_TABLES = {
    "public.canonical_bars",
    "public.bt_runs",
    "public.bt_summary",
    "public.bt_trades",
    "public.bt_daily_equity",
    "public.bt_stress_results",
    "public.model_registry",
    "public.signals_live",
    "public.signals_history",
    "public.users",
    "public.incident_logs",
    "public.execution_logs",
    "audit.config_changes",
    "audit.analytics_actions",
    "audit.retrain_runs",
}


async def _fetch(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url, pool=False)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET TIME ZONE 'UTC'"))
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def fetch(url: str, sql: str, **params: Any) -> list[Any]:
    return asyncio.run(_fetch(url, sql, **params))


def user_tables(url: str) -> set[str]:
    rows = fetch(
        url,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname IN ('public', 'audit')",
    )
    return {r[0] for r in rows}


@pytest.fixture
def fresh_url(pg_admin_url: str) -> Iterator[str]:
    with testing.temporary_database(pg_admin_url) as url:
        yield url


def head_revision() -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert head is not None
    return head


def test_model_metadata_lists_exactly_the_expected_tables() -> None:
    assert {f"{t.schema or 'public'}.{t.name}" for t in metadata.sorted_tables} == EXPECTED_TABLES


def test_upgrade_creates_every_table_and_the_audit_schema(fresh_url: str) -> None:
    assert migrate.current_revision(fresh_url) is None
    migrate.upgrade(fresh_url)
    assert migrate.current_revision(fresh_url) == head_revision()
    assert user_tables(fresh_url) == EXPECTED_TABLES | {"public.alembic_version"}
    assert fetch(fresh_url, "SELECT nspname FROM pg_namespace WHERE nspname = 'audit'") == [
        ("audit",)
    ]
    # CHECK constraints from the enums exist under their conventional names.
    names = {
        r[0]
        for r in fetch(
            fresh_url,
            "SELECT conname FROM pg_constraint WHERE conrelid = 'canonical_bars'::regclass",
        )
    }
    assert {"canonical_bars_pkey", "canonical_bars_quality_flag_check"} <= names


def test_migration_matches_the_orm_models(pg_url: str) -> None:
    """Autogenerate against the migrated database finds nothing to add, drop or alter."""

    def diff(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "compare_type": True,
                "include_name": lambda name, type_, _parents: (
                    name in (None, "public", "audit")
                    if type_ == "schema"
                    else not (
                        type_ == "table"
                        and (name == "alembic_version" or str(name).startswith("canonical_bars_"))
                    )
                ),
            },
        )
        return list(compare_metadata(ctx, metadata))

    async def run() -> list[Any]:
        engine = create_engine(pg_url, pool=False)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == []


def test_downgrade_to_base_and_upgrade_again(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    migrate.downgrade(fresh_url, "base")
    assert migrate.current_revision(fresh_url) is None
    assert user_tables(fresh_url) == {"public.alembic_version"}
    assert fetch(fresh_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'audit'") == []
    assert (
        fetch(
            fresh_url,
            "SELECT 1 FROM pg_proc WHERE proname = 'pairdesk_ensure_canonical_partitions'",
        )
        == []
    )
    # no orphaned partitions left behind
    assert (
        fetch(fresh_url, "SELECT relname FROM pg_class WHERE relname LIKE 'canonical_bars%'") == []
    )
    migrate.upgrade(fresh_url)
    assert user_tables(fresh_url) == EXPECTED_TABLES | {"public.alembic_version"}
    assert migrate.current_revision(fresh_url) == head_revision()


def _month_start(ts: datetime) -> datetime:
    return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def test_canonical_bars_is_partitioned_or_a_hypertable(pg_url: str) -> None:
    async def storage() -> str:
        engine = create_engine(pg_url, pool=False)
        try:
            async with engine.connect() as conn:
                return await models.canonical_storage(conn)
        finally:
            await engine.dispose()

    layout = asyncio.run(storage())
    assert layout in ("native", "timescale")
    if layout == "timescale":
        jobs = fetch(
            pg_url,
            "SELECT 1 FROM timescaledb_information.jobs "
            "WHERE hypertable_name = 'canonical_bars' AND proc_name = 'policy_compression'",
        )
        assert jobs, "compression policy missing"
        return
    parts = {
        r[0]: r[1]
        for r in fetch(
            pg_url,
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'canonical_bars'::regclass",
        )
    }
    # 36 months back + current month + 3 ahead, plus the DEFAULT partition
    assert len(parts) == 36 + 1 + 3 + 1
    assert parts["canonical_bars_default"] == "DEFAULT"
    now = datetime.now(UTC)
    this_month = _month_start(now)
    next_month = _month_start(this_month + timedelta(days=32))
    name = f"canonical_bars_p{this_month:%Y%m}"
    bound = parts[name]
    assert this_month.strftime("%Y-%m-01") in bound
    assert next_month.strftime("%Y-%m-01") in bound
    oldest = _month_start(datetime(now.year - 3, now.month, 1, tzinfo=UTC))
    assert f"canonical_bars_p{oldest:%Y%m}" in parts


def test_upgrade_async_from_inside_an_event_loop(fresh_url: str) -> None:
    asyncio.run(migrate.upgrade_async(fresh_url))
    assert migrate.current_revision(fresh_url) == head_revision()
    assert user_tables(fresh_url) == EXPECTED_TABLES | {"public.alembic_version"}


def test_missing_migrations_dir_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAIRDESK_MIGRATIONS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="set PAIRDESK_MIGRATIONS_DIR"):
        migrate.migrations_dir()

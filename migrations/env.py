"""Alembic environment for the Pairdesk database (async, asyncpg).

The database URL is taken, in order, from:

1. ``config.attributes["connection"]`` — an open synchronous connection handed over by
   :func:`pairdesk.common.migrate.upgrade_async` (then no engine is created here);
2. ``config.attributes["url"]`` — set by :func:`pairdesk.common.migrate.upgrade`;
3. ``alembic -x url=postgresql://...`` on the command line;
4. the ``POSTGRES_URL`` environment variable (spec 004 §環境変数).

``postgresql://`` URLs are rewritten to the asyncpg driver. Offline mode (``--sql``) renders
the SQL for PostgreSQL without connecting.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from pairdesk.common import models  # noqa: F401  (registers every table on the metadata)
from pairdesk.common.db import create_engine, metadata, to_async_url
from sqlalchemy.engine import Connection

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get("POSTGRES_URL")
    if not url:
        raise RuntimeError(
            "no database URL: pass `-x url=postgresql://...`, set POSTGRES_URL, "
            "or call pairdesk.common.migrate.upgrade(url)"
        )
    return to_async_url(str(url))


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # Only our schemas take part in autogenerate comparisons.
    if type_ == "schema":
        return name in (None, "public", "audit")
    if type_ == "table":
        # alembic's own bookkeeping table and the canonical_bars partitions are not models.
        return name != "alembic_version" and not str(name).startswith("canonical_bars_")
    return True


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=_include_name,
        compare_type=True,
        version_table_schema="public",
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Emit the migration SQL to stdout without a database connection."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url(), pool=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations on a live database (given connection, or a new async engine)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

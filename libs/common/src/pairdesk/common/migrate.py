"""Programmatic alembic helpers: bring a database to the latest schema (or back).

The migration scripts live in ``migrations/`` at the repository root. Their location is taken
from the ``script_location`` argument, else ``PAIRDESK_MIGRATIONS_DIR``, else the repository
this package is installed from (editable / workspace install).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from pairdesk.common.db import create_engine, to_async_url
from sqlalchemy.engine import Connection

__all__ = [
    "alembic_config",
    "current_revision",
    "downgrade",
    "migrations_dir",
    "upgrade",
    "upgrade_async",
]


def migrations_dir() -> Path:
    """Return the alembic script directory.

    Raises
    ------
    FileNotFoundError
        If ``PAIRDESK_MIGRATIONS_DIR`` is unset and the repository's ``migrations/`` folder
        cannot be found next to this package's sources.
    """
    env = os.environ.get("PAIRDESK_MIGRATIONS_DIR")
    # libs/common/src/pairdesk/common/migrate.py -> the repository root is parents[5]
    path = Path(env) if env else Path(__file__).resolve().parents[5] / "migrations"
    if not (path / "env.py").is_file():
        raise FileNotFoundError(
            f"alembic migrations not found at {path}; set PAIRDESK_MIGRATIONS_DIR"
        )
    return path


def alembic_config(url: str | None = None, *, script_location: str | Path | None = None) -> Config:
    """Build an alembic :class:`~alembic.config.Config` without an ini file.

    Parameters
    ----------
    url : str, optional
        Database URL (any PostgreSQL scheme; rewritten to asyncpg). When omitted, env.py falls
        back to ``-x url=`` / ``POSTGRES_URL``.
    script_location : str or Path, optional
        Migration directory; defaults to :func:`migrations_dir`.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location or migrations_dir()))
    if url is not None:
        cfg.attributes["url"] = to_async_url(url)
    return cfg


def upgrade(url: str, revision: str = "head", *, script_location: str | Path | None = None) -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: latest).

    Synchronous; runs its own event loop, so call it from synchronous code (CLI, ``pairdesk up``,
    test fixtures). From inside a running event loop use :func:`upgrade_async`.

    Raises
    ------
    RuntimeError
        If called while an event loop is running in this thread.
    """
    command.upgrade(alembic_config(url, script_location=script_location), revision)


def downgrade(url: str, revision: str, *, script_location: str | Path | None = None) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` drops everything)."""
    command.downgrade(alembic_config(url, script_location=script_location), revision)


async def upgrade_async(
    url: str, revision: str = "head", *, script_location: str | Path | None = None
) -> None:
    """Async variant of :func:`upgrade` for code already running inside an event loop."""
    cfg = alembic_config(url, script_location=script_location)
    engine = create_engine(url, pool=False)

    def _run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def current_revision(url: str) -> str | None:
    """Return the revision the database at ``url`` is at (``None`` if never migrated)."""

    async def _read() -> str | None:
        engine = create_engine(url, pool=False)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(_read())

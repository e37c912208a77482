"""Async SQLAlchemy 2 foundation: metadata, declarative base, engine and session factories.

Nothing in this module opens a connection at import time (DESIGN.md §8): engines are created
by the application's lifespan (or a test fixture) through :func:`create_engine`, and sessions
come from the factory returned by :func:`create_session_factory`.

The metadata carries a naming convention so that every index and constraint has a stable,
predictable name; alembic migrations depend on those names for downgrades.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "TimestampMixin",
    "create_engine",
    "create_session_factory",
    "metadata",
    "session_scope",
    "to_async_url",
    "to_sync_url",
]

#: Constraint/index naming convention (the polar ``kit/db/models/base.py`` convention).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of every Pairdesk ORM model (shares :data:`metadata`)."""

    metadata = metadata


class TimestampMixin:
    """Adds ``created_at`` / ``updated_at`` (timestamptz, UTC, set by the database).

    ``created_at`` defaults to ``now()`` on insert; ``updated_at`` is NULL until the row is
    first modified through the ORM, after which it holds the time of the last update.
    """

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), onupdate=func.now(), nullable=True
    )


_ASYNC_DRIVER = "postgresql+asyncpg"
_SYNC_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}


def to_async_url(url: str) -> str:
    """Return ``url`` rewritten for the asyncpg driver.

    Parameters
    ----------
    url : str
        A PostgreSQL URL as found in ``POSTGRES_URL`` (spec 004 §環境変数:
        ``postgresql://user:pass@host:5432/db``), ``postgres://`` or an explicit driver URL.
        Unix-socket URLs (``postgresql://user@/db?host=/path``, as pgserver returns) work too.

    Returns
    -------
    str
        The same URL with the ``postgresql+asyncpg`` driver (password kept in clear text).

    Raises
    ------
    ValueError
        If the URL is not a PostgreSQL URL.
    """
    parsed = make_url(url)
    if parsed.drivername == _ASYNC_DRIVER:
        return parsed.render_as_string(hide_password=False)
    if parsed.drivername not in _SYNC_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (driver {parsed.drivername!r})")
    return parsed.set(drivername=_ASYNC_DRIVER).render_as_string(hide_password=False)


def to_sync_url(url: str) -> str:
    """Return ``url`` with a plain ``postgresql://`` scheme (for psql / libpq tools).

    Raises
    ------
    ValueError
        If the URL is not a PostgreSQL URL.
    """
    parsed = make_url(url)
    if parsed.drivername != _ASYNC_DRIVER and parsed.drivername not in _SYNC_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (driver {parsed.drivername!r})")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool: bool = True,
    pool_size: int = 5,
    max_overflow: int = 5,
    connect_timeout_s: float = 10.0,
    **engine_kwargs: Any,
) -> AsyncEngine:
    """Create an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (no connection is opened).

    Parameters
    ----------
    url : str
        PostgreSQL URL; converted with :func:`to_async_url`.
    echo : bool
        Log SQL statements.
    pool : bool
        ``False`` uses :class:`~sqlalchemy.pool.NullPool` (one connection per checkout; for
        short-lived scripts, tests and event loops that do not outlive the engine).
    pool_size, max_overflow : int
        Queue pool sizing when ``pool`` is true.
    connect_timeout_s : float
        asyncpg connect timeout in seconds.
    **engine_kwargs
        Passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Returns
    -------
    AsyncEngine
        Dispose it with ``await engine.dispose()`` when the owner shuts down.
    """
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
    if pool:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
    else:
        kwargs["poolclass"] = NullPool
    connect_args = dict(engine_kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", connect_timeout_s)
    kwargs["connect_args"] = connect_args
    kwargs.update(engine_kwargs)
    return create_async_engine(to_async_url(url), **kwargs)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a session factory bound to ``engine``.

    Sessions do not expire objects on commit (attributes stay readable after ``commit()``
    without another round trip), and do not autoflush implicitly before commit.
    """
    return async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)


@asynccontextmanager
async def session_scope(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Open a session in one transaction: commit on success, roll back on any exception.

    Either every statement issued inside the block is committed or none is: an exception
    (including one raised by the final commit) leaves nothing half-written.

    Examples
    --------
    >>> async with session_scope(factory) as session:  # doctest: +SKIP
    ...     session.add(run)
    """
    async with factory() as session, session.begin():
        yield session

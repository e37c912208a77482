"""All SQL of the config_api service (``users``, ``audit.config_changes``).

The caller owns the transaction; nothing here commits.
"""

from __future__ import annotations

from datetime import datetime

from pairdesk.common.models import ConfigChange, ConfigChangeState, User
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["add_change", "get_user", "latest_changes", "page_changes"]


async def get_user(session: AsyncSession, username: str) -> User | None:
    """The ``users`` row of ``username`` (exact match) or ``None``."""
    return (await session.scalars(select(User).where(User.username == username))).first()


async def add_change(session: AsyncSession, change: ConfigChange) -> ConfigChange:
    """Stage an ``audit.config_changes`` row and flush it (id and occurred_at assigned)."""
    session.add(change)
    await session.flush()
    await session.refresh(change)
    return change


async def latest_changes(session: AsyncSession) -> dict[str, ConfigChange]:
    """The latest ``audit.config_changes`` row of every config name."""
    stmt = (
        select(ConfigChange)
        .ext(distinct_on(ConfigChange.config_name))
        .order_by(ConfigChange.config_name, ConfigChange.occurred_at.desc(), ConfigChange.id.desc())
    )
    return {c.config_name: c for c in (await session.scalars(stmt)).all()}


async def page_changes(
    session: AsyncSession,
    *,
    config_name: str | None,
    state: ConfigChangeState | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[ConfigChange], int]:
    """One page of ``audit.config_changes`` (newest first) and the total matching."""
    conds = []
    if config_name is not None:
        conds.append(ConfigChange.config_name == config_name)
    if state is not None:
        conds.append(ConfigChange.state == state)
    if start is not None:
        conds.append(ConfigChange.occurred_at >= start)
    if end is not None:
        conds.append(ConfigChange.occurred_at < end)
    total = int(
        (await session.scalar(select(func.count()).select_from(ConfigChange).where(*conds))) or 0
    )
    stmt = (
        select(ConfigChange)
        .where(*conds)
        .order_by(ConfigChange.occurred_at.desc(), ConfigChange.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(stmt)).all()), total

"""All SQL of the backtest service (``bt_runs``, ``bt_summary``, ``bt_trades``, ``bt_daily_equity``).

Callers own the transactions. Run liveness uses PostgreSQL advisory locks keyed on the run id
(:func:`try_hold_run_lock` / :func:`try_probe_run_lock`): the worker executing a run holds the
session-level lock from before it claims the run until after its final status commit, so a
``running`` row whose lock is free has lost its worker (see
:func:`pairdesk.backtest.service.sweep_runs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pairdesk.common.models import BtDailyEquity, BtRun, BtRunStatus, BtSummary, BtTrade
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

__all__ = [
    "claim_queued",
    "get_run",
    "get_run_by_idempotency_key",
    "insert_run",
    "list_equity",
    "list_runs",
    "list_summary",
    "list_trades",
    "lock_run",
    "mark_failed",
    "release_run_lock",
    "running_run_ids",
    "stale_queued_run_ids",
    "store_results",
    "try_hold_run_lock",
    "try_probe_run_lock",
]

#: First key of the two-int advisory lock; the second is ``hashtext(run_id)``. "BTRN" in ASCII.
_LOCK_CLASS: Final = 0x4254524E


async def insert_run(
    session: AsyncSession,
    *,
    run_id: str,
    request: dict[str, Any],
    idempotency_key: str | None,
    requested_by: str,
    model_version: str,
) -> BtRun:
    """Insert a ``queued`` run and flush it (raises ``IntegrityError`` on a reused key)."""
    run = BtRun(
        run_id=run_id,
        status=BtRunStatus.QUEUED,
        request=request,
        idempotency_key=idempotency_key,
        requested_by=requested_by,
        model_version=model_version,
    )
    session.add(run)
    await session.flush()
    await session.refresh(run)
    return run


async def get_run(session: AsyncSession, run_id: str) -> BtRun | None:
    """Return the run ``run_id`` (fresh from the database) or ``None``."""
    stmt = select(BtRun).where(BtRun.run_id == run_id).execution_options(populate_existing=True)
    return (await session.scalars(stmt)).one_or_none()


async def lock_run(session: AsyncSession, run_id: str) -> BtRun | None:
    """``SELECT … FOR UPDATE`` the run row (``None`` if absent)."""
    stmt = (
        select(BtRun)
        .where(BtRun.run_id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one_or_none()


async def get_run_by_idempotency_key(session: AsyncSession, key: str) -> BtRun | None:
    """Return the run created with ``Idempotency-Key: key`` or ``None``."""
    stmt = select(BtRun).where(BtRun.idempotency_key == key)
    return (await session.scalars(stmt)).one_or_none()


async def list_runs(
    session: AsyncSession, *, status: BtRunStatus | None, limit: int, offset: int
) -> tuple[list[BtRun], int]:
    """Return one page of runs, newest first, and the total matching ``status``."""
    stmt = select(BtRun)
    count = select(func.count()).select_from(BtRun)
    if status is not None:
        stmt = stmt.where(BtRun.status == status)
        count = count.where(BtRun.status == status)
    stmt = stmt.order_by(BtRun.created_at.desc(), BtRun.run_id).limit(limit).offset(offset)
    rows = list((await session.scalars(stmt)).all())
    return rows, int((await session.execute(count)).scalar_one())


async def claim_queued(session: AsyncSession, run_id: str) -> datetime | None:
    """Move a ``queued`` run to ``running`` and return its new ``started_at`` (else ``None``)."""
    stmt = (
        update(BtRun)
        .where(BtRun.run_id == run_id, BtRun.status == BtRunStatus.QUEUED)
        .values(
            status=BtRunStatus.RUNNING,
            started_at=func.now(),
            finished_at=None,
            error_id=None,
            error_message=None,
        )
        .returning(BtRun.started_at)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_failed(
    session: AsyncSession,
    *,
    run_id: str,
    error_id: str,
    message: str,
    started_at: datetime | None = None,
) -> bool:
    """Set a non-terminal run ``failed`` with ``error_id``; return whether a row changed.

    With ``started_at`` only the attempt that started at that instant is failed (an attempt
    that another process already finished or failed is left alone).
    """
    conds = [
        BtRun.run_id == run_id,
        BtRun.status.in_([BtRunStatus.QUEUED, BtRunStatus.RUNNING]),
    ]
    if started_at is not None:
        conds.append(BtRun.started_at == started_at)
    stmt = (
        update(BtRun)
        .where(*conds)
        .values(
            status=BtRunStatus.FAILED,
            error_id=error_id,
            error_message=message,
            finished_at=func.now(),
        )
    )
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def store_results(
    session: AsyncSession,
    *,
    run_id: str,
    started_at: datetime,
    provenance: dict[str, Any],
    summary: Sequence[dict[str, Any]],
    trades: Sequence[dict[str, Any]],
    equity: Sequence[dict[str, Any]],
) -> bool:
    """Mark the attempt ``succeeded`` and insert its output rows, in the caller's transaction.

    Returns ``False`` (and inserts nothing) when the run is no longer this attempt's
    ``running`` row (failed meanwhile by the sweep); the caller must then roll back.
    """
    stmt = (
        update(BtRun)
        .where(
            BtRun.run_id == run_id,
            BtRun.status == BtRunStatus.RUNNING,
            BtRun.started_at == started_at,
        )
        .values(status=BtRunStatus.SUCCEEDED, finished_at=func.now(), **provenance)
    )
    if not (await session.execute(stmt)).rowcount:  # type: ignore[attr-defined]
        return False
    for model, rows in ((BtSummary, summary), (BtTrade, trades), (BtDailyEquity, equity)):
        if rows:
            await session.execute(insert(model), list(rows))
    return True


async def running_run_ids(session: AsyncSession) -> list[str]:
    """Ids of ``running`` runs, row-locked (``FOR UPDATE SKIP LOCKED``) for the transaction."""
    stmt = (
        select(BtRun.run_id)
        .where(BtRun.status == BtRunStatus.RUNNING)
        .order_by(BtRun.started_at)
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(stmt)).all())


async def stale_queued_run_ids(session: AsyncSession, *, older_than_s: float) -> list[str]:
    """Ids of runs ``queued`` for ``older_than_s`` seconds since their last publish; touches them.

    The last publish time is ``coalesce(updated_at, created_at)``; the returned rows get
    ``updated_at = now()`` so they are not picked again before another ``older_than_s``.
    """
    last = func.coalesce(BtRun.updated_at, BtRun.created_at)
    pick = (
        select(BtRun.run_id)
        .where(
            BtRun.status == BtRunStatus.QUEUED,
            last <= func.now() - timedelta(seconds=older_than_s),
        )
        .order_by(BtRun.created_at)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.scalars(pick)).all())
    if ids:
        await session.execute(
            update(BtRun).where(BtRun.run_id.in_(ids)).values(updated_at=func.now())
        )
    return ids


async def try_hold_run_lock(conn: AsyncConnection, run_id: str) -> bool:
    """Try to take the run's session-level advisory lock on ``conn`` (held until released)."""
    stmt = text("SELECT pg_try_advisory_lock(:cls, hashtext(:run_id))")
    got = bool((await conn.execute(stmt, {"cls": _LOCK_CLASS, "run_id": run_id})).scalar_one())
    await conn.commit()  # session-level: survives the commit; do not sit idle in transaction
    return got


async def release_run_lock(conn: AsyncConnection, run_id: str) -> None:
    """Release the session-level lock taken by :func:`try_hold_run_lock` on ``conn``."""
    stmt = text("SELECT pg_advisory_unlock(:cls, hashtext(:run_id))")
    await conn.execute(stmt, {"cls": _LOCK_CLASS, "run_id": run_id})
    await conn.commit()


async def try_probe_run_lock(session: AsyncSession, run_id: str) -> bool:
    """Try to take the run's lock for the current transaction only.

    ``True`` means no live worker holds the run (the lock is released at commit/rollback).
    """
    stmt = text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(:run_id))")
    return bool((await session.execute(stmt, {"cls": _LOCK_CLASS, "run_id": run_id})).scalar_one())


async def list_summary(session: AsyncSession, run_id: str) -> list[BtSummary]:
    """``bt_summary`` rows of a run, by pair and period."""
    stmt = (
        select(BtSummary)
        .where(BtSummary.run_id == run_id)
        .order_by(BtSummary.pair_id, BtSummary.period)
    )
    return list((await session.scalars(stmt)).all())


async def list_trades(
    session: AsyncSession, *, run_id: str, pair_id: str | None, limit: int, offset: int
) -> tuple[list[BtTrade], int]:
    """One page of a run's trades (by pair, entry time) and the total count."""
    conds = [BtTrade.run_id == run_id]
    if pair_id is not None:
        conds.append(BtTrade.pair_id == pair_id)
    stmt = (
        select(BtTrade)
        .where(*conds)
        .order_by(BtTrade.pair_id, BtTrade.timestamp_entry, BtTrade.trade_id)
        .limit(limit)
        .offset(offset)
    )
    count = select(func.count()).select_from(BtTrade).where(*conds)
    rows = list((await session.scalars(stmt)).all())
    return rows, int((await session.execute(count)).scalar_one())


async def list_equity(
    session: AsyncSession, *, run_id: str, pair_id: str | None
) -> list[BtDailyEquity]:
    """A run's daily equity rows, by pair and date."""
    conds = [BtDailyEquity.run_id == run_id]
    if pair_id is not None:
        conds.append(BtDailyEquity.pair_id == pair_id)
    stmt = select(BtDailyEquity).where(*conds).order_by(BtDailyEquity.pair_id, BtDailyEquity.date)
    return list((await session.scalars(stmt)).all())

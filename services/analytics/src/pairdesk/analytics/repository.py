"""All SQL of the analytics service (read-only: ``bt_*``, ``canonical_bars``; the model registry
is read through :mod:`pairdesk.common.registry`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pairdesk.common.models import (
    BtDailyEquity,
    BtRun,
    BtRunStatus,
    BtSummary,
    CanonicalBar,
    QualityFlag,
)
from sqlalchemy import Boolean, and_, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "FlagCounts",
    "daily_equity",
    "flag_counts_by_month",
    "get_run",
    "latest_succeeded_run",
    "summaries",
]


async def get_run(session: AsyncSession, run_id: str) -> BtRun | None:
    """The ``bt_runs`` row of ``run_id`` or ``None``."""
    return await session.get(BtRun, run_id)


async def latest_succeeded_run(session: AsyncSession) -> BtRun | None:
    """The most recently finished succeeded run that has ``bt_summary`` rows."""
    has_summary = select(BtSummary.id).where(BtSummary.run_id == BtRun.run_id).exists()
    stmt = (
        select(BtRun)
        .where(BtRun.status == BtRunStatus.SUCCEEDED, has_summary)
        .order_by(func.coalesce(BtRun.finished_at, BtRun.created_at).desc(), BtRun.run_id.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


async def summaries(
    session: AsyncSession, run_id: str, pair_id: str | None = None
) -> list[BtSummary]:
    """``bt_summary`` rows of a run (optionally one pair), by pair and period."""
    stmt = select(BtSummary).where(BtSummary.run_id == run_id)
    if pair_id is not None:
        stmt = stmt.where(BtSummary.pair_id == pair_id)
    stmt = stmt.order_by(BtSummary.pair_id, BtSummary.period)
    return list((await session.scalars(stmt)).all())


async def daily_equity(
    session: AsyncSession, run_id: str, pair_id: str | None = None
) -> list[BtDailyEquity]:
    """``bt_daily_equity`` rows of a run (optionally one pair), by pair and date."""
    stmt = select(BtDailyEquity).where(BtDailyEquity.run_id == run_id)
    if pair_id is not None:
        stmt = stmt.where(BtDailyEquity.pair_id == pair_id)
    stmt = stmt.order_by(BtDailyEquity.pair_id, BtDailyEquity.date)
    return list((await session.scalars(stmt)).all())


@dataclass(frozen=True)
class FlagCounts:
    """Bar counts by quality flag of one symbol × timeframe × UTC month."""

    symbol: str
    timeframe: str
    month: datetime
    bars: int
    ok: int
    missing: int
    outlier: int
    quarantined: bool


async def flag_counts_by_month(
    session: AsyncSession,
    *,
    symbol: str | None,
    timeframe: str | None,
    start: datetime | None,
    end: datetime | None,
) -> list[FlagCounts]:
    """Count ``canonical_bars`` rows per symbol, timeframe, UTC month and quality flag.

    ``quarantined`` is true when any bar of the month carries ``metadata.quarantined`` (set by
    data_pipeline from the store partition's ``__quarantine.json``).
    """
    month = func.date_trunc("month", func.timezone("UTC", CanonicalBar.ts_utc))
    flag = CanonicalBar.quality_flag
    stmt = select(
        CanonicalBar.symbol,
        CanonicalBar.timeframe,
        month.label("month"),
        func.count(),
        func.count().filter(flag == QualityFlag.OK),
        func.count().filter(flag == QualityFlag.MISSING),
        func.count().filter(flag == QualityFlag.OUTLIER),
        func.coalesce(func.bool_or(cast(CanonicalBar.meta["quarantined"].astext, Boolean)), False),
    )
    conds = []
    if symbol is not None:
        conds.append(CanonicalBar.symbol == symbol)
    if timeframe is not None:
        conds.append(CanonicalBar.timeframe == timeframe)
    if start is not None:
        conds.append(CanonicalBar.ts_utc >= start)
    if end is not None:
        conds.append(CanonicalBar.ts_utc < end)
    if conds:
        stmt = stmt.where(and_(*conds))
    stmt = stmt.group_by(CanonicalBar.symbol, CanonicalBar.timeframe, month).order_by(
        CanonicalBar.symbol, CanonicalBar.timeframe, month
    )
    rows = (await session.execute(stmt)).all()
    return [
        FlagCounts(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]), bool(r[7]))
        for r in rows
    ]

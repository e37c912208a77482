"""All SQL of the data_pipeline service (``canonical_bars``, ``execution_logs``).

The caller owns the transaction (``async with session.begin():``); nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pairdesk.common.models import CanonicalBar, ExecutionLog, ensure_canonical_partitions
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "DELETE_CHUNK_ROWS",
    "UPSERT_CHUNK_ROWS",
    "BarColumns",
    "DbWatermark",
    "add_execution_log",
    "delete_bars",
    "ensure_partitions",
    "existing_timestamps",
    "page_bars",
    "upsert_bars",
    "watermarks",
]

#: Rows per upsert statement (each column travels as one array parameter).
UPSERT_CHUNK_ROWS: Final = 20_000
#: Timestamps per DELETE statement (one bound parameter each; asyncpg allows 32,767).
DELETE_CHUNK_ROWS: Final = 10_000

# One array parameter per column, unnested server-side. Prices travel as float8 and are cast
# to the columns' numeric(20,8)/numeric(28,8), so an unchanged float gives an unchanged numeric.
# The WHERE clause compares the bar's content (not its lineage): identical rows are not
# rewritten and not returned.
_UPSERT_SQL: Final = text(
    """
INSERT INTO canonical_bars (symbol, timeframe, ts_utc, open, high, low, close, volume,
                            quality_flag, source_id, ingest_run_id, metadata)
SELECT :symbol, :timeframe, u.ts, u.o, u.h, u.l, u.c, u.v, u.q, u.s, u.r,
       jsonb_build_object('imputed', u.imp, 'spike', u.spk, 'quarantined', u.qua)
FROM unnest(CAST(:ts AS timestamptz[]), CAST(:o AS float8[]), CAST(:h AS float8[]),
            CAST(:l AS float8[]), CAST(:c AS float8[]), CAST(:v AS float8[]),
            CAST(:q AS text[]), CAST(:s AS text[]), CAST(:r AS text[]),
            CAST(:imp AS boolean[]), CAST(:spk AS boolean[]), CAST(:qua AS boolean[]))
     AS u(ts, o, h, l, c, v, q, s, r, imp, spk, qua)
ON CONFLICT (symbol, timeframe, ts_utc) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, quality_flag = excluded.quality_flag, metadata = excluded.metadata,
    source_id = excluded.source_id, ingest_run_id = excluded.ingest_run_id, ingested_at = now()
WHERE (canonical_bars.open, canonical_bars.high, canonical_bars.low, canonical_bars.close,
       canonical_bars.volume, canonical_bars.quality_flag, canonical_bars.metadata)
      IS DISTINCT FROM
      (excluded.open, excluded.high, excluded.low, excluded.close,
       excluded.volume, excluded.quality_flag, excluded.metadata)
RETURNING canonical_bars.ts_utc
"""
)


@dataclass
class BarColumns:
    """Bars of one symbol × timeframe, column-wise (all lists of equal length).

    ``volume`` is ``None`` where unknown; ``imputed``, ``spike`` and ``quarantined`` go to
    ``canonical_bars.metadata``.
    """

    symbol: str
    timeframe: str
    ts_utc: list[datetime] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    volume: list[float | None] = field(default_factory=list)
    quality_flag: list[str] = field(default_factory=list)
    source_id: list[str] = field(default_factory=list)
    ingest_run_id: list[str] = field(default_factory=list)
    imputed: list[bool] = field(default_factory=list)
    spike: list[bool] = field(default_factory=list)
    quarantined: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts_utc)

    def params(self, lo: int, hi: int) -> dict[str, Any]:
        """Bound parameters of :data:`_UPSERT_SQL` for rows ``lo:hi``."""
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "ts": self.ts_utc[lo:hi],
            "o": self.open[lo:hi],
            "h": self.high[lo:hi],
            "l": self.low[lo:hi],
            "c": self.close[lo:hi],
            "v": self.volume[lo:hi],
            "q": self.quality_flag[lo:hi],
            "s": self.source_id[lo:hi],
            "r": self.ingest_run_id[lo:hi],
            "imp": self.imputed[lo:hi],
            "spk": self.spike[lo:hi],
            "qua": self.quarantined[lo:hi],
        }


@dataclass(frozen=True)
class DbWatermark:
    """Latest bar, row count and source of the latest bar of one symbol × timeframe."""

    symbol: str
    timeframe: str
    last_ts: datetime
    bar_count: int
    source_id: str


async def ensure_partitions(session: AsyncSession, start: datetime, end: datetime) -> int:
    """Create the monthly ``canonical_bars`` partitions covering ``[start, end)``.

    Returns the number created (0 under TimescaleDB or when all exist).
    """
    return await ensure_canonical_partitions(session, start, end)


async def existing_timestamps(
    session: AsyncSession, *, symbol: str, timeframe: str, start: datetime, end: datetime
) -> set[datetime]:
    """Open times of the stored bars of ``symbol`` × ``timeframe`` in ``[start, end)``."""
    stmt = select(CanonicalBar.ts_utc).where(
        CanonicalBar.symbol == symbol,
        CanonicalBar.timeframe == timeframe,
        CanonicalBar.ts_utc >= start,
        CanonicalBar.ts_utc < end,
    )
    return set((await session.scalars(stmt)).all())


async def upsert_bars(session: AsyncSession, bars: BarColumns) -> list[datetime]:
    """Insert bars, or rewrite stored ones whose content differs; return the changed ``ts_utc``.

    ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (symbol, timeframe, ts_utc) DO UPDATE
    ... WHERE (open, high, low, close, volume, quality_flag, metadata) IS DISTINCT FROM
    excluded``: an identical row is left alone (no write, not returned), so re-ingesting the
    same drop changes nothing. A rewritten row takes the lineage (``source_id``,
    ``ingest_run_id``, ``ingested_at``) of this run. Rows go in chunks of
    :data:`UPSERT_CHUNK_ROWS`.

    Parameters
    ----------
    session : AsyncSession
        Inside the caller's transaction (the month partitions must exist).
    bars : BarColumns
        The rows to write.

    Returns
    -------
    list of datetime
        ``ts_utc`` of every inserted or rewritten row.
    """
    changed: list[datetime] = []
    for lo in range(0, len(bars), UPSERT_CHUNK_ROWS):
        result = await session.execute(_UPSERT_SQL, bars.params(lo, lo + UPSERT_CHUNK_ROWS))
        changed.extend(result.scalars().all())
    return changed


async def delete_bars(
    session: AsyncSession, *, symbol: str, timeframe: str, timestamps: Sequence[datetime]
) -> int:
    """Delete the bars of ``symbol`` × ``timeframe`` at ``timestamps``; return how many."""
    total = 0
    for i in range(0, len(timestamps), DELETE_CHUNK_ROWS):
        stmt = delete(CanonicalBar).where(
            CanonicalBar.symbol == symbol,
            CanonicalBar.timeframe == timeframe,
            CanonicalBar.ts_utc.in_(list(timestamps[i : i + DELETE_CHUNK_ROWS])),
        )
        result = await session.execute(stmt)
        total += int(getattr(result, "rowcount", 0) or 0)
    return total


async def add_execution_log(session: AsyncSession, log: ExecutionLog) -> None:
    """Stage an ``execution_logs`` row (written at the caller's commit)."""
    session.add(log)
    await session.flush()


async def watermarks(
    session: AsyncSession, *, symbol: str | None = None, timeframe: str | None = None
) -> list[DbWatermark]:
    """Per symbol × timeframe: latest ``ts_utc``, row count and the latest bar's ``source_id``."""
    last_source = func.array_agg(
        aggregate_order_by(CanonicalBar.source_id, CanonicalBar.ts_utc.desc())
    )
    stmt = (
        select(
            CanonicalBar.symbol,
            CanonicalBar.timeframe,
            func.max(CanonicalBar.ts_utc),
            func.count(),
            last_source[1],
        )
        .group_by(CanonicalBar.symbol, CanonicalBar.timeframe)
        .order_by(CanonicalBar.symbol, CanonicalBar.timeframe)
    )
    if symbol is not None:
        stmt = stmt.where(CanonicalBar.symbol == symbol)
    if timeframe is not None:
        stmt = stmt.where(CanonicalBar.timeframe == timeframe)
    rows = (await session.execute(stmt)).all()
    return [DbWatermark(r[0], r[1], r[2], int(r[3]), str(r[4])) for r in rows]


async def page_bars(
    session: AsyncSession,
    *,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[CanonicalBar], int]:
    """One page of bars in ``[start, end)`` ordered by ``ts_utc``, plus the total matching."""
    conds = [CanonicalBar.symbol == symbol, CanonicalBar.timeframe == timeframe]
    if start is not None:
        conds.append(CanonicalBar.ts_utc >= start)
    if end is not None:
        conds.append(CanonicalBar.ts_utc < end)
    total = int((await session.scalar(select(func.count()).where(*conds))) or 0)
    stmt = (
        select(CanonicalBar).where(*conds).order_by(CanonicalBar.ts_utc).limit(limit).offset(offset)
    )
    return list((await session.scalars(stmt)).all()), total

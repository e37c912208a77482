"""All SQL of core_inference: closed bars, the signal outbox, signal queries, audit rows.

Tables (spec 004 §ml-assets-analytics データソース, DESIGN.md §1): ``canonical_bars`` (read),
``signals_history`` / ``signals_live`` (written: one transaction per emitted signal, the outbox
of the Redis stream), ``model_registry`` (through :mod:`pairdesk.common.registry`) and
``audit.analytics_actions`` (model activations). Every function runs in the caller's session
and transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from pairdesk.common.models import AnalyticsAction, CanonicalBar, SignalHistory, SignalLive
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

__all__ = [
    "SignalRecord",
    "clear_stream_ids",
    "count_pending",
    "fetch_bars",
    "history_page",
    "insert_audit",
    "insert_signal",
    "last_published",
    "last_signal_ts",
    "latest_signals",
    "pair_horizon",
    "pending_signals",
    "published_before",
    "recorded_signals",
    "set_stream_id",
]

_OHLC = ("open", "high", "low", "close")


@dataclass(frozen=True)
class SignalRecord:
    """One signal to store: the columns of ``signals_history`` / ``signals_live``.

    Numbers are plain floats (NaN → NULL); ``payload`` is the JSON published on the bus.
    """

    pair_id: str
    timeframe: str
    ts_utc: datetime
    action: str
    z: float | None
    return_prob: float | None
    risk_score: float | None
    position_scale: float | None
    model_version: str
    payload: dict[str, Any]


def _dec(value: float | None, places: int) -> Decimal | None:
    if value is None or value != value:  # None or NaN
        return None
    return round(Decimal(repr(float(value))), places)


# ------------------------------------------------------------------------------------- bars


async def pair_horizon(
    session: AsyncSession, sym_a: str, sym_b: str, timeframe: str
) -> datetime | None:
    """Latest bar time both legs have reached: ``min`` over the legs of ``max(ts_utc)``.

    A bar later than this may still be missing one leg (it arrives later), so the loop never
    reads past it and cannot skip a bar whose second leg is in flight.
    """
    stmt = (
        select(CanonicalBar.symbol, func.max(CanonicalBar.ts_utc))
        .where(CanonicalBar.timeframe == timeframe, CanonicalBar.symbol.in_([sym_a, sym_b]))
        .group_by(CanonicalBar.symbol)
    )
    rows = dict((await session.execute(stmt)).all())
    if sym_a not in rows or sym_b not in rows:
        return None
    return min(rows[sym_a], rows[sym_b])


async def fetch_bars(
    session: AsyncSession,
    *,
    sym_a: str,
    sym_b: str,
    timeframe: str,
    flags: Sequence[str],
    include_imputed: bool = True,
    after: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    newest: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Closed bars of both legs aligned on their common ``ts_utc`` (inner join, no fill).

    Parameters
    ----------
    sym_a, sym_b, timeframe : str
        Legs and timeframe.
    flags : sequence of str
        Usable ``quality_flag`` values (both legs must have one).
    include_imputed : bool
        Also use ``missing`` bars the DQ step filled (``metadata.imputed`` true: gaps of at
        most ``missing_fill_max_run`` bars inside a session), as the research store does.
    after, until : datetime, optional
        Bars with ``after < ts_utc <= until``.
    limit : int
        Maximum number of bars.
    newest : bool
        Take the ``limit`` newest bars of the range instead of the oldest.

    Returns
    -------
    (DataFrame, DataFrame)
        OHLC (float64) of legs A and B, same ascending UTC ``DatetimeIndex`` named ``ts_utc``.
    """
    a = aliased(CanonicalBar)
    b = aliased(CanonicalBar)

    def usable(leg: Any) -> Any:
        ok = leg.quality_flag.in_(list(flags))
        if not include_imputed:
            return ok
        return or_(ok, and_(leg.quality_flag == "missing", leg.meta["imputed"].as_boolean()))

    cond = [a.symbol == sym_a, a.timeframe == timeframe, usable(a), usable(b)]
    if after is not None:
        cond.append(a.ts_utc > after)
    if until is not None:
        cond.append(a.ts_utc <= until)
    stmt = (
        select(a.ts_utc, a.open, a.high, a.low, a.close, b.open, b.high, b.low, b.close)
        .join(b, and_(b.symbol == sym_b, b.timeframe == a.timeframe, b.ts_utc == a.ts_utc))
        .where(*cond)
        .order_by(a.ts_utc.desc() if newest else a.ts_utc)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    if newest:
        rows = rows[::-1]
    idx = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True), name="ts_utc")
    va = [[float(x) for x in r[1:5]] for r in rows]
    vb = [[float(x) for x in r[5:9]] for r in rows]
    cols = list(_OHLC)
    return (
        pd.DataFrame(va, index=idx, columns=cols, dtype="float64"),
        pd.DataFrame(vb, index=idx, columns=cols, dtype="float64"),
    )


# ------------------------------------------------------------------------------------- signals


async def last_signal_ts(session: AsyncSession, pair_id: str, timeframe: str) -> datetime | None:
    """Open time of the pair's newest recorded signal (any model), or None."""
    stmt = select(func.max(SignalHistory.ts_utc)).where(
        SignalHistory.pair_id == pair_id, SignalHistory.timeframe == timeframe
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def recorded_signals(
    session: AsyncSession, pair_id: str, timeframe: str, since: datetime
) -> dict[pd.Timestamp, SignalHistory]:
    """The recorded signal of every bar ``>= since`` (the newest row when models changed)."""
    stmt = (
        select(SignalHistory)
        .where(
            SignalHistory.pair_id == pair_id,
            SignalHistory.timeframe == timeframe,
            SignalHistory.ts_utc >= since,
        )
        .order_by(SignalHistory.ts_utc, SignalHistory.id)
    )
    out: dict[pd.Timestamp, SignalHistory] = {}
    for row in (await session.scalars(stmt)).all():
        out[pd.Timestamp(row.ts_utc).tz_convert("UTC")] = row
    return out


async def insert_signal(session: AsyncSession, rec: SignalRecord) -> int | None:
    """Write one signal to ``signals_history`` and upsert ``signals_live`` (the outbox).

    Returns
    -------
    int or None
        The ``signals_history.id``; None when the same (pair, timeframe, bar, model) signal
        was already stored (nothing is changed then).
    """
    values = {
        "pair_id": rec.pair_id,
        "timeframe": rec.timeframe,
        "ts_utc": rec.ts_utc,
        "action": rec.action,
        "z": _dec(rec.z, 5),
        "return_prob": _dec(rec.return_prob, 4),
        "risk_score": _dec(rec.risk_score, 4),
        "position_scale": _dec(rec.position_scale, 4),
        "model_version": rec.model_version,
        "payload": rec.payload,
    }
    hist = (
        pg_insert(SignalHistory)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["pair_id", "timeframe", "ts_utc", "model_version"])
        .returning(SignalHistory.id)
    )
    new_id = (await session.execute(hist)).scalar_one_or_none()
    if new_id is None:
        return None
    live = pg_insert(SignalLive).values(**values, stream_id=None)
    live = live.on_conflict_do_update(
        index_elements=["pair_id", "timeframe"],
        set_={
            **{k: live.excluded[k] for k in values if k not in ("pair_id", "timeframe")},
            "stream_id": None,
            "updated_at": func.now(),
        },
        where=SignalLive.ts_utc <= live.excluded.ts_utc,
    )
    await session.execute(live)
    return int(new_id)


async def pending_signals(
    session: AsyncSession, pair_ids: Sequence[str], timeframe: str, limit: int
) -> list[SignalHistory]:
    """Stored signals not yet in the Redis stream (``stream_id IS NULL``), oldest id first."""
    stmt = (
        select(SignalHistory)
        .where(
            SignalHistory.stream_id.is_(None),
            SignalHistory.pair_id.in_(list(pair_ids)),
            SignalHistory.timeframe == timeframe,
        )
        .order_by(SignalHistory.id)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def count_pending(session: AsyncSession, pair_ids: Sequence[str], timeframe: str) -> int:
    """Number of stored signals not yet published."""
    stmt = select(func.count()).where(
        SignalHistory.stream_id.is_(None),
        SignalHistory.pair_id.in_(list(pair_ids)),
        SignalHistory.timeframe == timeframe,
    )
    return int((await session.execute(stmt)).scalar_one())


async def set_stream_id(session: AsyncSession, row: SignalHistory, stream_id: str) -> None:
    """Record the stream entry id of a published signal (history, and live if it is the
    pair's current live signal)."""
    await session.execute(
        update(SignalHistory).where(SignalHistory.id == row.id).values(stream_id=stream_id)
    )
    await session.execute(
        update(SignalLive)
        .where(
            SignalLive.pair_id == row.pair_id,
            SignalLive.timeframe == row.timeframe,
            SignalLive.ts_utc == row.ts_utc,
            SignalLive.model_version == row.model_version,
        )
        .values(stream_id=stream_id)
    )


async def last_published(
    session: AsyncSession, pair_ids: Sequence[str], timeframe: str
) -> SignalHistory | None:
    """The newest signal of these pairs that has a stream id."""
    stmt = (
        select(SignalHistory)
        .where(
            SignalHistory.stream_id.is_not(None),
            SignalHistory.pair_id.in_(list(pair_ids)),
            SignalHistory.timeframe == timeframe,
        )
        .order_by(SignalHistory.id.desc())
        .limit(1)
    )
    return (await session.scalars(stmt)).first()


async def published_before(
    session: AsyncSession,
    pair_ids: Sequence[str],
    timeframe: str,
    *,
    before_id: int | None,
    limit: int,
) -> list[tuple[int, str]]:
    """``(id, stream_id)`` of published signals of these pairs, newest id first, with
    ``id < before_id`` when given (walks the history backwards in pages)."""
    cond = [
        SignalHistory.stream_id.is_not(None),
        SignalHistory.pair_id.in_(list(pair_ids)),
        SignalHistory.timeframe == timeframe,
    ]
    if before_id is not None:
        cond.append(SignalHistory.id < before_id)
    stmt = (
        select(SignalHistory.id, SignalHistory.stream_id)
        .where(*cond)
        .order_by(SignalHistory.id.desc())
        .limit(limit)
    )
    return [(int(i), str(sid)) for i, sid in (await session.execute(stmt)).all()]


async def clear_stream_ids(session: AsyncSession, ids: Sequence[int]) -> int:
    """Mark signals as unpublished again (their stream entries were lost), so the publisher
    re-sends them in id order; the matching ``signals_live`` rows are cleared too.

    Returns
    -------
    int
        ``signals_history`` rows changed.
    """
    if not ids:
        return 0
    lost = select(SignalHistory.stream_id).where(SignalHistory.id.in_(list(ids)))
    await session.execute(
        update(SignalLive)
        .where(SignalLive.stream_id.in_(lost.scalar_subquery()))
        .values(stream_id=None)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(
        update(SignalHistory)
        .where(SignalHistory.id.in_(list(ids)))
        .values(stream_id=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def latest_signals(
    session: AsyncSession, *, timeframe: str | None, pair_id: str | None
) -> list[SignalLive]:
    """``signals_live`` rows, optionally of one pair / timeframe, by pair id."""
    stmt = select(SignalLive).order_by(SignalLive.pair_id, SignalLive.timeframe)
    if timeframe is not None:
        stmt = stmt.where(SignalLive.timeframe == timeframe)
    if pair_id is not None:
        stmt = stmt.where(SignalLive.pair_id == pair_id)
    return list((await session.scalars(stmt)).all())


async def history_page(
    session: AsyncSession,
    *,
    pair_id: str | None,
    timeframe: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[SignalHistory], int]:
    """One page of ``signals_history`` (newest bar first) and the total matching rows."""
    cond = []
    if pair_id is not None:
        cond.append(SignalHistory.pair_id == pair_id)
    if timeframe is not None:
        cond.append(SignalHistory.timeframe == timeframe)
    if action is not None:
        cond.append(SignalHistory.action == action)
    if since is not None:
        cond.append(SignalHistory.ts_utc >= since)
    if until is not None:
        cond.append(SignalHistory.ts_utc < until)
    total = (
        await session.execute(select(func.count()).select_from(SignalHistory).where(*cond))
    ).scalar_one()
    stmt = (
        select(SignalHistory)
        .where(*cond)
        .order_by(SignalHistory.ts_utc.desc(), SignalHistory.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(stmt)).all()), int(total)


# ------------------------------------------------------------------------------------- audit


async def insert_audit(
    session: AsyncSession,
    *,
    action: str,
    actor: str,
    actor_role: str | None,
    reason: str,
    diff: dict[str, Any],
    request_id: str | None,
    result: str,
) -> AnalyticsAction:
    """Append one row to ``audit.analytics_actions`` (who, when, why, diff)."""
    row = AnalyticsAction(
        action=action,
        actor=actor,
        actor_role=actor_role,
        reason=reason,
        diff=diff,
        request_id=request_id,
        result=result,
        scope="portfolio",
    )
    session.add(row)
    await session.flush()
    return row

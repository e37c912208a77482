"""SQL of core_inference on a real PostgreSQL: bar alignment and quality filter, the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pairdesk.common.db import create_engine, create_session_factory
from pairdesk.common.models import CanonicalBar, SignalHistory, SignalLive
from pairdesk.core_inference import repository as repo
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

T0 = datetime(2024, 3, 4, 10, tzinfo=UTC)


def _ts(i: int) -> datetime:
    return T0 + timedelta(hours=i)


def _bar(symbol: str, i: int, flag: str = "ok", imputed: bool = False) -> dict[str, Any]:
    px = Decimal(100 + i)
    return {
        "symbol": symbol,
        "timeframe": "1h",
        "ts_utc": _ts(i),
        "open": px,
        "high": px + 1,
        "low": px - 1,
        "close": px,
        "quality_flag": flag,
        "source_id": "test",
        "ingest_run_id": "r1",
        "metadata": {"imputed": imputed, "spike": False, "quarantined": False},
    }


def _record(i: int, model: str = "m1") -> repo.SignalRecord:
    return repo.SignalRecord(
        pair_id="AAA_BBB",
        timeframe="1h",
        ts_utc=_ts(i),
        action="none",
        z=float("nan"),
        return_prob=None,
        risk_score=0.123456,
        position_scale=None,
        model_version=model,
        payload={"i": i},
    )


def test_bars_are_aligned_quality_filtered_and_bounded_by_both_legs(fresh_db: str) -> None:
    rows = [
        _bar("AAA", 0),
        _bar("AAA", 1),
        _bar("AAA", 2, "outlier"),
        _bar("AAA", 3, "missing", imputed=True),
        _bar("AAA", 4),
        _bar("AAA", 5),  # leg B has not reached this bar yet
        _bar("BBB", 0),
        _bar("BBB", 1, "missing"),  # a gap the DQ step did not fill
        _bar("BBB", 2),
        _bar("BBB", 3),
        _bar("BBB", 4, "resampled"),
    ]

    async def run() -> None:
        engine = create_engine(fresh_db, pool=False)
        try:
            async with engine.begin() as conn:
                await conn.execute(pg_insert(CanonicalBar), rows)
            async with create_session_factory(engine)() as s:
                horizon = await repo.pair_horizon(s, "AAA", "BBB", "1h")
                assert horizon == _ts(4)
                assert await repo.pair_horizon(s, "AAA", "CCC", "1h") is None
                kw: dict[str, Any] = {
                    "sym_a": "AAA",
                    "sym_b": "BBB",
                    "timeframe": "1h",
                    "flags": ("ok", "resampled"),
                    "limit": 100,
                }
                a, b = await repo.fetch_bars(s, **kw, until=horizon)
                assert list(a.index) == [_ts(0), _ts(3), _ts(4)]
                assert a.index.equals(b.index)
                assert list(a.columns) == ["open", "high", "low", "close"]
                assert a["close"].tolist() == [100.0, 103.0, 104.0]
                assert b["high"].tolist() == [101.0, 104.0, 105.0]
                a, _ = await repo.fetch_bars(s, **kw, after=_ts(0), until=horizon)
                assert list(a.index) == [_ts(3), _ts(4)]
                a, _ = await repo.fetch_bars(s, **{**kw, "limit": 2}, until=horizon, newest=True)
                assert list(a.index) == [_ts(3), _ts(4)]
                a, _ = await repo.fetch_bars(s, **kw, include_imputed=False)
                assert list(a.index) == [_ts(0), _ts(4)]
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_outbox_insert_publish_and_requeue(fresh_db: str) -> None:
    async def run() -> None:
        engine = create_engine(fresh_db, pool=False)
        sessions = create_session_factory(engine)
        try:
            ids = []
            for i in range(4):
                async with sessions() as s, s.begin():
                    ids.append(await repo.insert_signal(s, _record(i)))
            async with sessions() as s, s.begin():  # same bar and model: stored once
                assert await repo.insert_signal(s, _record(3)) is None
            async with sessions() as s:
                pending = await repo.pending_signals(s, ["AAA_BBB"], "1h", 10)
                assert [p.id for p in pending] == ids
                assert pending[0].z is None
                assert pending[0].risk_score == Decimal("0.1235")
                assert await repo.last_signal_ts(s, "AAA_BBB", "1h") == _ts(3)
                live = (await s.scalars(select(SignalLive))).all()
                assert [(r.ts_utc, r.stream_id) for r in live] == [(_ts(3), None)]
            for row, sid in zip(pending, ("5-0", "5-1", "6-0", "10-0"), strict=True):
                async with sessions() as s, s.begin():
                    await repo.set_stream_id(s, row, sid)
            async with sessions() as s:
                assert await repo.count_pending(s, ["AAA_BBB"], "1h") == 0
                last = await repo.last_published(s, ["AAA_BBB"], "1h")
                assert last is not None
                assert last.stream_id == "10-0"
                live_row = (await s.scalars(select(SignalLive))).one()
                assert live_row.stream_id == "10-0"
            async with sessions() as s:
                page = await repo.published_before(s, ["AAA_BBB"], "1h", before_id=None, limit=3)
                assert page == [(ids[3], "10-0"), (ids[2], "6-0"), (ids[1], "5-1")]
                older = await repo.published_before(s, ["AAA_BBB"], "1h", before_id=ids[1], limit=3)
                assert older == [(ids[0], "5-0")]
                assert (
                    await repo.published_before(s, ["CCC_DDD"], "1h", before_id=None, limit=3) == []
                )
            # entries 5-0, 5-1 and 10-0 were lost: re-queued, live row included
            async with sessions() as s, s.begin():
                assert await repo.clear_stream_ids(s, [ids[0], ids[1], ids[3]]) == 3
                assert await repo.clear_stream_ids(s, []) == 0
            async with sessions() as s:
                left = (await s.scalars(select(SignalHistory).order_by(SignalHistory.id))).all()
                assert [r.stream_id for r in left] == [None, None, "6-0", None]
                assert (await s.scalars(select(SignalLive))).one().stream_id is None
            async with sessions() as s:
                assert await repo.count_pending(s, ["AAA_BBB"], "1h") == 3
                rec = await repo.recorded_signals(s, "AAA_BBB", "1h", _ts(2))
                assert sorted(rec) == sorted(__import__("pandas").Timestamp(_ts(i)) for i in (2, 3))
        finally:
            await engine.dispose()

    asyncio.run(run())

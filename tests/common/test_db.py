"""ORM models on a real PostgreSQL: numeric precision, constraints, atomicity, partitions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from pairdesk.common import models
from pairdesk.common.db import create_engine, create_session_factory, session_scope, to_async_url
from pairdesk.common.models import (
    AnalyticsAction,
    BtRun,
    BtRunStatus,
    BtTrade,
    CanonicalBar,
    ExecutionLog,
    ExecutionStatus,
    ExecutionType,
    QualityFlag,
    TradeSide,
)
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def _run_id() -> str:
    return f"bt_{uuid.uuid4().hex}"


def _trade(run_id: str, **overrides: object) -> BtTrade:
    values: dict[str, object] = {
        "trade_id": str(uuid.uuid4()),
        "run_id": run_id,
        "pair_id": "XAUUSD_XAGUSD",
        "timestamp_entry": datetime(2025, 10, 1, 12, tzinfo=UTC),
        "timestamp_exit": datetime(2025, 10, 1, 18, tzinfo=UTC),
        "side": TradeSide.SHORT_SPREAD,
        "qty_a": Decimal("0.12"),
        "qty_b": Decimal("0.11"),
        "price_a": Decimal("1852.35"),
        "price_b": Decimal("23.451"),
        "z_at_entry": Decimal("2.15300"),
        "z_at_exit": Decimal("0.43200"),
        "return_prob": Decimal("0.8200"),
        "risk_score": Decimal("0.1800"),
        "commission_bps": Decimal("10.0000"),
        "slippage_bps": Decimal("8.0000"),
        "pnl": Decimal("12.34"),
        "model_version": "20251014_1235",
        "feature_schema_hash": "abcd1234",
        "code_hash": "f00ba7",
        "seed": 42,
    }
    values.update(overrides)
    return BtTrade(**values)


def test_to_async_url_rewrites_schemes() -> None:
    assert to_async_url("postgresql://u:p@h:5432/db") == "postgresql+asyncpg://u:p@h:5432/db"
    assert to_async_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert (
        to_async_url("postgresql://postgres:@/postgres?host=/tmp/x")
        == "postgresql+asyncpg://postgres:@/postgres?host=%2Ftmp%2Fx"
    )
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_async_url("mysql://u@h/db")


def test_bt_run_and_trades_round_trip_with_numeric_precision(db_session: SessionFactory) -> None:
    # The data dictionary example row (spec 004 §データディクショナリ bt_trades), plus values at the
    # full scale of each column and one beyond it, which PostgreSQL rounds half away from zero.
    run_id = _run_id()
    tricky = {
        "qty_a": Decimal("0.1234565"),  # numeric(18,6): 7th decimal rounds up
        "price_a": Decimal("123456789012.345678"),  # 12 integer + 6 decimal digits
        "price_b": Decimal("0.000001"),
        "z_at_entry": Decimal("-12345.67891"),  # numeric(10,5) extremes
        "return_prob": Decimal("0.99995"),  # numeric(6,4) -> 1.0000
        "pnl": Decimal("-0.0000005"),  # -> -0.000001
    }

    async def run() -> None:
        async with db_session() as session:
            session.add(
                BtRun(
                    run_id=run_id,
                    status=BtRunStatus.RUNNING,
                    request={"universe": "u.yaml", "period": "2022-01:2024-06", "timeframe": "1h"},
                    params_hash="p" * 64,
                    data_hash="d" * 64,
                    code_hash="c" * 40,
                    seed=42,
                    idempotency_key=f"key-{run_id}",
                    started_at=datetime(2025, 10, 1, 0, 0, 0, 123456, tzinfo=UTC),
                )
            )
            await session.flush()
            plain = _trade(run_id)
            edge = _trade(run_id, **tricky)
            session.add_all([plain, edge])
            await session.commit()
            session.expunge_all()

            run_row = await session.get(BtRun, run_id)
            assert run_row is not None
            assert run_row.status is BtRunStatus.RUNNING
            assert run_row.request["period"] == "2022-01:2024-06"
            assert run_row.started_at == datetime(2025, 10, 1, 0, 0, 0, 123456, tzinfo=UTC)
            assert run_row.created_at.tzinfo is not None

            back = {
                t.trade_id: t
                for t in (await session.scalars(select(BtTrade).where(BtTrade.run_id == run_id)))
            }
            p = back[plain.trade_id]
            assert p.price_a == Decimal("1852.350000")
            assert p.price_b == Decimal("23.451000")
            assert p.z_at_entry == Decimal("2.15300")
            assert p.return_prob == Decimal("0.8200")
            assert p.side is TradeSide.SHORT_SPREAD
            assert p.timestamp_exit == datetime(2025, 10, 1, 18, tzinfo=UTC)
            assert isinstance(p.pnl, Decimal)

            e = back[edge.trade_id]
            # independent rounding: Decimal.quantize with ROUND_HALF_UP (PostgreSQL numeric
            # rounds ties away from zero)
            q6, q4 = Decimal("0.000001"), Decimal("0.0001")
            assert e.qty_a == tricky["qty_a"].quantize(q6, ROUND_HALF_UP) == Decimal("0.123457")
            assert e.price_a == Decimal("123456789012.345678")
            assert e.price_b == Decimal("0.000001")
            assert e.z_at_entry == Decimal("-12345.67891")
            assert e.return_prob == tricky["return_prob"].quantize(q4, ROUND_HALF_UP)
            assert e.pnl == Decimal("-0.000001")

    asyncio.run(run())


def test_idempotency_key_is_unique(db_session: SessionFactory) -> None:
    async def run() -> None:
        async with db_session() as session:
            session.add(BtRun(run_id=_run_id(), idempotency_key="same-key"))
            await session.commit()
            session.add(BtRun(run_id=_run_id(), idempotency_key="same-key"))
            with pytest.raises(IntegrityError, match="bt_runs_idempotency_key_key"):
                await session.flush()
            await session.rollback()
            count = await session.scalar(
                select(func.count()).select_from(BtRun).where(BtRun.idempotency_key == "same-key")
            )
            assert count == 1

    asyncio.run(run())


def test_failing_transaction_leaves_nothing_half_written(pg_url: str) -> None:
    """A run and its trades are written together or not at all (session_scope)."""
    run_id = _run_id()

    async def run() -> tuple[int, int]:
        engine = create_engine(pg_url, pool=False)
        factory = create_session_factory(engine)
        try:

            async def write_run_and_trades() -> None:
                async with session_scope(factory) as session:
                    session.add(BtRun(run_id=run_id))
                    await session.flush()  # the run row reaches the database ...
                    session.add(_trade(run_id))
                    session.add(_trade(run_id, return_prob=Decimal("1.5")))  # ... this fails

            with pytest.raises(IntegrityError, match="bt_trades_return_prob_range_check"):
                await write_run_and_trades()
            async with factory() as session:
                runs = await session.scalar(
                    select(func.count()).select_from(BtRun).where(BtRun.run_id == run_id)
                )
                trades = await session.scalar(
                    select(func.count()).select_from(BtTrade).where(BtTrade.run_id == run_id)
                )
            return int(runs or 0), int(trades or 0)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == (0, 0)


def test_check_constraints_reject_invalid_rows(db_session: SessionFactory) -> None:
    async def run() -> None:
        async with db_session() as session:
            # Python-side enum validation
            with pytest.raises(StatementError, match="bogus"):
                await session.execute(insert(BtRun).values(run_id=_run_id(), status="bogus"))
            await session.rollback()
            # database-side CHECK (raw SQL bypasses the Python enum)
            with pytest.raises(IntegrityError, match="bt_runs_bt_run_status_check"):
                await session.execute(
                    text("INSERT INTO bt_runs (run_id, status) VALUES (:r, 'paused')"),
                    {"r": _run_id()},
                )
            await session.rollback()
            session.add(BtRun(run_id=_run_id(), status=BtRunStatus.FAILED, error_id="oops"))
            with pytest.raises(IntegrityError, match="bt_runs_error_id_format_check"):
                await session.flush()
            await session.rollback()
            session.add(
                BtRun(run_id=_run_id(), status=BtRunStatus.FAILED, error_id="BT_RUN_NOTFOUND")
            )
            await session.flush()

    asyncio.run(run())


def test_deleting_a_run_cascades_to_its_outputs(db_session: SessionFactory) -> None:
    run_id = _run_id()

    async def run() -> int:
        async with db_session() as session:
            session.add(BtRun(run_id=run_id))
            await session.flush()
            session.add_all([_trade(run_id), _trade(run_id)])
            await session.flush()
            await session.execute(text("DELETE FROM bt_runs WHERE run_id = :r"), {"r": run_id})
            n = await session.scalar(
                select(func.count()).select_from(BtTrade).where(BtTrade.run_id == run_id)
            )
            return int(n or 0)

    assert asyncio.run(run()) == 0


def _bar(ts: datetime, close: str) -> CanonicalBar:
    c = Decimal(close)
    return CanonicalBar(
        symbol="XAUUSD",
        timeframe="1h",
        ts_utc=ts,
        open=c,
        high=c,
        low=c,
        close=c,
        volume=None,
        quality_flag=QualityFlag.OK,
        source_id="mt5",
        ingest_run_id="ing-1",
        meta={"symbol_source": "XAUUSD.a"},
    )


def test_canonical_bars_route_to_partitions_and_keep_eight_decimals(
    db_session: SessionFactory,
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old = datetime(2001, 2, 3, 4, tzinfo=UTC)  # before the migration's first partition

    async def run() -> None:
        async with db_session() as session:
            layout = await models.canonical_storage(session)
            session.add_all([_bar(now, "2650.12345678"), _bar(old, "265.1")])
            await session.flush()
            back = await session.get(CanonicalBar, ("XAUUSD", "1h", now))
            assert back is not None
            assert back.close == Decimal("2650.12345678")
            assert back.volume is None
            assert back.meta == {"symbol_source": "XAUUSD.a"}
            if layout != "native":
                return

            async def partition_of(ts: datetime) -> str:
                return str(
                    await session.scalar(
                        text(
                            "SELECT tableoid::regclass::text FROM canonical_bars WHERE ts_utc = :t"
                        ),
                        {"t": ts},
                    )
                )

            assert await partition_of(now) == f"canonical_bars_p{now:%Y%m}"
            assert await partition_of(old) == "canonical_bars_default"
            # creating the missing month moves the parked row out of the default partition
            created = await models.ensure_canonical_partitions(
                session, datetime(2001, 1, 15, tzinfo=UTC), datetime(2001, 3, 1, tzinfo=UTC)
            )
            assert created == 2  # 2001-01 and 2001-02
            assert await partition_of(old) == "canonical_bars_p200102"
            again = await models.ensure_canonical_partitions(
                session, datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 3, 1, tzinfo=UTC)
            )
            assert again == 0
            with pytest.raises(ValueError, match="timezone-aware"):
                await models.ensure_canonical_partitions(
                    session, datetime(2001, 1, 1), datetime(2001, 3, 1)
                )
            lower = _bar(datetime(2001, 2, 3, 5, tzinfo=UTC), "1")
            lower.symbol = "xauusd"
            session.add(lower)
            with pytest.raises(IntegrityError, match="canonical_bars_symbol_upper_check"):
                await session.flush()

    asyncio.run(run())


def test_execution_log_and_audit_rows(db_session: SessionFactory) -> None:
    """The spec 000 example record and an audit row (who, when, why, diff) round-trip."""
    record = {
        "execution_id": f"exec_20240110_153045_{uuid.uuid4().hex[:8]}",
        "execution_type": ExecutionType.SYMBOL_ADDITION,
        "timestamp_start": datetime(2024, 1, 10, 15, 30, 45, tzinfo=UTC),
        "timestamp_end": datetime(2024, 1, 10, 15, 45, 23, tzinfo=UTC),
        "duration_seconds": Decimal("878"),
        "status": ExecutionStatus.SUCCESS,
        "triggered_by": "USER:admin",
        "target": {"symbols": ["HYPE"], "timeframes": ["1m", "1h"], "strategies": ["Full_ML"]},
        "operations": {
            "data_fetch": {"status": "SUCCESS", "duration": 45, "records_fetched": 129600}
        },
        "resources": {"cpu_usage_avg": 78.5, "memory_peak_mb": 2048, "disk_io_mb": 512},
        "errors": [],
        "meta": {"triggered_by": "USER:admin", "server_id": "prod-01", "version": "1.2.0"},
    }

    async def run() -> None:
        async with db_session() as session:
            session.add(ExecutionLog(**record))
            session.add(
                AnalyticsAction(
                    actor="alice",
                    actor_role="editor",
                    reason="DD_WARN reached",
                    action="ops.halt",
                    scope="portfolio",
                    diff={"global_halt": ["none", "soft"]},
                )
            )
            await session.commit()
            session.expunge_all()
            log = await session.get(ExecutionLog, record["execution_id"])
            assert log is not None
            assert log.operations["data_fetch"]["records_fetched"] == 129600
            assert log.meta["server_id"] == "prod-01"
            duration = (log.timestamp_end - log.timestamp_start).total_seconds()  # type: ignore[operator]
            assert Decimal(duration) == log.duration_seconds == Decimal("878.000")
            action = await session.scalar(
                select(AnalyticsAction).where(AnalyticsAction.actor == "alice")
            )
            assert action is not None
            assert action.diff == {"global_halt": ["none", "soft"]}
            assert action.occurred_at.tzinfo is not None

    asyncio.run(run())

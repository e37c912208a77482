"""Fixtures of the analytics tests: a migrated database of their own holding real backtest
outputs (``bt run`` on the session's trained bundle, loaded into bt_runs / bt_summary /
bt_daily_equity), the bundle registered and active, real canonical bars from the bundle's store,
and a running app."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pairdesk.analytics.main import create_app
from pairdesk.common import testing
from pairdesk.common.auth import create_token
from pairdesk.common.db import create_engine, create_session_factory, session_scope
from pairdesk.common.models import (
    BtDailyEquity,
    BtRun,
    BtRunStatus,
    BtSummary,
    CanonicalBar,
    ensure_canonical_partitions,
)
from pairdesk.common.registry import activate_model, register_model
from pairdesk.common.settings import Settings
from pairdesk.research import store as st
from pairdesk.research.pipeline import run_backtest_cli
from sqlalchemy import insert

REPO = Path(__file__).resolve().parents[3]
#: KPIs with block-bootstrap intervals in bt_summary.csv (``<kpi>_ci_low/high``).
CI_KPIS = (
    "ann_return",
    "sharpe",
    "max_dd",
    "calmar",
    "e_per_trade",
    "trades_per_year",
    "win_rate",
    "monthly_win_rate",
    "halt_rate",
    "pnl_sigma",
)
BAR_MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06")


def num(x: Any) -> float | None:
    """A parquet value as float, NaN as None."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@dataclass
class BtOut:
    """One ``bt run`` output folder and its tables."""

    run_id: str
    summary: pd.DataFrame
    equity: pd.DataFrame


@dataclass
class Env:
    """A running analytics app and the real data it serves."""

    client: TestClient
    db_url: str
    redis: testing.RedisTestHandle
    settings: Settings
    headers: Callable[[str], dict[str, str]]
    run: BtOut  # latest succeeded run (θ1 0.10, θ2 0.95: trades)
    older: BtOut  # earlier succeeded run (model θ)
    model_version: str
    model_dir: Path
    bars: pd.DataFrame  # canonical rows loaded (store partitions of BAR_MONTHS)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one SQL statement on the test database and return its rows."""
        return testing.run_sql(self.db_url, statement, **params)


def _backtest(
    bundle: dict[str, Path], out: Path, theta1: float | None, theta2: float | None
) -> BtOut:
    run_backtest_cli(
        universe=REPO / "config" / "universe.yaml",
        period="2024-01:2024-06",
        timeframe="1h",
        model_dir=bundle["models"],
        cost=REPO / "config" / "cost_table.yaml",
        store=bundle["store"],
        out=out,
        theta1=theta1,
        theta2=theta2,
        latency_bars=None,
        pair_ids=None,
    )
    summary = pd.read_parquet(out / "bt_summary.parquet")
    equity = pd.read_parquet(out / "bt_daily_equity.parquet")
    return BtOut(str(summary["run_id"].iloc[0]), summary, equity)


def _dec(x: Any) -> Decimal | None:
    v = num(x)
    return None if v is None else Decimal(repr(v))


async def _load_run(session: Any, bt: BtOut, finished: datetime) -> None:
    s0 = bt.summary.iloc[0]
    session.add(
        BtRun(
            run_id=bt.run_id,
            status=BtRunStatus.SUCCEEDED,
            request={
                "timeframe": "1h",
                "period": "2024-01:2024-06",
                "theta1": float(s0["theta1"]),
                "theta2": float(s0["theta2"]),
            },
            requested_by="tester",
            started_at=finished.replace(minute=0),
            finished_at=finished,
            model_version=str(s0["model_version"]),
        )
    )
    await session.flush()
    for _, s in bt.summary.iterrows():
        stamps = {
            k: s[k]
            for k in (
                "model_version",
                "feature_schema_hash",
                "data_hash",
                "code_hash",
                "params_hash",
            )
        }
        session.add(
            BtSummary(
                run_id=bt.run_id,
                pair_id=s["pair_id"],
                period=s["period"],
                trades=int(s["trades"]),
                win_rate=_dec(s["win_rate"]),
                e_per_trade=_dec(s["e_per_trade"]),
                ann_return=_dec(s["ann_return"]),
                sharpe=_dec(s["sharpe"]),
                max_dd=_dec(s["max_dd"]),
                calmar=_dec(s["calmar"]),
                trades_per_year=_dec(s["trades_per_year"]),
                pnl_std=_dec(s["pnl_sigma"]),
                halt_rate=_dec(s["halt_rate"]),
                theta1=_dec(s["theta1"]),
                theta2=_dec(s["theta2"]),
                seed=int(s["seed"]),
                ci={k: [num(s[f"{k}_ci_low"]), num(s[f"{k}_ci_high"])] for k in CI_KPIS},
                **stamps,
            )
        )
    for _, e in bt.equity.iterrows():
        session.add(
            BtDailyEquity(
                run_id=bt.run_id,
                pair_id=e["pair_id"],
                date=pd.Timestamp(e["date"]).date(),
                equity=_dec(e["equity"]),
                dd=_dec(e["dd"]),
            )
        )


def _store_bars(store: Path) -> pd.DataFrame:
    frames = []
    for sym in ("XAUUSD", "XAGUSD"):
        for month in BAR_MONTHS:
            df = st.read_partition(st.partition_file(store, "1h", sym, month))
            df["quarantined"] = (
                st.partition_dir(store, "1h", sym, month) / st.QUARANTINE_FILE
            ).is_file()
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


async def _load(
    url: str, bundle: dict[str, Path], runs: list[tuple[BtOut, datetime]], bars: pd.DataFrame
) -> str:
    engine = create_engine(url, pool=False)
    try:
        sessions = create_session_factory(engine)
        async with session_scope(sessions) as session:
            for bt, finished in runs:
                await _load_run(session, bt, finished)
            failed = BtRun(
                run_id="run-failed",
                status=BtRunStatus.FAILED,
                error_id="BT_RUN_FAILED",
                error_message="boom",
                finished_at=datetime(2030, 1, 1, tzinfo=UTC),
            )
            session.add(failed)
            row = await register_model(session, bundle["models"], registered_by="tester")
            await activate_model(session, row.model_version, activated_by="tester")
            version = row.model_version
            await ensure_canonical_partitions(
                session, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)
            )
            rows = [
                {
                    "symbol": r.symbol,
                    "timeframe": r.timeframe,
                    "ts_utc": r.ts_utc.to_pydatetime(),
                    "open": _dec(r.open),
                    "high": _dec(r.high),
                    "low": _dec(r.low),
                    "close": _dec(r.close),
                    "volume": _dec(r.volume),
                    "quality_flag": r.quality_flag,
                    "source_id": r.source_id,
                    "ingest_run_id": r.ingest_run_id,
                    "meta": {
                        "imputed": bool(r.imputed),
                        "spike": bool(r.spike),
                        "quarantined": bool(r.quarantined),
                    },
                }
                for r in bars.itertuples()
            ]
            await session.execute(insert(CanonicalBar), rows)
        return version
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def env(
    pg_admin_url: str,
    redis_server_url: str,
    trained_bundle: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("analytics")
    older = _backtest(trained_bundle, root / "bt_model_theta", None, None)
    latest = _backtest(trained_bundle, root / "bt_loose_theta", 0.10, 0.95)
    bars = _store_bars(trained_bundle["store"])
    handle = testing.RedisTestHandle(redis_server_url, testing.new_namespace())
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        version = asyncio.run(
            _load(
                url,
                trained_bundle,
                [
                    (older, datetime(2025, 1, 1, 12, 30, tzinfo=UTC)),
                    (latest, datetime(2025, 1, 2, 12, 30, tzinfo=UTC)),
                ],
                bars,
            )
        )
        settings = Settings.from_mapping(
            {
                "POSTGRES_URL": url,
                "REDIS_URL": redis_server_url,
                "PAIRDESK_BUS_NAMESPACE": handle.namespace,
                "PAIRDESK_JWT_SECRET": "analytics-test-secret-" + "x" * 32,
            }
        )

        def headers(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {create_token(f'{role}-user', role, settings)}"}

        try:
            with TestClient(create_app(settings)) as client:
                yield Env(
                    client,
                    url,
                    handle,
                    settings,
                    headers,
                    latest,
                    older,
                    version,
                    trained_bundle["models"],
                    bars,
                )
        finally:
            testing.flush_namespace(redis_server_url, handle.namespace)

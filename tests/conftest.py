"""Shared fixtures.

- The shipped real data (checked against data/manifest.json sha256).
- Real PostgreSQL and Redis (see pairdesk.common.testing):
  ``pg_admin_url`` (server admin URL: ``PAIRDESK_TEST_POSTGRES_URL`` or embedded pgserver);
  ``pg_url`` (a fresh ``pairdesk_test_<random>`` database migrated to head, once per test
  session, dropped at the end); ``db_session`` (a factory of rolled-back sessions on ``pg_url``:
  ``async with db_session() as session:`` inside the test's event loop); ``redis_client`` (a
  RedisTestHandle: URL + a namespace of its own, flushed after the test).

Tests are synchronous and drive coroutines with ``asyncio.run`` (no pytest-asyncio).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pandas as pd
import pytest
from pairdesk.common import testing
from sqlalchemy.ext.asyncio import AsyncSession

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def _read_checked(rel: str) -> pd.DataFrame:
    manifest = {e["file"]: e for e in json.loads((DATA / "manifest.json").read_text())}
    path = DATA / rel
    assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[rel]["sha256"], rel
    df = pd.read_csv(path)
    df["ts_utc"] = pd.to_datetime(df["ts_utc"], utc=True)
    return df.set_index("ts_utc")[["open", "high", "low", "close", "volume"]]


@pytest.fixture(scope="session")
def metals_2024() -> tuple[pd.DataFrame, pd.DataFrame]:
    """XAUUSD and XAGUSD 1h bars for calendar 2024 (real MT5 data, ~5.9k bars each)."""
    a = _read_checked("mt5_simom1_h1/XAUUSD_1h.csv.gz").loc["2024-01-01":"2024-12-31"]
    b = _read_checked("mt5_simom1_h1/XAGUSD_1h.csv.gz").loc["2024-01-01":"2024-12-31"]
    return a, b


@pytest.fixture(scope="session")
def crypto_2025() -> tuple[pd.DataFrame, pd.DataFrame]:
    """BTCUSDT and ETHUSDT 1h bars for 2025-01..2025-06 (real Binance spot data, gap-free)."""
    a = _read_checked("binance_spot_1h/BTCUSDT_1h.csv.gz").loc["2025-01-01":"2025-06-30"]
    b = _read_checked("binance_spot_1h/ETHUSDT_1h.csv.gz").loc["2025-01-01":"2025-06-30"]
    return a, b


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return testing.postgres_url()


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        yield url


@pytest.fixture
def db_session(pg_url: str) -> Callable[[], AbstractAsyncContextManager[AsyncSession]]:
    return lambda: testing.rollback_session(pg_url)


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    return testing.redis_url()


@pytest.fixture
def redis_client(redis_server_url: str) -> Iterator[testing.RedisTestHandle]:
    handle = testing.RedisTestHandle(redis_server_url, testing.new_namespace())
    try:
        yield handle
    finally:
        testing.flush_namespace(redis_server_url, handle.namespace)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Path]:
    """A Parquet store and a ``bt train`` model bundle on real XAUUSD/XAGUSD 1h data.

    Store: 2021-10-01 → 2024-07-01 ingested from the shipped files. Model ``t_2022_2023`` trained
    on 2022-01:2023-12-29 (backtest on 2024-01:2024-06, outside the training period widened by
    M = 48 bars). Built once per test run and shared by
    every xdist worker (a file lock guards the build). Keys: ``store``, ``models`` (the bundle
    folder), ``drop`` (the file drop), ``root``.
    """
    import fcntl

    from pairdesk.research.pipeline import run_ingest, run_train

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if worker_id != "master" else base) / "trained_bundle"
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "root": root,
        "drop": root / "drop",
        "store": root / "store",
        "models": root / "models" / "t_2022_2023",
    }
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".done").exists():
            drop = paths["drop"]
            drop.mkdir(exist_ok=True)
            for sym in ("XAUUSD", "XAGUSD"):
                df = _read_checked(f"mt5_simom1_h1/{sym}_1h.csv.gz").loc["2021-10-01":"2024-06-30"]
                df.reset_index().to_csv(drop / f"{sym}_1h.csv", index=False)
            universe = REPO / "config" / "universe.yaml"
            run_ingest(
                path=drop, store=paths["store"], timeframe="1h", symbols=None, universe=universe
            )
            run_train(
                universe=universe,
                period="2022-01:2023-12-29",
                timeframe="1h",
                store=paths["store"],
                out=paths["models"],
                pair_ids=None,
                cost=REPO / "config" / "cost_table.yaml",
                progress=lambda *a: None,
            )
            (root / ".done").write_text("ok")
    return paths

"""Fixtures of the data_pipeline service tests: a migrated database of their own, an allowed
drop root with real XAUUSD/XAGUSD/BTCUSDT slices, a store folder, tokens and a running app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pairdesk.common import testing
from pairdesk.common.auth import create_token
from pairdesk.common.settings import Settings
from pairdesk.data_pipeline.main import create_app
from pairdesk.data_pipeline.settings import DataPipelineSettings

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "data"


def slice_csv(src: Path, dest: Path, start: str, end: str) -> pd.DataFrame:
    """Copy the rows of a shipped CSV with ``start <= ts_utc < end`` to ``dest``; return them."""
    df = pd.read_csv(src)
    ts = pd.to_datetime(df["ts_utc"], utc=True)
    out = df[(ts >= pd.Timestamp(start, tz="UTC")) & (ts < pd.Timestamp(end, tz="UTC"))]
    out = out.reset_index(drop=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(dest, index=False)
    return out


def metals_drop(folder: Path, start: str, end: str) -> dict[str, pd.DataFrame]:
    """A drop of the shipped XAUUSD and XAGUSD 1h bars in ``[start, end)``."""
    return {
        sym: slice_csv(
            DATA / "mt5_simom1_h1" / f"{sym}_1h.csv.gz", folder / f"{sym}_1h.csv", start, end
        )
        for sym in ("XAUUSD", "XAGUSD")
    }


@dataclass
class Env:
    """A running data_pipeline app and what the tests need around it."""

    client: TestClient
    db_url: str
    redis_url: str
    namespace: str
    drops: Path
    store: Path
    settings: Settings
    headers: Callable[[str], dict[str, str]]

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one SQL statement on the test database and return its rows."""
        return testing.run_sql(self.db_url, statement, **params)


@pytest.fixture(scope="module")
def env(
    pg_admin_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("data_pipeline")
    drops, store = root / "drops", root / "store"
    drops.mkdir()
    namespace = testing.new_namespace()
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        settings = Settings.from_mapping(
            {
                "POSTGRES_URL": url,
                "REDIS_URL": redis_server_url,
                "PAIRDESK_BUS_NAMESPACE": namespace,
                "PAIRDESK_JWT_SECRET": "data-pipeline-test-secret-" + "x" * 32,
            }
        )
        pipeline = DataPipelineSettings(drop_dirs=str(drops), store_dir=str(store))

        def headers(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {create_token(f'{role}-user', role, settings)}"}

        try:
            with TestClient(create_app(settings, pipeline_settings=pipeline)) as client:
                yield Env(client, url, redis_server_url, namespace, drops, store, settings, headers)
        finally:
            testing.flush_namespace(redis_server_url, namespace)

"""Fixtures of the core_inference tests: real bars and models, the batch reference path, a
private Redis server that tests may kill, and helpers writing ``canonical_bars`` / the registry.

The batch reference is what ``bt run`` does (:mod:`pairdesk.research.pipeline`):
``compute_features`` → ``ai1_candidates`` → ``predict_signals`` → ``run_backtest`` over the same
aligned bars, starting at the same first bar as the live state.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from pairdesk.common import registry
from pairdesk.common.db import create_engine, create_session_factory
from pairdesk.common.models import CanonicalBar, ensure_canonical_partitions
from pairdesk.quant.backtest import BacktestParams, BacktestResult, run_backtest
from pairdesk.quant.costs import CostModel
from pairdesk.quant.features import compute_features
from pairdesk.quant.labels import ai1_candidates
from pairdesk.quant.models import TrainedModel
from pairdesk.research.config import CONFIG_DIR, load_yaml
from pairdesk.research.settings import ResearchSettings, load_settings
from pairdesk.research.store import load_pair
from pairdesk.research.train import predict_signals
from pairdesk.research.universe import PairConfig, load_universe
from sqlalchemy.dialects.postgresql import insert as pg_insert

#: θ low enough that the 2022–2023 model enters on the 2024 bars (the spec's θ1 range never
#: does on this data, see README "Results on the shipped data").
THETA1, THETA2 = 0.05, 0.45


@dataclass(frozen=True)
class Batch:
    """Batch reference outputs over ``bars_a.iloc[start:end]``."""

    index: pd.DatetimeIndex
    features: pd.DataFrame
    candidates: np.ndarray
    return_prob: np.ndarray
    risk_score: np.ndarray
    result: BacktestResult

    def entries(self, first: pd.Timestamp | None = None) -> list[tuple[pd.Timestamp, int]]:
        """(signal bar open time, +1 long / −1 short) of every trade entered at ``>= first``."""
        tr = self.result.trades
        out = []
        for bar, side in zip(tr["bar_signal_entry"], tr["side"], strict=True):
            ts = self.index[int(bar)]
            if first is None or ts >= first:
                out.append((ts, 1 if side == "LONG_SPREAD" else -1))
        return out

    def exits(self, first: pd.Timestamp | None = None) -> list[tuple[pd.Timestamp, str]]:
        """(signal bar open time, reason) of every exit signalled at ``>= first`` (the
        backtest's end-of-data close is not a signal)."""
        tr = self.result.trades
        out = []
        for bar, reason in zip(tr["bar_signal_exit"], tr["exit_reason"], strict=True):
            ts = self.index[int(bar)]
            if reason != "end_of_data" and (first is None or ts >= first):
                out.append((ts, str(reason)))
        return out


@dataclass(frozen=True)
class CoreInputs:
    """Real XAUUSD/XAGUSD 1h bars (aligned), the trained models and the platform config."""

    settings: ResearchSettings
    pair: PairConfig
    costs: CostModel
    ai1: TrainedModel
    ai2: TrainedModel
    model_dir: Path
    bars_a: pd.DataFrame
    bars_b: pd.DataFrame

    @property
    def params(self) -> BacktestParams:
        """The backtest policy with the tests' θ."""
        return replace(self.settings.backtest, theta1=THETA1, theta2=THETA2)

    def pos(self, ts: str | pd.Timestamp) -> int:
        """Row of the first aligned bar at or after ``ts``."""
        return int(self.bars_a.index.searchsorted(pd.Timestamp(ts, tz="UTC")))

    def batch(self, start: int, end: int) -> Batch:
        """The ``bt run`` path over rows ``[start, end)``."""
        a, b = self.bars_a.iloc[start:end], self.bars_b.iloc[start:end]
        f = compute_features(a, b, self.settings.features)
        cand = np.asarray(ai1_candidates(f, self.settings.labels), dtype=bool)
        prob, risk = predict_signals(self.ai1, self.ai2, f, cand)
        cal_a, cal_b = self.pair.leg_a.calendar, self.pair.leg_b.calendar
        tradable = np.asarray(cal_a.is_tradable(f.index, "1h") & cal_b.is_tradable(f.index, "1h"))
        res = run_backtest(
            f.index,
            a["close"].to_numpy(),
            b["close"].to_numpy(),
            f["z"].to_numpy(),
            f["beta"].to_numpy(),
            np.where(cand, prob, np.nan),
            risk,
            tradable.astype(bool),
            (self.pair.leg_a.spec, self.pair.leg_b.spec),
            self.costs,
            self.params,
            min_notional_usd=self.pair.min_notional_usd,
        )
        return Batch(pd.DatetimeIndex(f.index), f, cand, prob, risk, res)


def _as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in ("open", "high", "low", "close"):
        out[col] = [float(round(Decimal(repr(float(x))), 8)) for x in frame[col]]
    return out


@pytest.fixture(scope="session")
def core_inputs(trained_bundle: dict[str, Path]) -> CoreInputs:
    """Aligned 2023-06 → 2024-06 bars from the ingested store and the trained bundle."""
    settings = load_settings("1h")
    pair = load_universe(CONFIG_DIR / "universe.yaml")[0]
    costs = CostModel.from_mapping(
        load_yaml(CONFIG_DIR / "cost_table.yaml"), [pair.leg_a.symbol, pair.leg_b.symbol]
    )
    a, b = load_pair(
        trained_bundle["store"],
        pair.leg_a.symbol,
        pair.leg_b.symbol,
        "1h",
        pd.Timestamp("2023-06-01", tz="UTC"),
        pd.Timestamp("2024-07-01", tz="UTC"),
    )
    # canonical_bars stores numeric(20,8): use the prices as PostgreSQL returns them (the research
    # ingest parses some prices 1 ulp off, e.g. "23.577" -> 23.576999999999998)
    a, b = _as_stored(a), _as_stored(b)
    models = trained_bundle["models"]
    return CoreInputs(
        settings=settings,
        pair=pair,
        costs=costs,
        ai1=TrainedModel.load(models / "ai1"),
        ai2=TrainedModel.load(models / "ai2"),
        model_dir=models,
        bars_a=a,
        bars_b=b,
    )


# ------------------------------------------------------------------------------ database


def insert_bars(url: str, inputs: CoreInputs, start: int, end: int) -> None:
    """Write rows ``[start, end)`` of both legs to ``canonical_bars`` (quality ``ok``), as the
    data pipeline stores closed bars."""

    async def run() -> None:
        engine = create_engine(url, pool=False)
        try:
            rows: list[dict[str, Any]] = []
            for frame, leg in (
                (inputs.bars_a, inputs.pair.leg_a),
                (inputs.bars_b, inputs.pair.leg_b),
            ):
                part = frame.iloc[start:end]
                for ts, o, h, lo, c in zip(
                    part.index, part["open"], part["high"], part["low"], part["close"], strict=True
                ):
                    rows.append(
                        {
                            "symbol": leg.symbol,
                            "timeframe": "1h",
                            "ts_utc": ts.to_pydatetime(),
                            "open": Decimal(repr(float(o))),
                            "high": Decimal(repr(float(h))),
                            "low": Decimal(repr(float(lo))),
                            "close": Decimal(repr(float(c))),
                            "quality_flag": "ok",
                            "source_id": "test",
                            "ingest_run_id": "test-run",
                        }
                    )
            idx = inputs.bars_a.index
            async with engine.begin() as conn:
                await ensure_canonical_partitions(
                    conn, idx[start].to_pydatetime(), idx[end - 1].to_pydatetime()
                )
                for i in range(0, len(rows), 2000):
                    await conn.execute(
                        pg_insert(CanonicalBar).on_conflict_do_nothing(), rows[i : i + 2000]
                    )
        finally:
            await engine.dispose()

    asyncio.run(run())


def register_and_activate(url: str, model_dir: Path, *, activate: bool = True) -> str:
    """Register ``model_dir`` in ``model_registry`` (and activate it); return its version."""

    async def run() -> str:
        engine = create_engine(url, pool=False)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                row = await registry.register_model(session, model_dir, registered_by="tests")
                if activate:
                    await registry.activate_model(session, row.model_version, activated_by="tests")
                return row.model_version
        finally:
            await engine.dispose()

    return asyncio.run(run())


def copy_bundle(src: Path, dst: Path, version: str) -> Path:
    """A copy of a bundle under another ``model_version`` (a second registrable model)."""
    import yaml

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("oos_predictions.parquet"))
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["model_version"] = version
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


class Helpers:
    """The module's database helpers, as a fixture (test modules cannot import conftest)."""

    insert_bars = staticmethod(insert_bars)
    register_and_activate = staticmethod(register_and_activate)
    copy_bundle = staticmethod(copy_bundle)


@pytest.fixture(scope="session")
def helpers() -> Helpers:
    return Helpers()


@pytest.fixture
def fresh_db(pg_admin_url: str) -> Iterator[str]:
    """A migrated database of its own (model activations and signals stay in the test)."""
    from pairdesk.common.testing import temporary_database

    with temporary_database(pg_admin_url, migrate=True) as url:
        yield url


# ------------------------------------------------------------------------------ private redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` subprocess without persistence that a test can kill and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()

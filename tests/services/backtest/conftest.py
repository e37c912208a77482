"""Fixtures of the backtest service tests: a registered model, real Celery workers, API clients.

Workers are real ``celery -A pairdesk.backtest.worker worker`` subprocesses (prefork pool, one
child) on a queue and Redis namespace of their own, against the session's PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pairdesk.backtest.main import create_app
from pairdesk.backtest.settings import BacktestSettings
from pairdesk.common import testing
from pairdesk.common.auth import create_token
from pairdesk.common.db import create_engine, create_session_factory, session_scope
from pairdesk.common.registry import register_model
from pairdesk.common.settings import Settings

JWT_SECRET = "backtest-tests-" + "k" * 40
TERMINAL = {"succeeded", "failed"}


@dataclass(frozen=True)
class BtEnv:
    """Where one worker/API pair lives: database, Redis, namespace, queue and folders."""

    pg_url: str
    redis_url: str
    namespace: str
    queue: str
    store: Path
    out_dir: Path
    model_dir: Path
    model_version: str

    def settings(self) -> Settings:
        return Settings.from_mapping(
            {
                "POSTGRES_URL": self.pg_url,
                "REDIS_URL": self.redis_url,
                "PAIRDESK_BUS_NAMESPACE": self.namespace,
                "SERVICE_ENV": "dev",
                "PAIRDESK_JWT_SECRET": JWT_SECRET,
            }
        )

    def bt_settings(self, **overrides: Any) -> BacktestSettings:
        values: dict[str, Any] = {
            "store_dir": self.store,
            "bt_out_dir": self.out_dir,
            "bt_queue": self.queue,
            "bt_sweep_interval_s": 0,
        }
        values.update(overrides)
        return BacktestSettings.from_mapping(values)

    def client(self, **overrides: Any) -> TestClient:
        return TestClient(create_app(self.settings(), self.bt_settings(**overrides)))

    def token(self, role: str, sub: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {create_token(sub, role, self.settings())}"}

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "POSTGRES_URL": self.pg_url,
                "REDIS_URL": self.redis_url,
                "PAIRDESK_BUS_NAMESPACE": self.namespace,
                "PAIRDESK_BT_QUEUE": self.queue,
                "PAIRDESK_STORE_DIR": str(self.store),
                "PAIRDESK_BT_OUT_DIR": str(self.out_dir),
                "PAIRDESK_JWT_SECRET": JWT_SECRET,
                "SERVICE_ENV": "dev",
                "LOG_LEVEL": "INFO",
            }
        )
        env.update(extra)
        return env


def start_worker(env: BtEnv, log_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start a Celery worker subprocess on ``env.queue`` and wait until it consumes."""
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pairdesk.backtest.worker:celery_app",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "-Q",
            env.queue,
            "-n",
            f"{env.queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
        ],
        env=env.worker_env(**extra),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()[-4000:]}")
        if " ready." in log_path.read_text():
            return proc
        time.sleep(0.2)
    stop_worker(proc)
    raise RuntimeError(f"worker not ready after 120 s:\n{log_path.read_text()[-4000:]}")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM) of a worker this test started; kill it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_terminal(client: TestClient, run_id: str, headers: dict[str, str], timeout: float = 180):  # type: ignore[no-untyped-def]
    """Poll ``GET /bt/runs/{run_id}`` until the run is succeeded or failed; return its data."""
    deadline = time.monotonic() + timeout
    data = None
    while time.monotonic() < deadline:
        resp = client.get(f"/api/v1/bt/runs/{run_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        if data["status"] in TERMINAL:
            return data
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} not finished after {timeout} s: {data}")


@pytest.fixture(scope="session")
def bt_model(pg_url: str, trained_bundle: dict[str, Path]) -> str:
    """Register the trained test bundle in the session database; return its model_version."""

    async def register() -> str:
        engine = create_engine(pg_url, pool=False)
        try:
            async with session_scope(create_session_factory(engine)) as session:
                row = await register_model(session, trained_bundle["models"], registered_by="t")
                return row.model_version
        finally:
            await engine.dispose()

    return asyncio.run(register())


def new_env(
    pg_url: str, redis_url: str, trained_bundle: dict[str, Path], model: str, out: Path
) -> BtEnv:
    return BtEnv(
        pg_url=pg_url,
        redis_url=redis_url,
        namespace=testing.new_namespace(),
        queue=f"bt-test-{secrets.token_hex(4)}",
        store=trained_bundle["store"],
        out_dir=out,
        model_dir=trained_bundle["models"],
        model_version=model,
    )


@pytest.fixture(scope="module")
def bt_env(
    pg_url: str,
    redis_server_url: str,
    trained_bundle: dict[str, Path],
    bt_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BtEnv]:
    """A worker-less environment on the shared Redis (own namespace and queue)."""
    env = new_env(
        pg_url, redis_server_url, trained_bundle, bt_model, tmp_path_factory.mktemp("bt_runs")
    )
    try:
        yield env
    finally:
        testing.flush_namespace(redis_server_url, env.namespace)


@pytest.fixture(scope="module")
def bt_worker(bt_env: BtEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BtEnv]:
    """``bt_env`` with a running Celery worker consuming its queue."""
    proc = start_worker(bt_env, tmp_path_factory.mktemp("worker") / "worker.log")
    try:
        yield bt_env
    finally:
        stop_worker(proc)

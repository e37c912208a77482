"""Fault test: Redis dies during a run and while a run is submitted.

A private ``redis-server`` (no persistence, so a restart loses every queued message) serves
the broker of a real worker and of the API; the shared test Redis is never touched. PostgreSQL
is the source of truth: every run must end ``succeeded`` or ``failed`` with an error id.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from .conftest import new_env, start_worker, stop_worker, wait_terminal

RUNS = "/api/v1/bt/runs"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    assert exe is not None
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        for _ in range(100):
            try:
                if client.ping():
                    return proc
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    proc.kill()
    raise RuntimeError(f"redis-server on port {port} did not start")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_redis_outage_never_leaves_a_run_running(
    pg_url: str,
    trained_bundle: dict[str, Path],
    bt_model: str,
    tmp_path: Path,
) -> None:
    port = _free_port()
    server = _start_redis(port, tmp_path)
    env = new_env(pg_url, f"redis://127.0.0.1:{port}/0", trained_bundle, bt_model, tmp_path / "out")
    worker = start_worker(env, tmp_path / "worker.log")
    editor = env.token("editor")
    req = {
        "pair_ids": ["XAUUSD_XAGUSD"],
        "period": "2024-01:2024-06",  # outside the model's training period (in-sample guard)
        "timeframe": "1h",
        "model_version": bt_model,
        "theta1": 0.05,
        "theta2": 0.45,
    }
    try:
        with env.client(
            bt_sweep_interval_s=0.5, bt_requeue_after_s=1.0, bt_publish_timeout_s=3
        ) as client:
            # A. Redis dies while the worker runs the backtest, and comes back empty.
            run_a = client.post(RUNS, json=req, headers=editor).json()["data"]["run_id"]
            deadline = time.monotonic() + 120
            status = "queued"
            while status == "queued" and time.monotonic() < deadline:
                status = client.get(f"{RUNS}/{run_a}", headers=editor).json()["data"]["status"]
                time.sleep(0.01)
            assert status == "running", f"never saw the run running (status {status})"
            _kill(server)
            time.sleep(1.0)
            server = _start_redis(port, tmp_path)
            done_a = wait_terminal(client, run_a, editor, timeout=120)
            assert done_a["status"] == "succeeded" or done_a["error_id"], done_a
            assert done_a["status"] == "succeeded", done_a  # PG writes never needed Redis

            # B. Redis is down when the run is submitted: the run waits queued in PostgreSQL,
            # and the sweep publishes it once Redis is back.
            _kill(server)
            resp = client.post(RUNS, json=req, headers=editor)
            assert resp.status_code == 202, resp.text
            run_b = resp.json()["data"]["run_id"]
            assert client.get(f"{RUNS}/{run_b}", headers=editor).json()["data"]["status"] == (
                "queued"
            )
            server = _start_redis(port, tmp_path)
            done_b = wait_terminal(client, run_b, editor, timeout=180)
            assert done_b["status"] == "succeeded", done_b
            summary = client.get("/api/v1/bt/summary", params={"run_id": run_b}, headers=editor)
            assert summary.json()["data"][0]["trades"] > 0
    finally:
        stop_worker(worker)
        _kill(server)

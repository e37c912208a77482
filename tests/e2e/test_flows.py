"""The desk's three daily flows through HTTP only, on the running platform (issue 3).

1. A researcher launches a backtest: token from config_api, ``POST /bt/runs``, poll to
   ``succeeded``, read the summary and trades — equal to ``bt run`` on the same inputs.
2. Ops halts trading at 3 a.m.: bars flow in through data_pipeline, core_inference emits
   signals; an editor halts → the bar that would have entered is ``entry_blocked``; an approver
   resumes (guards pass) → the next entry is emitted again.
3. Prometheus scrapes ``/metrics`` of all six services.

Tests run in file order on one worker (``xdist_group``) against one platform.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pairdesk.research.cli import bt_app
from typer.testing import CliRunner

from .conftest import REPO, THETA1, THETA2, Platform

pytestmark = pytest.mark.xdist_group("platform")

PAIR = "XAUUSD_XAGUSD"
PERIOD = "2024-01:2024-06"
#: API field → (bt_summary.csv column, decimal places the bt_summary table stores).
SUMMARY_FIELDS = {
    "ann_return": ("ann_return", 6),
    "sharpe": ("sharpe", 6),
    "max_dd": ("max_dd", 6),
    "calmar": ("calmar", 6),
    "e_per_trade": ("e_per_trade", 8),
    "trades_per_year": ("trades_per_year", 4),
    "win_rate": ("win_rate", 4),
    "halt_rate": ("halt_rate", 4),
    "pnl_std": ("pnl_sigma", 6),
}


def _close(api: float | None, csv: float, places: int) -> bool:
    if api is None or csv is None or (isinstance(csv, float) and math.isnan(csv)):
        return (api is None) == (csv is None or math.isnan(csv))
    return abs(api - csv) <= 0.5 * 10.0**-places + 1e-12


def _poll(url: str, headers: dict[str, str], done: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(url, headers=headers, timeout=30).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"timed out polling {url}: {body}")


def test_researcher_backtest_equals_bt_run(platform: Platform, tmp_path: Path) -> None:
    bt = platform.urls["backtest"]
    editor = platform.headers("editor")
    request = {"pair_ids": [PAIR], "period": PERIOD, "timeframe": "1h",
               "model_version": platform.model_version, "theta1": THETA1, "theta2": THETA2}  # fmt: skip
    r = httpx.post(f"{bt}/api/v1/bt/runs", json=request,
                   headers={**editor, "Idempotency-Key": "e2e-1"}, timeout=30)  # fmt: skip
    assert r.status_code == 202, r.text
    run_id = r.json()["data"]["run_id"]
    again = httpx.post(f"{bt}/api/v1/bt/runs", json=request,
                       headers={**editor, "Idempotency-Key": "e2e-1"}, timeout=30)  # fmt: skip
    assert again.json()["data"]["run_id"] == run_id

    viewer = platform.headers("viewer")
    run = _poll(f"{bt}/api/v1/bt/runs/{run_id}", viewer,
                lambda b: b["data"]["status"] in ("succeeded", "failed"))["data"]  # fmt: skip
    assert run["status"] == "succeeded", run
    summary = httpx.get(f"{bt}/api/v1/bt/summary", params={"run_id": run_id}, headers=viewer,
                        timeout=30).json()["data"]  # fmt: skip
    trades = httpx.get(f"{bt}/api/v1/bt/trades", params={"run_id": run_id, "limit": 500},
                       headers=viewer, timeout=30).json()["data"]  # fmt: skip

    # the same inputs through the research CLI
    out = tmp_path / "bt_run"
    result = CliRunner().invoke(bt_app, [
        "run", "--universe", str(REPO / "config" / "universe.yaml"), "--period", PERIOD,
        "--timeframe", "1h", "--model-dir", str(platform.model_dir),
        "--cost", str(REPO / "config" / "cost_table.yaml"), "--store", str(platform.store),
        "--out", str(out), "--theta1", str(THETA1), "--theta2", str(THETA2)])  # fmt: skip
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out / "bt_summary.csv").iloc[0]
    (row,) = summary
    assert row["trades"] == int(csv["trades"]) > 0
    for field, (col, places) in SUMMARY_FIELDS.items():
        assert _close(row[field], float(csv[col]), places), (field, row[field], csv[col])
    for stamp in ("model_version", "feature_schema_hash", "data_hash", "code_hash", "params_hash"):
        assert row[stamp] == csv[stamp], stamp
    csv_trades = pd.read_csv(out / "bt_trades.csv")
    assert trades["total"] == len(csv_trades)
    for api, (_, ref) in zip(trades["items"], csv_trades.iterrows(), strict=True):
        assert pd.Timestamp(api["timestamp_entry"]) == pd.Timestamp(ref["timestamp_entry"])
        assert api["side"] == ref["side"]
        assert _close(api["pnl"], float(ref["pnl"]), 6)


SPEC_METRIC_NAMES = {
    "data_pipeline": ["data_ingest_success_rate", "data_missing_rate", "dq_fail_total"],
    "core_inference": ["ml_prediction_duration", "ml_predictions_total"],
}


def test_prometheus_scrapes_all_six(platform: Platform) -> None:
    for name, url in platform.urls.items():
        httpx.get(f"{url}/healthz", timeout=30)
        r = httpx.get(f"{url}/metrics", timeout=30)  # no token: Prometheus scrapes it
        assert r.status_code == 200, name
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert 'http_requests_total{handler="/healthz"' in text, name
        assert f'pairdesk_service_up{{service="{name}"}} 1.0' in text, name
        for metric in SPEC_METRIC_NAMES.get(name, []):
            assert f"# TYPE {metric}" in text, (name, metric)
        assert "PAIRDESK_JWT_SECRET" not in text
        assert platform.secret not in text

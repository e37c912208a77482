"""The README's first command (`pairdesk demo`) on the full shipped data: ingest → bt train → bt run
finish, write every output, and print KPIs equal to the written bt_summary (≈ 2 min on 2 cores)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pairdesk.research.cli import app
from typer.testing import CliRunner


@pytest.mark.slow
def test_demo_main_job_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for rel in ("models/v1/ai1/model.txt", "models/v1/ai2/model.txt", "models/v1/params.yaml",
                "models/v1/metrics.json", "models/v1/feature_schema.json", "models/v1/oos_predictions.parquet",
                "bt_out/bt_summary.parquet", "bt_out/bt_trades.csv", "bt_out/bt_daily_equity.csv",
                "bt_out/report.html"):
        assert (out / rel).is_file(), rel
    row = pd.read_csv(out / "bt_out" / "bt_summary.csv").iloc[0]
    assert row["period"] == "2024-01-01:2026-05-31"
    printed = dict(re.findall(r"│ (\w+)\s+│\s+(-?[\d.]+|nan) │", r.output))
    for kpi in ("ann_return", "sharpe", "max_dd", "trades_per_year", "halt_rate"):
        if np.isnan(row[kpi]):
            assert printed[kpi] == "nan"
        else:
            assert float(printed[kpi]) == pytest.approx(row[kpi], abs=5e-5)
    assert "adoption rule" in r.output
    assert f"report: {out / 'bt_out' / 'report.html'}" in r.output

"""The README's first command (`pairdesk demo`) on the full shipped data: ingest the 15 MT5 FX/metal
instruments → bt scan (formation years) → bt train on the selected pairs → portfolio bt run on the
later years; every output is written and the printed tables equal the written files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pairdesk.research.cli import DEMO_RUN, app
from pairdesk.research.provenance import parse_period
from typer.testing import CliRunner


@pytest.mark.slow
def test_demo_main_job_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for rel in ("scan/candidates.csv", "scan/candidates.parquet", "scan/universe.yaml",
                "models/v1/ai1/model.txt", "models/v1/ai2/model.txt", "models/v1/params.yaml",
                "models/v1/metrics.json", "models/v1/feature_schema.json", "models/v1/oos_predictions.parquet",
                "bt_out/bt_summary.parquet", "bt_out/bt_trades.csv", "bt_out/bt_daily_equity.csv",
                "bt_out/report.html"):  # fmt: skip
        assert (out / rel).is_file(), rel
    # the scan's selection is exactly the universe that was trained and backtested
    cand = pd.read_csv(out / "scan" / "candidates.csv")
    chosen = sorted(cand.loc[cand["selected"], "pair_id"])
    universe = yaml.safe_load((out / "scan" / "universe.yaml").read_text())
    assert sorted(p["pair_id"] for p in universe["pairs"]) == chosen
    assert f"{len(chosen)} of {len(cand)} pairs selected" in r.output

    summary = pd.read_csv(out / "bt_out" / "bt_summary.csv")
    per = parse_period(DEMO_RUN)
    assert (summary["period"] == f"{per.start.date()}:{(per.end - pd.Timedelta(days=1)).date()}").all()
    if len(chosen) > 1:
        row = summary[summary["scope"] == "portfolio"].iloc[0]
        assert row["pair_id"] == "PORTFOLIO"
        assert sorted(summary.loc[summary["scope"] == "pair", "pair_id"]) == chosen
        for pid in chosen:  # the per-pair table is printed whole
            assert pid in r.output
    else:
        row = summary.iloc[0]
    printed = dict(re.findall(r"│ (\w+)\s+│\s+(-?[\d.]+|nan) │", r.output))
    for kpi in ("ann_return", "sharpe", "max_dd", "trades_per_year", "halt_rate"):
        if np.isnan(row[kpi]):
            assert printed[kpi] == "nan"
        else:
            assert float(printed[kpi]) == pytest.approx(row[kpi], abs=5e-5)
    trades = pd.read_csv(out / "bt_out" / "bt_trades.csv")
    assert set(trades["pair_id"]) <= set(chosen)
    assert "adoption rule" in r.output
    assert f"report: {out / 'bt_out' / 'report.html'}" in r.output

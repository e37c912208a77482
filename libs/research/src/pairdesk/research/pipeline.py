"""The research jobs behind the CLI: ``ingest``, ``bt train`` and ``bt run`` (spec 004
§data-assets-pipeline, §backtest-assets-engine 仕様 v1 I/O・出力, §時系列CV・評価KPI).

``bt run`` writes, for every pair, ``bt_summary``, ``bt_trades`` and ``bt_daily_equity`` as CSV and
Parquet, each row stamped with ``run_id, model_version, feature_schema_hash, data_hash, code_hash,
params_hash, seed``, plus ``report.html``. The KPI dict returned (and printed by the CLI) is the one
written to ``bt_summary``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pairdesk.quant.backtest import BacktestResult, run_backtest
from pairdesk.quant.metrics import adoption_check
from pairdesk.quant.models import TrainedModel
from pairdesk.quant.stats import bootstrap_kpis, moving_block_bootstrap_indices
from pairdesk.research.config import load_yaml
from pairdesk.research.ingest import IngestReport, ingest
from pairdesk.research.inputs import PairInputs, load_pair_inputs
from pairdesk.research.provenance import code_hash, parse_period, sha256_json
from pairdesk.research.report import render_report
from pairdesk.research.settings import load_settings
from pairdesk.research.train import Progress, feature_schema, predict_signals, train
from pairdesk.research.universe import TIMEFRAME_MINUTES, load_universe

#: KPI rows printed and written, in order: (bt_summary column, label).
KPI_ROWS: tuple[tuple[str, str], ...] = (
    ("ann_return", "annualised return (compound)"),
    ("sharpe", "Sharpe (daily returns, annualised by observed days/yr)"),
    ("max_dd", "MaxDD (fraction)"),
    ("calmar", "Calmar"),
    ("e_per_trade", "E/trade (return on capital)"),
    ("trades_per_year", "trades/yr"),
    ("win_rate", "win rate (trades)"),
    ("monthly_win_rate", "monthly win rate"),
    ("halt_rate", "halt rate (AI2 veto share)"),
    ("pnl_sigma", "PnL σ per trade (USD)"),
)


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; on success replace ``out`` with it atomically-ish
    (rename), on failure delete it and leave any previous ``out`` untouched."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staged = tmp / out.name
    staged.mkdir()
    try:
        yield staged
        if out.exists():
            backup = tmp / (out.name + ".previous")
            out.rename(backup)
        staged.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def run_ingest(*, path: Path, store: Path, timeframe: str, symbols: list[str] | None, universe: Path) -> IngestReport:
    """Ingest a file drop into the Parquet store (calendars from ``universe``; DQ from pipeline_policy)."""
    settings = load_settings(timeframe)
    calendars: dict[str, Any] = {}
    for pair in load_universe(universe):
        for leg in (pair.leg_a, pair.leg_b):
            calendars[leg.symbol] = leg.calendar
    return ingest(path, timeframe, symbols, store, calendars, settings.dq)


def run_train(
    *,
    universe: Path,
    period: str,
    timeframe: str,
    store: Path,
    out: Path,
    pair_ids: list[str] | None,
    cost: Path,
    progress: Progress,
) -> dict[str, Any]:
    """``bt train``: see :func:`pairdesk.research.train.train`; output staged then moved to ``out``."""
    settings = load_settings(timeframe)
    pairs = load_universe(universe, pair_ids)
    per = parse_period(period)
    cost_table = load_yaml(cost)
    with staged_output(out) as tmp:
        return train(pairs, store_dir=store, period=per, settings=settings, out_dir=tmp,
                     cost_table=cost_table, progress=progress)


def _stamped(df: pd.DataFrame, pair_id: str, stamps: dict[str, Any]) -> pd.DataFrame:
    """``df`` with ``pair_id`` and the provenance stamps as constant columns."""
    out = df.copy()
    out["pair_id"] = pair_id
    for k, v in stamps.items():
        out[k] = v
    return out


def _halt_rate_ci(inp: PairInputs, return_prob: np.ndarray, risk: np.ndarray, theta1: float, theta2: float,
                  block: int, n_samples: int, seed: int) -> tuple[float, float]:
    """Block-bootstrap CI of the candidate-level AI2 veto share (bars resampled in blocks)."""
    passed = inp.candidates & (return_prob > theta1)
    veto = passed & (risk >= theta2)
    n = len(passed)
    idx = moving_block_bootstrap_indices(n, block=block, n_samples=n_samples, rng=np.random.default_rng(seed))
    p = passed[idx].sum(axis=1)
    v = veto[idx].sum(axis=1)
    ok = p > 0
    if not ok.any():
        return float("nan"), float("nan")
    lo, hi = np.percentile(v[ok] / p[ok], [2.5, 97.5])
    return float(lo), float(hi)


def run_backtest_cli(
    *,
    universe: Path,
    period: str,
    timeframe: str,
    model_dir: Path,
    cost: Path,
    store: Path,
    out: Path,
    theta1: float | None,
    theta2: float | None,
    latency_bars: int | None,
    pair_ids: list[str] | None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """``bt run``: backtest the combined rule over ``period`` with the models in ``model_dir``.

    ``run_id`` stamps every output row; a fresh uuid4 when omitted (the CLI). The backtest
    service passes its ``bt_runs.run_id`` so files and database rows carry the same id.

    Raises
    ------
    ValueError / FileNotFoundError / ConfigError
        Bad period, missing model artefacts, feature schema mismatch, too few bars.
    """
    settings = load_settings(timeframe)
    per = parse_period(period)
    pairs = load_universe(universe, pair_ids)
    cost_table = load_yaml(cost)
    params_path = model_dir / "params.yaml"
    if not params_path.is_file():
        raise FileNotFoundError(f"no params.yaml in model dir {model_dir}")
    mparams = yaml.safe_load(params_path.read_text())
    schema_hash = sha256_json(feature_schema(settings))
    if mparams.get("feature_schema_hash") != schema_hash:
        raise ValueError(
            f"model {model_dir} was trained with feature schema {str(mparams.get('feature_schema_hash'))[:12]}, "
            f"current is {schema_hash[:12]} (timeframe or feature params differ)"
        )
    models = {ai: TrainedModel.load(model_dir / ai) for ai in ("ai1", "ai2")}
    th1 = float(theta1) if theta1 is not None else float(mparams["theta"]["theta1"])
    th2 = float(theta2) if theta2 is not None else float(mparams["theta"]["theta2"])
    latency = int(latency_bars) if latency_bars is not None else settings.backtest.latency_bars
    bt_params = replace(settings.backtest, theta1=th1, theta2=th2, latency_bars=latency)
    seed = int(settings.kpi["seed"])
    run_params = {"theta1": th1, "theta2": th2, "backtest": bt_params.__dict__, "period": str(per),
                  "timeframe": timeframe, "cost_table": cost_table, "kpi": settings.kpi}
    stamps_common = {
        "run_id": run_id if run_id is not None else str(uuid.uuid4()),
        "model_version": str(mparams.get("model_version", model_dir.name)),
        "feature_schema_hash": schema_hash,
        "code_hash": code_hash(),
        "params_hash": sha256_json(run_params),
        "seed": seed,
    }
    bar = pd.Timedelta(minutes=TIMEFRAME_MINUTES[timeframe])
    warmup_from = per.start - 3 * settings.features.warmup_bars * bar
    summaries, trades_all, equity_all = [], [], []
    result: dict[str, Any] = {"period": str(per), "pairs": {}, "out": str(out)}
    reports: list[tuple[str, dict[str, Any]]] = []
    for pair in pairs:
        inp = load_pair_inputs(pair, store_dir=store, period=per, settings=settings, cost_table=cost_table,
                               warmup_from=warmup_from)
        rprob, risk = predict_signals(models["ai1"], models["ai2"], inp.features, inp.candidates)
        in_period = np.asarray(inp.features.index >= per.start)
        if in_period.sum() < 2:
            raise ValueError(f"{pair.pair_id}: fewer than 2 bars in {per}")
        sub = inp.slice(in_period)
        rprob, risk = rprob[in_period], risk[in_period]
        res: BacktestResult = run_backtest(**sub.engine_inputs(return_prob=rprob, risk_score=risk), params=bt_params)
        trades = res.trades
        kpi_params = settings.kpi_params_for(res.ts)
        kpis = res.kpis(kpi_params)
        ci = bootstrap_kpis(res.bar_pnl, res.ts, trades["bar_exit"].to_numpy(np.int64), trades["pnl"].to_numpy(),
                            trades["return_on_capital"].to_numpy(), initial_capital=res.initial_capital,
                            bar_ns=res.bar_ns, block=int(settings.kpi["block_bootstrap_size_bars"]),
                            n_samples=int(settings.kpi["bootstrap_samples"]), seed=seed,
                            params=kpi_params)
        ci["halt_rate"] = _halt_rate_ci(sub, rprob, risk, th1, th2, int(settings.kpi["block_bootstrap_size_bars"]),
                                        int(settings.kpi["bootstrap_samples"]), seed)
        adopt_flags = adoption_check(kpis, settings.adoption["sharpe_min"], settings.adoption["max_dd_max"],
                                     settings.adoption["trades_per_year_min"])
        adoption = {
            "sharpe": {"value": kpis["sharpe"], "threshold": f"> {settings.adoption['sharpe_min']}", "pass": adopt_flags["sharpe"]},
            "max_dd": {"value": kpis["max_dd"], "threshold": f"< {settings.adoption['max_dd_max']}", "pass": adopt_flags["max_dd"]},
            "trades_per_year": {"value": kpis["trades_per_year"], "threshold": f">= {settings.adoption['trades_per_year_min']}",
                                "pass": adopt_flags["trades_per_year"]},
            "passed": adopt_flags["passed"],
        }
        stamps: dict[str, Any] = {**stamps_common, "data_hash": inp.data_hash}
        row: dict[str, Any] = {"pair_id": pair.pair_id, "period": str(per), "timeframe": timeframe,
                               "trades": len(trades), "theta1": th1, "theta2": th2,
                               "latency_bars": bt_params.latency_bars}
        for key, _ in KPI_ROWS:
            row[key] = kpis[key]
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = ci[key]
        row.update({"ann_return_simple": kpis["ann_return_simple"],
                    "sharpe_periods_per_year": kpi_params.periods_per_year, "candidates": res.counters.candidates,
                    "passed_theta1": res.counters.passed_theta1, "vetoed_by_ai2": res.counters.vetoed_by_ai2,
                    "adoption_passed": adopt_flags["passed"], **stamps})
        summaries.append(row)
        trades_all.append(_stamped(trades, pair.pair_id, stamps))
        deq = res.daily_equity()
        equity_all.append(_stamped(deq, pair.pair_id, stamps))
        kpi_rows = [{"kpi": key, "label": label, "value": kpis[key], "ci_low": ci[key][0], "ci_high": ci[key][1]}
                    for key, label in KPI_ROWS]
        c = res.counters
        funnel = {"candidates": c.candidates, "passed_theta1": c.passed_theta1, "vetoed_by_ai2": c.vetoed_by_ai2,
                  "entries": c.entries,
                  "max_return_prob": float(np.nanmax(rprob)) if np.isfinite(rprob).any() else float("nan")}
        result["pairs"][pair.pair_id] = {"theta1": th1, "theta2": th2, "kpi_rows": kpi_rows, "adoption": adoption,
                                         "stamps": stamps, "funnel": funnel}
        reports.append((pair.pair_id, {"kpi_rows": kpi_rows, "adoption": adoption, "stamps": stamps,
                                       "daily_equity": deq, "trades": trades, "z": sub.features["z"],
                                       "signals": pd.DataFrame({"return_prob": rprob, "risk_score": risk},
                                                               index=sub.features.index),
                                       "thresholds": {"theta1": th1, "theta2": th2}}))

    with staged_output(out) as tmp:
        tables = {"bt_summary": pd.DataFrame(summaries), "bt_trades": pd.concat(trades_all, ignore_index=True),
                  "bt_daily_equity": pd.concat(equity_all, ignore_index=True)}
        for name, df in tables.items():
            df.to_csv(tmp / f"{name}.csv", index=False)
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        for i, (pair_id, rep) in enumerate(reports):
            name = "report.html" if i == 0 else f"report_{pair_id}.html"
            render_report(tmp / name, title=f"Pairdesk backtest {pair_id} {per}", **rep)
        (tmp / "run.json").write_text(json.dumps({"params": run_params, **stamps_common}, indent=2, default=str))
    result["report"] = str(out / "report.html")
    return result

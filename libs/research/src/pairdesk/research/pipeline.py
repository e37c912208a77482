"""The research jobs behind the CLI: ``ingest``, ``bt train`` and ``bt run`` (spec 004
§data-assets-pipeline, §backtest-assets-engine 仕様 v1 I/O・出力, §時系列CV・評価KPI).

``bt run`` writes ``bt_summary``, ``bt_trades`` and ``bt_daily_equity`` as CSV and Parquet — per
pair (``scope = pair``) and, for a universe of two or more pairs, for the portfolio of the pairs
(``pair_id = PORTFOLIO``, ``scope = portfolio``; :func:`pairdesk.quant.portfolio.run_portfolio`) — each row
stamped with ``run_id, model_version, feature_schema_hash, data_hash, code_hash, params_hash,
seed, in_sample``, plus ``report.html`` (portfolio) and ``report_<pair_id>.html``. The KPI dicts
returned (and printed by the CLI) are the ones written to ``bt_summary``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pairdesk.quant.costs import CostModel
from pairdesk.quant.metrics import adoption_check
from pairdesk.quant.models import TrainedModel
from pairdesk.quant.portfolio import PORTFOLIO_ID, BacktestCounters, PortfolioResult, run_portfolio
from pairdesk.quant.stats import bootstrap_kpis, moving_block_bootstrap_indices
from pairdesk.research.config import load_yaml
from pairdesk.research.ingest import IngestReport, ingest
from pairdesk.research.inputs import (
    drop_trailing_imputed,
    load_pair_inputs,
    margin_requirements,
    portfolio_params,
)
from pairdesk.research.provenance import code_hash, parse_period, sha256_json
from pairdesk.research.report import render_portfolio_report, render_report
from pairdesk.research.settings import load_settings
from pairdesk.research.train import Progress, feature_schema, predict_signals, train
from pairdesk.research.universe import TIMEFRAME_MINUTES, load_universe, universe_calendars

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
    """Ingest a file drop into the Parquet store (calendars of the symbols and pair legs of
    ``universe``, asset-class defaults for other symbols; DQ from pipeline_policy)."""
    settings = load_settings(timeframe)
    return ingest(path, timeframe, symbols, store, universe_calendars(universe), settings.dq)


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
                     cost_table=cost_table, progress=progress, margin=margin_requirements(pairs))


def _stamped(df: pd.DataFrame, pair_id: str, stamps: dict[str, Any], scope: str = "pair") -> pd.DataFrame:
    """``df`` with ``pair_id``, ``scope`` and the provenance stamps as constant columns."""
    out = df.copy()
    out["pair_id"] = pair_id
    out["scope"] = scope
    for k, v in stamps.items():
        out[k] = v
    return out


def _halt_rate_ci(passed: np.ndarray, veto: np.ndarray, block: int, n_samples: int, seed: int) -> tuple[float, float]:
    """Block-bootstrap 95% CI of the candidate-level AI2 veto share ``Σ veto / Σ passed``, bars
    (rows of the per-bar counts ``passed`` / ``veto``, shape (n,)) resampled in blocks."""
    n = len(passed)
    if n < 2:
        return float("nan"), float("nan")
    idx = moving_block_bootstrap_indices(n, block=min(block, n), n_samples=n_samples,
                                         rng=np.random.default_rng(seed))
    p = passed[idx].sum(axis=1)
    v = veto[idx].sum(axis=1)
    ok = p > 0
    if not ok.any():
        return float("nan"), float("nan")
    lo, hi = np.percentile(v[ok] / p[ok], [2.5, 97.5])
    return float(lo), float(hi)


def training_guard(mparams: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The model's training period widened by M bars, ``[start − M·bar, end + M·bar)`` (UTC), from
    ``params.yaml`` (``training_period``; older bundles: ``created_from.period`` and
    ``exit_rule.M`` with the bundle's timeframe). ``None`` when the bundle records no period.

    *Choice*: the M bars are counted as calendar time ``M · bar length`` (48 × 1 h = 48 h), the
    embargo ``bt run`` keeps between training data and backtest (docs/quant-contracts.md
    §Research pipeline)."""
    tp = mparams.get("training_period")
    if isinstance(tp, dict) and tp.get("start") and tp.get("end"):
        start, end = pd.Timestamp(tp["start"]), pd.Timestamp(tp["end"])
        widen = pd.Timedelta(minutes=float(tp.get("bar_minutes", 60)) * int(tp.get("guard_bars", 0)))
    else:
        created = mparams.get("created_from") or {}
        if not created.get("period"):
            return None
        per = parse_period(str(created["period"]))
        start, end = per.start, per.end
        minutes = TIMEFRAME_MINUTES.get(str(created.get("timeframe")), 60)
        widen = pd.Timedelta(minutes=minutes * int((mparams.get("exit_rule") or {}).get("M", 0)))
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    return start - widen, end + widen


def _scan_candidates(universe: Path) -> pd.DataFrame | None:
    """``candidates.csv`` written by ``bt scan`` next to the universe file, if present."""
    path = universe.parent / "candidates.csv"
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (ValueError, OSError):
        return None


def _adoption(kpis: dict[str, float], adoption: dict[str, float]) -> dict[str, Any]:
    flags = adoption_check(kpis, adoption["sharpe_min"], adoption["max_dd_max"], adoption["trades_per_year_min"])
    return {
        "sharpe": {"value": kpis["sharpe"], "threshold": f"> {adoption['sharpe_min']}", "pass": flags["sharpe"]},
        "max_dd": {"value": kpis["max_dd"], "threshold": f"< {adoption['max_dd_max']}", "pass": flags["max_dd"]},
        "trades_per_year": {"value": kpis["trades_per_year"], "threshold": f">= {adoption['trades_per_year_min']}",
                            "pass": flags["trades_per_year"]},
        "passed": flags["passed"],
    }


def _summary_row(kpis: dict[str, float], ci: dict[str, tuple[float, float]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, _ in KPI_ROWS:
        row[key] = kpis[key]
        row[f"{key}_ci_low"], row[f"{key}_ci_high"] = ci[key]
    return row


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
    allow_in_sample: bool = False,
) -> dict[str, Any]:
    """``bt run``: backtest the combined rule over ``period`` with the models in ``model_dir``: every
    pair of the universe in one portfolio (:func:`pairdesk.quant.portfolio.run_portfolio`: one
    clock, shared capital ``E_0``, caps from ``backtest_policy.yaml`` ``portfolio``, margin from
    the universe's ``constraints.margin_requirement``, ruin, the ``dd_policy.yaml`` levels
    enforced in the simulation).

    The portfolio KPIs are the ones that count (adoption rule); their 95% CIs resample bars of
    the clock in blocks of ``block_bootstrap_size_bars``. Per-pair KPIs are diagnostics on ``E_0 +``
    the pair's daily PnL, their CIs resample days in blocks of ``ceil(block / bars_per_day)``. A
    one-pair universe writes one row per table: the pair, whose KPIs are the portfolio's.

    Outputs in ``out`` (CSV + Parquet): ``bt_summary`` — one row per pair (``scope = pair``) and,
    with two or more pairs, first the portfolio row (``pair_id = PORTFOLIO``, ``scope =
    portfolio``); ``bt_trades`` — every pair's trades (``pair_id``); ``bt_daily_equity`` — the
    portfolio's days (with two or more pairs) then each pair's. Every row carries ``in_sample`` and
    the provenance stamps. ``report.html``: the portfolio report and ``report_<pair_id>.html`` per
    pair (two or more pairs), else the pair's report; ``run.json`` (parameters, stamps, drawdown
    events, ruin, counters, warnings).

    ``run_id`` stamps every output row; a fresh uuid4 when omitted (the CLI). The backtest
    service passes its ``bt_runs.run_id`` so files and database rows carry the same id.

    Parameters
    ----------
    allow_in_sample : bool
        Run even when ``period`` overlaps the model's training period widened by M bars
        (:func:`training_guard`); every output is then stamped ``in_sample = True`` and the
        report is titled IN-SAMPLE. Default False: such a period is refused.

    Returns
    -------
    dict
        ``period``, ``out``, ``report``, ``in_sample``, ``warnings`` (list of str), ``portfolio``
        (``kpi_rows``, ``adoption``, ``funnel``, ``dd_events``, ``ruin``, ``theta1``, ``theta2``)
        and ``pairs`` (pair id → the same keys for the pair).

    Raises
    ------
    ValueError / FileNotFoundError / ConfigError
        Bad period, in-sample period without ``allow_in_sample``, missing model artefacts,
        feature schema mismatch, too few bars.
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
    guard = training_guard(mparams)
    in_sample = guard is not None and per.start < guard[1] and guard[0] < per.end
    if in_sample and not allow_in_sample:
        assert guard is not None
        raise ValueError(
            f"period {per} overlaps the model's training period widened by M bars "
            f"({guard[0]:%Y-%m-%d %H:%M}..{guard[1]:%Y-%m-%d %H:%M} UTC); choose a later period or pass "
            f"--allow-in-sample (outputs are then stamped IN-SAMPLE)"
        )
    warnings: list[str] = []
    model_theta = mparams.get("theta") or {}
    if not bool(mparams.get("feasible", model_theta.get("feasible", True))):
        warnings.append(
            f"the model's θ (θ1={model_theta.get('theta1')}, θ2={model_theta.get('theta2')}) was chosen from a θ grid "
            "with no feasible cell (MaxDD/trades-per-year constraints unmet on the training OOS predictions)"
            + ("; overridden here" if theta1 is not None or theta2 is not None else "")
        )
    if in_sample:
        warnings.append(f"IN-SAMPLE: period {per} overlaps the model's training period; KPIs are not out-of-sample")
    models = {ai: TrainedModel.load(model_dir / ai) for ai in ("ai1", "ai2")}
    th1 = float(theta1) if theta1 is not None else float(model_theta["theta1"])
    th2 = float(theta2) if theta2 is not None else float(model_theta["theta2"])
    latency = int(latency_bars) if latency_bars is not None else settings.backtest.latency_bars
    bt_params = replace(settings.backtest, theta1=th1, theta2=th2, latency_bars=latency)
    seed = int(settings.kpi["seed"])
    block = int(settings.kpi["block_bootstrap_size_bars"])
    n_boot = int(settings.kpi["bootstrap_samples"])
    run_params = {"theta1": th1, "theta2": th2, "backtest": bt_params.__dict__, "period": str(per),
                  "timeframe": timeframe, "cost_table": cost_table, "kpi": settings.kpi,
                  "pairs": [p.pair_id for p in pairs], "in_sample": bool(in_sample)}
    stamps_common: dict[str, Any] = {
        "run_id": run_id if run_id is not None else str(uuid.uuid4()),
        "model_version": str(mparams.get("model_version", model_dir.name)),
        "feature_schema_hash": schema_hash,
        "code_hash": code_hash(),
        "params_hash": sha256_json(run_params),
        "seed": seed,
    }
    bar = pd.Timedelta(minutes=TIMEFRAME_MINUTES[timeframe])
    warmup_from = per.start - 3 * settings.features.warmup_bars * bar
    result: dict[str, Any] = {"period": str(per), "pairs": {}, "out": str(out), "in_sample": bool(in_sample),
                              "warnings": warnings}
    margin = margin_requirements(pairs)
    engine_pairs = []
    views: dict[str, dict[str, Any]] = {}
    data_hashes: dict[str, str] = {}
    for pair in pairs:
        inp = load_pair_inputs(pair, store_dir=store, period=per, settings=settings, cost_table=cost_table,
                               warmup_from=warmup_from)
        rprob, risk = predict_signals(models["ai1"], models["ai2"], inp.features, inp.candidates)
        in_period = drop_trailing_imputed(np.asarray(inp.features.index >= per.start), inp.imputed)
        if in_period.sum() < 2:
            raise ValueError(f"{pair.pair_id}: fewer than 2 bars in {per}")
        sub = inp.slice(in_period)
        rprob, risk = rprob[in_period], risk[in_period]
        ep = sub.portfolio_inputs(return_prob=rprob, risk_score=risk,
                                  margin_requirement=margin.get(pair.pair_id, 0.0))
        engine_pairs.append(ep)
        data_hashes[pair.pair_id] = inp.data_hash
        prob_e, risk_e = np.asarray(ep.return_prob), np.asarray(ep.risk_score)
        passed = np.isfinite(prob_e) & np.asarray(ep.tradable) & (prob_e > th1)
        views[pair.pair_id] = {"sub": sub, "rprob": rprob, "risk": risk, "passed": passed,
                               "veto": passed & ~(risk_e < th2)}
    costs = CostModel.from_mapping(cost_table, sorted({s for p in pairs for s in (p.leg_a.symbol, p.leg_b.symbol)}))
    port: PortfolioResult = run_portfolio(engine_pairs, costs, bt_params, portfolio_params(settings))
    e0 = port.initial_capital
    kpi_params = settings.kpi_params_for(port.ts)
    trades = port.trades
    pair_index = {pid: i for i, pid in enumerate(port.pair_ids)}
    exit_open = np.zeros(len(trades), dtype=np.int64)
    for pid, i in pair_index.items():
        sel = (trades["pair_id"] == pid).to_numpy()
        exit_open[sel] = port.pair_ts[i][trades.loc[sel, "bar_exit"].to_numpy(np.int64)]

    # --- portfolio KPIs and block-bootstrap CIs (bars of the clock resampled) ------------------------
    pk = port.kpis(kpi_params)
    bar_pnl = np.diff(port.equity, prepend=e0)
    pci = bootstrap_kpis(bar_pnl, port.ts, np.searchsorted(port.ts, exit_open), trades["pnl"].to_numpy(),
                         trades["return_on_capital"].to_numpy(), initial_capital=e0, bar_ns=port.bar_ns,
                         block=block, n_samples=n_boot, seed=seed, params=kpi_params)
    passed_u = np.zeros(len(port.ts), dtype=np.int64)
    veto_u = np.zeros(len(port.ts), dtype=np.int64)
    for pid, v in views.items():
        pos = np.searchsorted(port.ts, np.asarray(port.pair_ts[pair_index[pid]], dtype=np.int64))
        np.add.at(passed_u, pos, v["passed"].astype(np.int64))
        np.add.at(veto_u, pos, v["veto"].astype(np.int64))
    pci["halt_rate"] = _halt_rate_ci(passed_u, veto_u, block, n_boot, seed)
    p_adoption = _adoption(pk, settings.adoption)
    p_hash = next(iter(data_hashes.values())) if len(data_hashes) == 1 else sha256_json(data_hashes)
    p_stamps: dict[str, Any] = {**stamps_common, "data_hash": p_hash, "in_sample": bool(in_sample)}
    p_kpi_rows = _kpi_rows(pk, pci)
    ev = port.dd_events
    events = [{"ts": pd.Timestamp(t).isoformat(), "scope": str(sc), "level": str(lv), "dd": float(d)}
              for t, sc, lv, d in zip(ev["ts"], ev["scope"], ev["level"], ev["dd"], strict=True)]
    ruin_ts = None if port.ruin_ts is None else pd.Timestamp(port.ruin_ts).isoformat()
    p_deq = port.daily_equity()
    multi = len(pairs) > 1

    # --- per pair (diagnostics): KPIs on E_0 + the pair's daily PnL, CIs resampling days -------------
    summaries: list[dict[str, Any]] = []
    trades_all: list[pd.DataFrame] = []
    equity_all: list[pd.DataFrame] = []
    reports: list[tuple[str, dict[str, Any]]] = []
    day_block = max(1, math.ceil(block / settings.bars_per_day))
    for pid, v in views.items():
        c = port.counters[pid]
        t = trades[trades["pair_id"] == pid].reset_index(drop=True)
        stamps: dict[str, Any] = {**stamps_common, "data_hash": data_hashes[pid], "in_sample": bool(in_sample)}
        deq = _pair_daily_equity(port.pair_daily_pnl[pid], e0)
        if multi:
            kpis = port.pair_kpis(pid, kpi_params)
            day_ts = pd.DatetimeIndex(pd.to_datetime(deq["date"]), tz="UTC").as_unit("ns").asi8
            exit_day = np.asarray(pd.to_datetime(exit_open[(trades["pair_id"] == pid).to_numpy()], utc=True)
                                  .floor("D").as_unit("ns").asi8)
            ci = bootstrap_kpis(np.diff(deq["equity"].to_numpy(), prepend=e0), day_ts,
                                np.searchsorted(day_ts, exit_day), t["pnl"].to_numpy(),
                                t["return_on_capital"].to_numpy(), initial_capital=e0, bar_ns=86_400_000_000_000,
                                block=day_block, n_samples=n_boot, seed=seed, params=kpi_params)
            ci["halt_rate"] = _halt_rate_ci(v["passed"].astype(np.int64), v["veto"].astype(np.int64), block,
                                            n_boot, seed)
        else:
            kpis, ci, deq = pk, pci, p_deq
        adoption = _adoption(kpis, settings.adoption)
        row = _row(pid, "pair", per, timeframe, len(t), th1, th2, bt_params.latency_bars, kpis, ci, c,
                   float(t["pnl"].sum()), adoption["passed"], kpi_params.periods_per_year, stamps)
        summaries.append(row)
        trades_all.append(_stamped(t, pid, stamps))
        equity_all.append(_stamped(deq, pid, stamps))
        kpi_rows = _kpi_rows(kpis, ci)
        rprob = v["rprob"]
        funnel = _funnel(c, float(np.nanmax(rprob)) if np.isfinite(rprob).any() else float("nan"))
        result["pairs"][pid] = {"theta1": th1, "theta2": th2, "kpi_rows": kpi_rows, "adoption": adoption,
                                "stamps": stamps, "funnel": funnel, "total_pnl": float(t["pnl"].sum()),
                                "trades": len(t)}
        sub = v["sub"]
        reports.append((pid, {"kpi_rows": kpi_rows, "adoption": adoption, "stamps": stamps, "daily_equity": deq,
                              "trades": t, "z": sub.features["z"],
                              "signals": pd.DataFrame({"return_prob": rprob, "risk_score": v["risk"]},
                                                      index=sub.features.index),
                              "thresholds": {"theta1": th1, "theta2": th2}}))
    pc = port.counters[PORTFOLIO_ID]
    result["portfolio"] = {
        "theta1": th1, "theta2": th2, "kpi_rows": p_kpi_rows, "adoption": p_adoption, "stamps": p_stamps,
        "funnel": _funnel(pc, max((r["funnel"]["max_return_prob"] for r in result["pairs"].values()),
                                  default=float("nan"))),
        "dd_events": events, "ruin": ruin_ts, "n_pairs": len(pairs), "trades": len(trades),
        "total_pnl": float(trades["pnl"].sum()),
    }
    if multi:
        summaries.insert(0, _row(PORTFOLIO_ID, "portfolio", per, timeframe, len(trades), th1, th2,
                                 bt_params.latency_bars, pk, pci, pc, float(trades["pnl"].sum()),
                                 p_adoption["passed"], kpi_params.periods_per_year, p_stamps))
        equity_all.insert(0, _stamped(p_deq, PORTFOLIO_ID, p_stamps, scope="portfolio"))
    for r in summaries:
        r["ruined"] = bool(port.ruined) if r["scope"] == "portfolio" or not multi else False

    title_tag = "IN-SAMPLE " if in_sample else ""
    with staged_output(out) as tmp:
        tables = {"bt_summary": pd.DataFrame(summaries), "bt_trades": pd.concat(trades_all, ignore_index=True),
                  "bt_daily_equity": pd.concat(equity_all, ignore_index=True)}
        for name, df in tables.items():
            df.to_csv(tmp / f"{name}.csv", index=False)
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        per_pair_rows = [{"pair_id": r["pair_id"], **{k: r[k] for k in PAIR_TABLE_COLUMNS}}
                         for r in summaries if r["scope"] == "pair"]
        if multi:
            render_portfolio_report(
                tmp / "report.html",
                title=f"{title_tag}Pairdesk portfolio backtest ({len(pairs)} pairs) {per}",
                in_sample=bool(in_sample), kpi_rows=p_kpi_rows, adoption=p_adoption, stamps=p_stamps,
                daily_equity=p_deq, pair_daily_equity={pid: rep["daily_equity"] for pid, rep in reports},
                pair_rows=per_pair_rows, funnel=result["portfolio"]["funnel"], dd_events=events,
                ruin_ts=ruin_ts, warnings=warnings, candidates=_scan_candidates(universe),
            )
        for pair_id, rep in reports:
            name = f"report_{pair_id}.html" if multi else "report.html"
            render_report(tmp / name, title=f"{title_tag}Pairdesk backtest {pair_id} {per}", **rep)
        (tmp / "run.json").write_text(json.dumps(
            {"params": run_params, **stamps_common, "in_sample": bool(in_sample), "warnings": warnings,
             "portfolio": {"dd_events": events, "ruined": bool(port.ruined), "ruin_ts": ruin_ts,
                           "counters": {k: asdict(cv) for k, cv in port.counters.items()}}},
            indent=2, default=str))
    result["report"] = str(out / "report.html")
    return result


def _kpi_rows(kpis: dict[str, float], ci: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    return [{"kpi": key, "label": label, "value": kpis[key], "ci_low": ci[key][0], "ci_high": ci[key][1]}
            for key, label in KPI_ROWS]


def _funnel(c: BacktestCounters, max_return_prob: float) -> dict[str, Any]:
    return {"candidates": c.candidates, "passed_theta1": c.passed_theta1, "vetoed_by_ai2": c.vetoed_by_ai2,
            "entries": c.entries, "blocked": c.blocked, "refused": c.refused, "max_return_prob": max_return_prob}


def _pair_daily_equity(daily_pnl: pd.Series, e0: float) -> pd.DataFrame:
    """``date, equity, dd`` of one pair on the shared capital: ``E_0 +`` its daily cumulative PnL,
    ``dd`` in units of ``E_0`` from the running peak (``E_0`` included), as the portfolio's."""
    eq = e0 + daily_pnl.to_numpy(np.float64)
    peak = np.maximum.accumulate(np.r_[e0, eq])[1:]
    return pd.DataFrame({"date": list(daily_pnl.index), "equity": eq, "dd": (peak - eq) / e0})


def _row(pair_id: str, scope: str, per: Any, timeframe: str, n_trades: int, th1: float, th2: float, latency: int,
         kpis: dict[str, float], ci: dict[str, tuple[float, float]], c: BacktestCounters, total_pnl: float,
         adopted: bool, periods_per_year: float, stamps: dict[str, Any]) -> dict[str, Any]:
    """One bt_summary row."""
    return {"pair_id": pair_id, "scope": scope, "period": str(per), "timeframe": timeframe, "trades": n_trades,
            "theta1": th1, "theta2": th2, "latency_bars": latency, **_summary_row(kpis, ci),
            "ann_return_simple": kpis["ann_return_simple"], "fp_rate_ai2": kpis["fp_rate_ai2"],
            "total_pnl": total_pnl, "sharpe_periods_per_year": periods_per_year, "candidates": c.candidates,
            "passed_theta1": c.passed_theta1, "vetoed_by_ai2": c.vetoed_by_ai2, "entries": c.entries,
            "blocked": c.blocked, "refused": c.refused, "adoption_passed": adopted, **stamps}


#: Columns of the per-pair table (printed and in report.html), from the pair's bt_summary row.
PAIR_TABLE_COLUMNS: tuple[str, ...] = ("trades", "total_pnl", "ann_return", "sharpe", "max_dd", "win_rate",
                                       "halt_rate", "adoption_passed")

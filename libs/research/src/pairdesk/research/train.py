"""``bt train``: features v1 → AI1/AI2 labels → LightGBM with purged K-fold and isotonic calibration
→ expanding walk-forward out-of-sample predictions → θ1/θ2 selection on those OOS predictions
(spec 004 §機械学習要件, §時系列CV・評価KPI 仕様 v1, §閾値最適化（θ1/θ2）仕様 v1).

Artefacts written to ``out_dir`` (the model version directory):

* ``ai1/`` and ``ai2/`` — ``model.txt`` (native LightGBM text), ``calibrator.json`` (isotonic),
  ``normaliser.json`` (robust median/MAD + winsor + clip parameters), ``training.json``, ``oof.npz``;
* ``feature_schema.json`` (+ its SHA-256 in ``params.yaml``);
* ``params.yaml`` — every parameter used, the selected θ1/θ2 with the grid evidence, hashes, seed,
  ``feasible`` (False when no θ cell met the hard constraints: the θ is then only the best
  infeasible score and ``bt train`` warns) and ``training_period`` (``start``/``end`` UTC ISO and
  ``guard_bars`` = M: ``bt run`` refuses periods overlapping it widened by M bars);
* ``metrics.json`` — purged-CV metrics per fold with mean/std/min/max across folds, walk-forward
  OOS metrics per fold and pooled;
* ``oos_predictions.parquet`` — walk-forward out-of-sample ``return_prob`` / ``risk_score`` per bar;
* ``theta_grid.csv`` — portfolio KPIs, the AI2 false-positive term (``fp_rate_ai2`` from the aligned
  AI2 labels) and the spec objective for every θ cell on the OOS predictions of all pairs run as
  one portfolio (:func:`oos_theta_grid`); ``feasible`` and the adoption-style constraints are
  portfolio figures.

Several pairs are pooled into one model; their samples are placed on one UTC bar clock (the sorted
union of the pairs' timestamps) so that blocks, purge and embargo are in common bar positions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pairdesk.quant.backtest import BacktestParams, theta_grid
from pairdesk.quant.classification import ai1_metrics, ai2_metrics, fold_summary
from pairdesk.quant.costs import CostModel
from pairdesk.quant.cv import walk_forward_indices, walk_forward_splits
from pairdesk.quant.features import FEATURE_COLUMNS
from pairdesk.quant.labels import hedged_spread_return, label_ai1, label_ai2
from pairdesk.quant.models import NormaliserParams, TrainedModel, train_classifier
from pairdesk.quant.portfolio import PortfolioParams, grid_search_portfolio
from pairdesk.research.inputs import (
    PairInputs,
    drop_trailing_imputed,
    load_pair_inputs,
    portfolio_params,
)
from pairdesk.research.provenance import Period, code_hash, sha256_json
from pairdesk.research.settings import ResearchSettings
from pairdesk.research.universe import PairConfig

#: Model inputs: every feature v1 column except the raw spread level (non-stationary, in log
#: units of a β that drifts; its information is carried by z, slopes, ATR and RSI).
MODEL_FEATURES: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c != "spread")

Progress = Callable[[str, int, int], None]


def _noop(_: str, __: int, ___: int) -> None:
    return None


@dataclass
class _Samples:
    X: pd.DataFrame
    y: np.ndarray
    t_pos: np.ndarray
    t_end_pos: np.ndarray
    pair: np.ndarray


def normaliser_params(settings: ResearchSettings) -> NormaliserParams:
    """``NormaliserParams`` from ``retrain_policy.yaml`` ``normalisation``."""
    n = settings.normalisation
    return NormaliserParams(
        winsor_quantiles=(float(n["winsor_quantiles"][0]), float(n["winsor_quantiles"][1])),
        clip_features=tuple(n["clip_features"]),
        clip=float(n["clip"]),
    )


def predict_signals(
    ai1: TrainedModel, ai2: TrainedModel, features: pd.DataFrame, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated ``return_prob`` (AI1, only on candidate bars) and ``risk_score`` (AI2, every bar)
    for ``features`` (n rows); NaN where not predicted or where a model input is not finite."""
    finite = np.isfinite(features[list(MODEL_FEATURES)].to_numpy()).all(axis=1)
    out = []
    for model, rows in ((ai1, candidates & finite), (ai2, finite)):
        pred = np.full(len(features), np.nan)
        if rows.any():
            pred[rows] = model.predict_proba(features.loc[rows, list(MODEL_FEATURES)])
        out.append(pred)
    return out[0], out[1]


def feature_schema(settings: ResearchSettings) -> dict[str, Any]:
    """The feature contract a model was trained with (hashed into ``feature_schema_hash``)."""
    return {
        "schema_version": "v1",
        "source": "spec 004 §特徴量仕様 v1; docs/quant-contracts.md",
        "timeframe": settings.timeframe,
        "columns": list(FEATURE_COLUMNS),
        "model_features": list(MODEL_FEATURES),
        "feature_params": asdict(settings.features),
        "dtype": "float64",
        "price_transform": "log",
    }


def _clock(inputs: list[PairInputs]) -> pd.DatetimeIndex:
    idx = inputs[0].features.index
    for p in inputs[1:]:
        idx = idx.union(p.features.index)
    return pd.DatetimeIndex(idx, name="ts_utc")


def _stack(parts: list[tuple[str, pd.DataFrame, pd.DataFrame]], clock: pd.DatetimeIndex) -> _Samples:
    """Stack per-pair (pair_id, labels, features) into pooled samples on the common clock."""
    xs, ys, tp, te, pid = [], [], [], [], []
    for pair_id, lab, feats in parts:
        xs.append(feats.loc[lab.index, list(MODEL_FEATURES)])
        ys.append(lab["y"].to_numpy(np.int64))
        tp.append(clock.get_indexer(lab.index))
        te.append(clock.get_indexer(pd.DatetimeIndex(lab["t_end"])))
        pid.append(np.full(len(lab), pair_id, dtype=object))
    X = pd.concat(xs) if xs else pd.DataFrame(columns=list(MODEL_FEATURES))
    return _Samples(
        X=X,
        y=np.concatenate(ys),
        t_pos=np.concatenate(tp).astype(np.int64),
        t_end_pos=np.concatenate(te).astype(np.int64),
        pair=np.concatenate(pid),
    )


def _fit(samples: _Samples, idx: np.ndarray, settings: ResearchSettings, ai: str) -> TrainedModel:
    theta2 = settings.theta_initial[1]
    metrics_fn = ai1_metrics if ai == "ai1" else (lambda y, p: ai2_metrics(y, p, theta=theta2))
    return train_classifier(
        samples.X.iloc[idx],
        samples.y[idx],
        None,
        samples.t_pos[idx],
        samples.t_end_pos[idx],
        settings.lgbm_for(ai),
        settings.cv,
        metrics_fn=metrics_fn,
        normaliser_params=normaliser_params(settings),
    )


def _oos_metrics(
    parts: list[tuple[str, pd.DataFrame, pd.DataFrame]],
    oos: pd.DataFrame,
    col: str,
    metric_fn: Callable[[Any, Any], dict[str, float]],
) -> dict[str, Any]:
    """Classification metrics of the walk-forward OOS predictions ``col`` against the labels:
    per walk-forward fold (folds with both classes), their spread, and pooled over all folds."""
    per_fold: list[dict[str, float]] = []
    ys, ps = [], []
    for pair_id, lab, _ in parts:
        o = oos[oos["pair_id"] == pair_id]
        joined = lab.join(o[[col, "fold"]], how="inner").dropna(subset=[col])
        ys.append(joined["y"].to_numpy())
        ps.append(joined[col].to_numpy())
        for fold_id, g in joined.groupby("fold"):
            if g["y"].nunique() == 2:
                per_fold.append({"fold": float(fold_id), **metric_fn(g["y"], g[col])})  # type: ignore[arg-type]
    y_all, p_all = np.concatenate(ys), np.concatenate(ps)
    return {
        "pooled": metric_fn(y_all, p_all) if len(np.unique(y_all)) == 2 else {},
        "per_fold": per_fold,
        "across_folds": fold_summary([{k: v for k, v in m.items() if k != "fold"} for m in per_fold])
        if per_fold
        else {},
    }


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def select_theta(grid: pd.DataFrame) -> dict[str, Any]:
    """Pick θ1/θ2 from the grid (spec §閾値最適化): the best ``score`` among cells meeting the hard
    constraints (MaxDD ≤ dd_target, trades/yr ≥ trades_min); if none is feasible, the best score
    overall, with ``feasible = False`` recorded so the choice is not mistaken for an adopted one."""
    feasible = grid[grid["feasible"]]
    pool = feasible if len(feasible) else grid
    best = pool.sort_values(["score", "theta1", "theta2"], ascending=[False, True, True]).iloc[0]
    return {
        "theta1": round(float(best["theta1"]), 4),
        "theta2": round(float(best["theta2"]), 4),
        "score": float(best["score"]),
        "feasible": bool(len(feasible) > 0),
        "n_feasible_cells": len(feasible),
    }


def theta_grid_values(settings: ResearchSettings) -> tuple[np.ndarray, np.ndarray]:
    """θ1 and θ2 grids from ``core_policy.yaml`` ``theta_search_range`` (step 0.02 by default)."""
    r = settings.theta_range
    step = float(r.get("step", 0.02))
    (a1, b1), (a2, b2) = r["theta1"], r["theta2"]
    return theta_grid(float(a1), float(b1), step), theta_grid(float(a2), float(b2), step)


def oos_theta_grid(
    inputs: list[PairInputs],
    oos: pd.DataFrame,
    settings: ResearchSettings,
    cost_table: Mapping[str, Any],
    ai2_labels: Mapping[str, pd.DataFrame] | None = None,
    *,
    portfolio: PortfolioParams | None = None,
    margin: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Run the θ1/θ2 grid on the walk-forward OOS predictions, every cell scored on the
    **portfolio** of the pairs (spec 004 §閾値最適化; :func:`pairdesk.quant.portfolio.grid_search_portfolio`:
    one clock, shared capital, caps, margin, ruin and the drawdown policy).

    Each pair enters with its OOS bars (the slice ending on a real, non-imputed bar) and, when
    ``ai2_labels`` (``pair_id`` → :func:`pairdesk.quant.labels.label_ai2` frame) is given, its
    AI2 labels aligned to those bars, so ``fp_rate_ai2`` — and the ``λ_stop`` term of the score —
    is computed. ``portfolio`` defaults to :func:`pairdesk.research.inputs.portfolio_params`;
    ``margin`` maps pair id → margin requirement (missing: 0, no margin check).

    Returns
    -------
    DataFrame, one row per (θ1, θ2) cell, columns ``GRID_FIELDS``.

    Raises
    ------
    ValueError
        No pair has OOS predictions.
    """
    t1, t2 = theta_grid_values(settings)
    engine_pairs = []
    clock: pd.Index = pd.DatetimeIndex([], tz="UTC")
    symbols: list[str] = []
    for p in inputs:
        o = oos[oos["pair_id"] == p.pair.pair_id]
        mask = drop_trailing_imputed(p.features.index.isin(o.index), p.imputed)
        if mask.sum() < 2:
            continue
        sub = p.slice(mask)
        sub_oos = o.reindex(sub.features.index)
        label = None
        if ai2_labels is not None and p.pair.pair_id in ai2_labels:
            label = ai2_labels[p.pair.pair_id]["y"].reindex(sub.features.index).to_numpy(np.float64)
        engine_pairs.append(sub.portfolio_inputs(
            return_prob=sub_oos["return_prob"].to_numpy(np.float64),
            risk_score=sub_oos["risk_score"].to_numpy(np.float64),
            risk_label=label,
            margin_requirement=(margin or {}).get(p.pair.pair_id, 0.0),
        ))
        clock = clock.union(sub.features.index)
        symbols += [p.pair.leg_a.symbol, p.pair.leg_b.symbol]
    if not engine_pairs:
        raise ValueError("no out-of-sample predictions to search θ on (training period too short?)")
    cells = grid_search_portfolio(
        engine_pairs,
        CostModel.from_mapping(dict(cost_table), sorted(set(symbols))),
        settings.backtest,
        t1,
        t2,
        portfolio if portfolio is not None else portfolio_params(settings),
        objective=settings.theta_objective,
        kpi_params=settings.kpi_params_for(clock),
    )
    return pd.DataFrame(cells.ravel())


def train(
    pairs: list[PairConfig],
    *,
    store_dir: Path,
    period: Period,
    settings: ResearchSettings,
    out_dir: Path,
    cost_table: dict[str, Any],
    progress: Progress = _noop,
    margin: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Run ``bt train`` and write the artefacts listed in the module docstring into ``out_dir``.

    Returns the summary dict that is also stored in ``metrics.json`` (``summary`` key).
    ``margin`` maps pair id → ``constraints.margin_requirement`` for the portfolio θ grid.

    Raises
    ------
    ValueError
        Too little data for the warm-up, the walk-forward's minimum training span or the CV blocks,
        or a label set with a single class.
    """
    inputs = [
        load_pair_inputs(p, store_dir=store_dir, period=period, settings=settings, cost_table=cost_table)
        for p in pairs
    ]
    clock = _clock(inputs)
    lp, rp = settings.labels, settings.risk
    ai1_parts = [(p.pair.pair_id, label_ai1(p.features, lp), p.features) for p in inputs]
    ai2_parts = [
        (
            p.pair.pair_id,
            label_ai2(p.features, rp, hedged_spread_return(p.features, p.bars_a["close"], p.bars_b["close"]),
                      horizon_bars=lp.M),
            p.features,
        )
        for p in inputs
    ]
    s1, s2 = _stack(ai1_parts, clock), _stack(ai2_parts, clock)
    for name, s in (("AI1", s1), ("AI2", s2)):
        if len(s.y) == 0 or s.y.min() == s.y.max():
            raise ValueError(f"{name} labels over {period} have a single class ({len(s.y)} samples)")

    # --- expanding walk-forward: out-of-sample predictions for every test window -------------
    folds = walk_forward_splits(len(clock), settings.bars_per_day, settings.wf_step_days, settings.wf_min_train_days)
    oos_parts: list[pd.DataFrame] = []
    wf_records: list[dict[str, Any]] = []
    for k, fold in enumerate(folds):
        progress("walk-forward", k, len(folds))
        record: dict[str, Any] = {"fold": k, "train_end": str(clock[fold.train_end - 1]),
                                  "test_start": str(clock[fold.test_start]), "test_end": str(clock[fold.test_end - 1])}
        models: dict[str, TrainedModel] = {}
        for ai, s in (("ai1", s1), ("ai2", s2)):
            tr, _ = walk_forward_indices(fold, s.t_pos, s.t_end_pos, settings.cv.purge_bars)
            try:
                models[ai] = _fit(s, tr, settings, ai)
            except ValueError as exc:
                record[f"{ai}_skipped"] = str(exc)
        record["trained"] = sorted(models)
        if len(models) == 2:
            for p in inputs:
                pos = clock.get_indexer(p.features.index)
                sel = (pos >= fold.test_start) & (pos < fold.test_end)
                if not sel.any():
                    continue
                f = p.features.iloc[np.flatnonzero(sel)]
                rp_, rs_ = predict_signals(models["ai1"], models["ai2"], f, p.candidates[sel])
                oos_parts.append(pd.DataFrame({"pair_id": p.pair.pair_id, "fold": k, "return_prob": rp_,
                                               "risk_score": rs_}, index=f.index))
        wf_records.append(record)
    progress("walk-forward", len(folds), len(folds))
    if not oos_parts:
        raise ValueError("walk-forward produced no out-of-sample predictions (every fold lacked data)")
    oos = pd.concat(oos_parts).sort_index()

    wf_metrics = {
        "ai1": _oos_metrics(ai1_parts, oos, "return_prob", ai1_metrics),
        "ai2": _oos_metrics(ai2_parts, oos, "risk_score",
                            lambda y, p: ai2_metrics(y, p, theta=settings.theta_initial[1])),
    }

    # --- θ1/θ2 on the OOS predictions ------------------------------------------------------------
    progress("theta grid", 0, 1)
    grid = oos_theta_grid(inputs, oos, settings, cost_table, {pid: lab for pid, lab, _ in ai2_parts},
                          margin=margin)
    theta = select_theta(grid)
    progress("theta grid", 1, 1)

    # --- final models on the whole training period (purged K-fold inside) -----------------------
    progress("final models", 0, 2)
    final: dict[str, TrainedModel] = {}
    for i, (ai, s) in enumerate((("ai1", s1), ("ai2", s2))):
        final[ai] = _fit(s, np.arange(len(s.y)), settings, ai)
        progress("final models", i + 1, 2)

    # --- artefacts ------------------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    for ai, model in final.items():
        model.save(out_dir / ai)
    schema = feature_schema(settings)
    (out_dir / "feature_schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True))
    schema_hash = sha256_json(schema)
    oos.to_parquet(out_dir / "oos_predictions.parquet")
    grid.to_csv(out_dir / "theta_grid.csv", index=False)
    data_hash = sha256_json([p.data_hash for p in inputs])
    bt: BacktestParams = settings.backtest
    params = {
        "model_version": out_dir.name,
        "created_from": {"pairs": [p.pair.pair_id for p in inputs], "period": str(period),
                         "timeframe": settings.timeframe, "bars": {p.pair.pair_id: len(p.features) for p in inputs}},
        "feature_schema_hash": schema_hash,
        "data_hash": data_hash,
        "code_hash": code_hash(),
        "seed": settings.lgbm.seed,
        "theta": theta,
        "feasible": theta["feasible"],
        # bt run refuses periods overlapping [start - M bars, end + M bars) (honesty guard)
        "training_period": {"start": period.start.isoformat(), "end": period.end.isoformat(),
                            "guard_bars": int(bt.M), "bar_minutes": round(24 * 60 / settings.bars_per_day)},
        "theta_scope": "portfolio" if len(inputs) > 1 else "pair",
        "portfolio": asdict(portfolio_params(settings)),
        "features": asdict(settings.features),
        "labels_ai1": asdict(settings.labels),
        "labels_ai2": asdict(settings.risk),
        "cv": asdict(settings.cv),
        "walk_forward": {"wf_step_days": settings.wf_step_days, "wf_min_train_days": settings.wf_min_train_days,
                         "bars_per_day": settings.bars_per_day, "n_folds": len(folds)},
        "lightgbm": asdict(settings.lgbm),
        "normalisation": settings.normalisation,
        "model_features": list(MODEL_FEATURES),
        "exit_rule": {"z_exit": bt.z_exit, "M": bt.M, "theta_stop": bt.theta_stop, "risk_stop": bt.risk_stop},
    }
    params["params_hash"] = sha256_json(params)
    (out_dir / "params.yaml").write_text(yaml.safe_dump(_json_safe(params), sort_keys=False, allow_unicode=True))
    summary = {
        "pairs": [p.pair.pair_id for p in inputs], "training_period": str(period),
        "ai1_samples": len(s1.y), "ai1_positive_rate": float(s1.y.mean()),
        "ai2_samples": len(s2.y), "ai2_positive_rate": float(s2.y.mean()),
        "walk_forward_folds": len(folds), "oos_bars": len(oos), "theta": theta,
    }
    metrics = {
        "summary": summary,
        "cv": {ai: {"per_fold": model.fold_metrics, "across_folds": fold_summary(model.fold_metrics),
                    "best_iterations": list(model.best_iterations), "num_boost_round": model.num_boost_round}
               for ai, model in final.items()},
        "walk_forward": {"folds": wf_records, **wf_metrics},
    }
    (out_dir / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False))
    return summary


__all__ = ["MODEL_FEATURES", "feature_schema", "oos_theta_grid", "predict_signals", "select_theta", "train"]

"""Tests for pairdesk.quant.models and pairdesk.quant.classification (spec 004 §時系列CV・評価KPI 仕様 v1)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pairdesk.quant.classification import (
    ai1_metrics,
    ai2_metrics,
    auc,
    brier,
    ece,
    fold_summary,
    pr_auc,
    recall_low_risk_band,
    weighted_f1,
)
from pairdesk.quant.cv import PurgedKFold
from pairdesk.quant.models import (
    IsotonicCalibrator,
    LGBMParams,
    Normaliser,
    NormaliserParams,
    TrainedModel,
    train_classifier,
)
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    recall_score,
    roc_auc_score,
)

CV = PurgedKFold(n_splits=5, purge_bars=24, embargo_bars=24, min_block_len_bars=240)
# One thread: on a loaded 2-core machine OpenMP's spin-waiting makes num_threads=2 ~50x slower
# for these tiny problems; with deterministic=True the models are the same either way.
FAST = LGBMParams(learning_rate=0.1, num_boost_round=300, num_threads=1)


# ------------------------------------------------------------------------------------ metrics


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 800)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 800), 0, 1).round(2)  # ties on purpose
    return y, p


def test_metrics_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    for theta in (0.3, 0.5, 0.62):
        pred = (p >= theta).astype(int)
        assert weighted_f1(y, p, theta) == pytest.approx(
            f1_score(y, pred, average="weighted"), abs=1e-12
        )
        low = (p < theta).astype(int)
        assert recall_low_risk_band(y, p, theta) == pytest.approx(
            recall_score((y == 0).astype(int), low), abs=1e-12
        )


def test_metrics_small_hand_worked() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert auc(y, p) == pytest.approx(0.75)  # pairs (pos > neg): 3 of 4
    assert brier(y, p) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert pr_auc(y, p) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    # θ = 0.5: pred [0,0,0,1]; F1_0 = 2*2/(4+1) = 0.8, F1_1 = 2/(2+1) = 2/3; weights 1/2 each
    assert weighted_f1(y, p) == pytest.approx(0.5 * 0.8 + 0.5 * 2 / 3)
    # low band p < 0.3: of the two y = 0 samples only 0.1 is in it
    assert recall_low_risk_band(y, p, 0.3) == pytest.approx(0.5)


def test_ece_hand_worked() -> None:
    y = np.array([0, 0, 1, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.15, 0.85, 0.95, 1.0])
    # bins: [0,.1): {.05|0} gap .05; [.1,.2): {.15,.15|0,1} gap |.5-.15| = .35;
    # [.8,.9): {.85|1} gap .15; [.9,1]: {.95,1.0|1,1} gap .025
    expected = (1 * 0.05 + 2 * 0.35 + 1 * 0.15 + 2 * 0.025) / 6
    assert ece(y, p) == pytest.approx(expected, abs=1e-12)
    assert ece(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0
    # two bins: [0, .5) holds .05, .15, .15 and [.5, 1] the rest
    assert ece(y, p, n_bins=2) == pytest.approx(
        (3 * abs(1 / 3 - 0.35 / 3) + 3 * abs(1 - 2.8 / 3)) / 6, abs=1e-12
    )


def test_ece_matches_pandas_binning(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    df = pd.DataFrame({"y": y, "p": p})
    df["bin"] = pd.cut(df["p"], np.arange(11) / 10, right=False, include_lowest=True)
    df.loc[df["p"] == 1.0, "bin"] = df["bin"].cat.categories[-1]
    g = df.groupby("bin", observed=True).agg(n=("y", "size"), y=("y", "mean"), p=("p", "mean"))
    expected = float((g["n"] / len(df) * (g["y"] - g["p"]).abs()).sum())
    assert ece(y, p) == pytest.approx(expected, abs=1e-12)


def test_undefined_metrics_are_nan_and_bad_input_raises() -> None:
    y = np.zeros(5, dtype=int)
    p = np.linspace(0, 1, 5)
    assert math.isnan(auc(y, p))
    assert math.isnan(pr_auc(y, p))
    assert math.isnan(recall_low_risk_band(np.ones(5, dtype=int), p, 0.3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="same length"):
        brier(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece(np.array([0, 1]), np.array([0.1, 1.2]))
    with pytest.raises(ValueError, match="finite"):
        auc(np.array([0, 1]), np.array([0.1, np.nan]))


def test_metric_sets_and_fold_summary(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    m1 = ai1_metrics(y, p)
    assert set(m1) == {"auc", "brier", "pr_auc", "ece", "n", "positive_rate"}
    m2 = ai2_metrics(y, p, theta=0.3)
    assert m2["recall_low_risk_band"] == recall_low_risk_band(y, p, 0.3)
    assert m2["weighted_f1"] == weighted_f1(y, p, 0.5)
    s = fold_summary([{"auc": 0.6, "brier": 0.2}, {"auc": 0.7}, {"auc": 0.8, "brier": 0.3}])
    assert s["auc"]["mean"] == pytest.approx(0.7)
    assert s["auc"]["std"] == pytest.approx(0.1)  # sample std of 0.6, 0.7, 0.8
    assert (s["auc"]["min"], s["auc"]["max"]) == (0.6, 0.8)
    per = s["brier"]["per_fold"]
    assert isinstance(per, list)
    assert per[0] == 0.2
    assert math.isnan(per[1])
    assert per[2] == 0.3
    assert s["brier"]["mean"] == pytest.approx(0.25)
    assert math.isnan(fold_summary([{"a": 1.0}])["a"]["std"])
    with pytest.raises(ValueError, match="empty"):
        fold_summary([])


# --------------------------------------------------------------------------------- normaliser


def test_normaliser_robust_scaling_hand_checked() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame(
        {
            "z": rng.standard_t(3, 1000),
            "atr_A": rng.lognormal(0, 1, 1000),
            "half_life": np.r_[np.full(700, 240.0), rng.uniform(1, 240, 300)],  # MAD = 0
        }
    )
    norm = Normaliser.fit(train)
    for j, c in enumerate(train.columns):
        col = train[c]
        lo, hi = col.quantile(0.01), col.quantile(0.99)
        w = col.clip(lo, hi)
        med = w.median()
        mad = (w - med).abs().median()
        scale = 1.4826 * mad if mad > 0 else w.std(ddof=0)
        assert norm.lower[j] == pytest.approx(lo)
        assert norm.upper[j] == pytest.approx(hi)
        assert norm.median[j] == pytest.approx(med)
        assert norm.scale[j] == pytest.approx(scale)
    test = pd.DataFrame({"atr_A": [1e6, 0.5], "z": [40.0, -0.3], "half_life": [240.0, 10.0]})
    out = norm.transform(test)
    assert list(out.columns) == ["z", "atr_A", "half_life"]
    # winsorised to the training 99% quantile, then scaled with training statistics
    assert out.loc[0, "atr_A"] == pytest.approx((norm.upper[1] - norm.median[1]) / norm.scale[1])
    assert out.loc[1, "z"] == pytest.approx((-0.3 - norm.median[0]) / norm.scale[0])
    assert abs(out.loc[0, "z"]) <= 5.0  # clipped feature
    assert norm.clip_features == ("z",)
    assert out.loc[0, "half_life"] == pytest.approx(0.0)


def test_normaliser_clip_and_roundtrip() -> None:
    train = pd.DataFrame({"z": np.r_[np.zeros(98), 1.0, -1.0], "slope_z": np.linspace(-1, 1, 100)})
    norm = Normaliser.fit(train, NormaliserParams(winsor_quantiles=(0.0, 1.0)))
    # z: median 0, MAD 0 -> std fallback sqrt(2/100); a value of 1 becomes 7.07 -> clipped to 5
    assert norm.scale[0] == pytest.approx(np.sqrt(0.02))
    out = norm.transform(pd.DataFrame({"z": [1.0, np.nan], "slope_z": [0.0, 1.0]}))
    assert out.loc[0, "z"] == 5.0
    assert np.isnan(out.loc[1, "z"])
    d = json.loads(json.dumps(norm.to_dict()))
    back = Normaliser.from_dict(d)
    probe = pd.DataFrame({"z": [0.3, -4.0], "slope_z": [0.5, 9.0]})
    pd.testing.assert_frame_equal(back.transform(probe), norm.transform(probe))
    with pytest.raises(KeyError, match="slope_z"):
        norm.transform(pd.DataFrame({"z": [1.0]}))
    with pytest.raises(ValueError, match="finite training value"):
        Normaliser.fit(pd.DataFrame({"z": [np.nan, np.nan]}))
    with pytest.raises(ValueError, match="unknown normalisation"):
        Normaliser.from_dict({**d, "method": "zscore"})


# ---------------------------------------------------------------------------------- training


def synthetic(n: int, seed: int, signal: float = 1.5) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "z": rng.normal(0, 1.5, n),
            "delta_z": rng.normal(0, 0.2, n),
            "vol_ratio_spread": rng.lognormal(0, 0.3, n),
            "half_life": rng.uniform(1, 240, n),
            "rho_rolling": rng.uniform(-1, 1, n),
        }
    )
    logit = signal * (X["z"] / 1.5) - signal * (X["vol_ratio_spread"] - 1) - 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def positions(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n, dtype=np.int64) + 400  # samples start after a feature warm-up
    return t, t + 48


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedModel, pd.DataFrame, np.ndarray]:
    X, y = synthetic(3000, 1)
    t, te = positions(3000)
    return train_classifier(X, y, None, t, te, FAST, CV), X, y


def test_training_is_deterministic(trained: tuple[TrainedModel, pd.DataFrame, np.ndarray]) -> None:
    model, X, y = trained
    t, te = positions(len(y))
    again = train_classifier(X, y, None, t, te, FAST, CV)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(again.oof_raw, model.oof_raw)
    assert again.best_iterations == model.best_iterations
    other_seed = train_classifier(X, y, None, t, te, replace(FAST, seed=7), CV)
    assert not np.array_equal(other_seed.predict_raw(X), model.predict_raw(X))


def test_model_learns_and_records_cv(
    trained: tuple[TrainedModel, pd.DataFrame, np.ndarray],
) -> None:
    model, _, y = trained
    assert model.oof_fold.tolist() == np.repeat(np.arange(5), 600).tolist()
    assert np.isfinite(model.oof_raw).all()
    assert model.num_boost_round == max(1, round(float(np.median(model.best_iterations))))
    assert model.booster.current_iteration() == model.num_boost_round
    summary = fold_summary(model.fold_metrics)
    assert summary["auc"]["mean"] > 0.7
    for k, fm in enumerate(model.fold_metrics):
        in_k = model.oof_fold == k
        # cross-fitted calibration: fold k is calibrated on the other folds only
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
        iso.fit(model.oof_raw[~in_k], y[~in_k])
        np.testing.assert_allclose(model.oof_calibrated[in_k], iso.predict(model.oof_raw[in_k]))
        assert fm["auc"] == pytest.approx(roc_auc_score(y[in_k], model.oof_calibrated[in_k]))
        assert fm["best_iteration"] == model.best_iterations[k]
        assert fm["n_valid"] > 0
        assert fm["n_fit"] > 0


def test_early_stopping_triggers_on_noise() -> None:
    rng = np.random.default_rng(5)
    X, _ = synthetic(2000, 5)
    y = rng.integers(0, 2, 2000)  # independent of X
    t, te = positions(2000)
    params = LGBMParams(num_boost_round=1000, num_threads=1)
    model = train_classifier(X, y, None, t, te, params, CV)
    for best, stopped in zip(model.best_iterations, model.stopped_iterations, strict=True):
        assert stopped == best + params.early_stopping_rounds
        assert stopped < params.num_boost_round


def test_calibration_is_monotone_and_matches_sklearn(
    trained: tuple[TrainedModel, pd.DataFrame, np.ndarray],
) -> None:
    model, X, y = trained
    raw = model.predict_raw(X)
    cal = model.predict_proba(X)
    order = np.argsort(raw, kind="mergesort")
    assert np.all(np.diff(cal[order]) >= 0)
    assert cal.min() >= 0
    assert cal.max() <= 1
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(model.oof_raw, y)
    grid = np.r_[-1.0, np.linspace(0, 1, 501), 2.0]
    np.testing.assert_allclose(model.calibrator.predict(grid), iso.predict(grid), atol=1e-12)
    np.testing.assert_allclose(cal, iso.predict(raw), atol=1e-12)


def test_save_load_roundtrip(
    trained: tuple[TrainedModel, pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    model, X, _ = trained
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.txt").read_text().startswith("tree")
    cal = json.loads((tmp_path / "m" / "calibrator.json").read_text())
    assert cal["method"] == "isotonic"
    assert len(cal["x_thresholds"]) == len(cal["y_thresholds"])
    back = TrainedModel.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(back.predict_raw(X), model.predict_raw(X))
    np.testing.assert_array_equal(back.oof_calibrated, model.oof_calibrated)
    assert back.feature_names == model.feature_names
    assert back.best_iterations == model.best_iterations
    assert back.params == model.params
    assert fold_summary(back.fold_metrics) == fold_summary(model.fold_metrics)
    # columns are matched by name, not position
    np.testing.assert_array_equal(back.predict_proba(X[X.columns[::-1]]), model.predict_proba(X))


def test_no_lookahead_in_training_and_prediction(
    trained: tuple[TrainedModel, pd.DataFrame, np.ndarray],
) -> None:
    X, y = synthetic(3000, 1)
    t, te = positions(3000)
    T = 400 + 2000  # bar position of the cut
    rng = np.random.default_rng(9)
    X2 = X.copy()
    after = t >= T
    X2.loc[after, :] = rng.normal(0, 10, (int(after.sum()), X.shape[1]))
    y2 = y.copy()
    y2[after] = 1 - y2[after]
    keep = te < T  # only labels known before T
    m1 = train_classifier(X[keep], y[keep], None, t[keep], te[keep], FAST, CV)
    m2 = train_classifier(X2[keep], y2[keep], None, t[keep], te[keep], FAST, CV)
    np.testing.assert_array_equal(m1.predict_proba(X[~after]), m2.predict_proba(X2[~after]))
    # prediction is row-wise: rows after T do not move the predictions before T
    np.testing.assert_array_equal(m1.predict_proba(X)[~after], m1.predict_proba(X2)[~after])
    model, _, _ = trained
    np.testing.assert_array_equal(model.predict_proba(X)[~after], model.predict_proba(X2)[~after])


def test_given_weights_and_errors() -> None:
    X, y = synthetic(1500, 2)
    t, te = positions(1500)
    cv = PurgedKFold(n_splits=3, min_block_len_bars=240)
    w = np.where(y == 1, 2.0, 1.0)
    m = train_classifier(X, y, w, t, te, FAST, cv)
    assert len(m.fold_metrics) == 3
    with pytest.raises(ValueError, match="positive"):
        train_classifier(X, y, -w, t, te, FAST, cv)
    with pytest.raises(ValueError, match="only 0 and 1"):
        train_classifier(X, y + 1, None, t, te, FAST, cv)
    with pytest.raises(ValueError, match="single class"):
        train_classifier(X, np.zeros(1500, dtype=int), None, t, te, FAST, cv)
    with pytest.raises(ValueError, match="min_block_len_bars"):
        train_classifier(X, y, None, t, te, FAST, PurgedKFold(n_splits=7))
    with pytest.raises(ValueError, match="valid_fraction"):
        LGBMParams(valid_fraction=1.0)


def test_isotonic_calibrator_serialisation() -> None:
    rng = np.random.default_rng(4)
    raw = rng.random(300)
    y = (rng.random(300) < raw).astype(int)
    cal = IsotonicCalibrator.fit(raw, y)
    back = IsotonicCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    grid = np.linspace(-0.5, 1.5, 401)
    np.testing.assert_array_equal(back.predict(grid), cal.predict(grid))
    with pytest.raises(ValueError, match="unknown calibration"):
        IsotonicCalibrator.from_dict({"method": "platt"})


def test_fold_with_single_class_fit_set_is_skipped_not_fatal() -> None:
    """AI1 has a few hundred events: a fold whose fit set holds one class is recorded as skipped,
    its samples keep NaN out-of-fold scores, and the other folds still train and calibrate."""
    X, y = synthetic(1500, 2)
    t, te = positions(1500)
    cv = PurgedKFold(n_splits=3, min_block_len_bars=240)
    rel = t - t.min()
    (_, hi0), _, _ = cv.blocks(int(rel.max()) + 1)
    in_b0 = rel <= hi0
    late = rel >= np.quantile(rel, 0.9)  # inside fold 0's validation tail
    # Positives only in block 0 and the last 10%: fold 0's fit set (block 1 + early block 2) is
    # all zeros, so fold 0 is skipped; folds 1 and 2 fit on block 0.
    y = np.where(in_b0 | late, y, 0)
    m = train_classifier(X, y, None, t, te, FAST, cv)
    assert m.fold_metrics[0]["skipped"] == 1.0
    assert "skipped" not in m.fold_metrics[1]
    assert "skipped" not in m.fold_metrics[2]
    assert np.isnan(m.oof_raw[in_b0]).all()
    assert np.isfinite(m.oof_raw[~in_b0]).all()
    assert np.isfinite(m.predict_proba(X)).all()

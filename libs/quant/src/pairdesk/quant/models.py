"""LightGBM classifiers for AI1/AI2 with purged CV, early stopping and isotonic calibration.

Spec 004 §時系列CV・評価KPI 仕様 v1 (過学習抑制: early stopping 50, time-ordered train/valid split
inside each fold, fixed seed; isotonic calibration fitted on validation folds) and §特徴量仕様 v1
(正規化: robust median/MAD standardisation fitted on the training period, 1%/99% winsorisation,
main features clipped to [-5, 5], normalisation parameters saved with the model).

Training procedure of :func:`train_classifier`:

1. For each fold of a :class:`~pairdesk.quant.cv.PurgedKFold` (already purged against the test
   block), the training samples are sorted by ``t_pos``; the last ``valid_fraction`` of them form
   the validation tail, and the remaining *fit* samples whose label interval reaches
   ``[valid_start - purge_bars, ...)`` are dropped. A :class:`Normaliser` is fitted on the fit
   rows, and ``lgb.train`` runs with early stopping on the validation tail.
2. The fold booster at its best iteration predicts the test block: out-of-fold (OOF) raw scores.
3. An isotonic calibrator is fitted on all OOF raw scores (unweighted: it targets observed
   frequencies, undoing the class weighting). Honest per-fold metrics use *cross-fitted*
   calibration: fold ``k`` is calibrated by an isotonic map fitted on the other folds' OOF scores.
4. The final booster is fitted on all samples (normaliser refitted on all rows) with
   ``num_boost_round = round(median(best iterations))`` and no early stopping.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from pairdesk.quant.classification import ai1_metrics
from pairdesk.quant.cv import PurgedKFold
from pairdesk.quant.labels import class_weights
from pairdesk.quant.typing import FloatArray, IntArray
from sklearn.isotonic import IsotonicRegression

__all__ = [
    "IsotonicCalibrator",
    "LGBMParams",
    "Normaliser",
    "NormaliserParams",
    "TrainedModel",
    "train_classifier",
]

MetricsFn = Callable[[FloatArray, FloatArray], Mapping[str, float]]

_MAD_TO_SIGMA = 1.4826


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LGBMParams:
    """LightGBM and training parameters (config/retrain_policy.yaml ``lightgbm``).

    Parameters
    ----------
    seed : int
        Seed for LightGBM's bagging / feature-fraction / data sampling. Default 42.
    early_stopping_rounds : int
        Rounds without validation-logloss improvement before stopping (spec 50).
    num_boost_round : int
        Maximum boosting rounds per fold. Default 1000.
    learning_rate, num_leaves, min_data_in_leaf, feature_fraction, bagging_fraction,
    bagging_freq, lambda_l2 : LightGBM parameters
        Defaults 0.03, 15, 50, 0.8, 0.8, 1, 1.0.
    num_threads : int
        OpenMP threads; default 2. ``deterministic=True`` makes a fit reproducible for fixed
        inputs and thread count.
    valid_fraction : float
        Share of each fold's training samples (the latest in time) used for early stopping.
        Default 0.2.
    class_weight_max_ratio : float
        Clip for the inverse-frequency class weights used when no weights are given
        (config/core_policy.yaml ``class_weight_max_ratio`` = 5).
    """

    seed: int = 42
    early_stopping_rounds: int = 50
    num_boost_round: int = 1000
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    num_threads: int = 2
    valid_fraction: float = 0.2
    class_weight_max_ratio: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.num_boost_round < 1 or self.early_stopping_rounds < 1:
            raise ValueError("num_boost_round and early_stopping_rounds must be >= 1")

    def booster_params(self) -> dict[str, Any]:
        """Parameter dict for ``lightgbm.train`` (objective binary, deterministic, seeded)."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class NormaliserParams:
    """Feature normalisation settings (spec 004 §特徴量仕様 v1 正規化・クリッピング方針).

    Parameters
    ----------
    winsor_quantiles : (float, float)
        Training quantiles at which raw values are winsorised. Default (0.01, 0.99).
    clip_features : tuple of str
        Columns clipped to ``[-clip, clip]`` after standardisation. Default z, delta_z, z_ema,
        slope_spread, slope_z.
    clip : float
        Clip bound. Default 5.0.
    """

    winsor_quantiles: tuple[float, float] = (0.01, 0.99)
    clip_features: tuple[str, ...] = ("z", "delta_z", "z_ema", "slope_spread", "slope_z")
    clip: float = 5.0

    def __post_init__(self) -> None:
        lo, hi = self.winsor_quantiles
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"need 0 <= low < high <= 1, got {self.winsor_quantiles}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")


# --------------------------------------------------------------------------------------------
# Normaliser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Normaliser:
    """Robust standardisation fitted on training rows: winsorise, then ``(x - median) / scale``.

    Attributes
    ----------
    columns : tuple of str
        Feature names, in model input order.
    lower, upper : numpy.ndarray, shape (n_features,)
        Winsorisation bounds (training quantiles).
    median : numpy.ndarray, shape (n_features,)
        Median of the winsorised training values.
    scale : numpy.ndarray, shape (n_features,)
        ``1.4826 * MAD`` of the winsorised training values (a standard deviation under
        normality); where that is 0 the population standard deviation, and 1 if that is 0 too.
    clip_features : tuple of str
        Columns clipped to ``[-clip, clip]`` after scaling.
    clip : float
        Clip bound.
    winsor_quantiles : (float, float)
        Quantiles used for ``lower`` / ``upper`` (metadata).

    Notes
    -----
    NaN inputs stay NaN (LightGBM routes them). Quantiles use linear interpolation
    (``numpy.nanquantile``).
    """

    columns: tuple[str, ...]
    lower: FloatArray
    upper: FloatArray
    median: FloatArray
    scale: FloatArray
    clip_features: tuple[str, ...]
    clip: float
    winsor_quantiles: tuple[float, float]

    @classmethod
    def fit(cls, X: pd.DataFrame, params: NormaliserParams | None = None) -> Normaliser:
        """Fit on training rows only.

        Parameters
        ----------
        X : pandas.DataFrame, shape (n_rows, n_features)
            Training features (NaN allowed).
        params : NormaliserParams, optional
            Defaults to ``NormaliserParams()``.

        Returns
        -------
        Normaliser

        Raises
        ------
        ValueError
            If ``X`` is empty or a column has no finite value.
        """
        p = params if params is not None else NormaliserParams()
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError("cannot fit a Normaliser on an empty frame")
        arr = X.to_numpy(dtype=np.float64)
        arr = np.where(np.isfinite(arr), arr, np.nan)
        bad = [
            str(c) for c, ok in zip(X.columns, np.isfinite(arr).any(axis=0), strict=True) if not ok
        ]
        if bad:
            raise ValueError(f"columns without a finite training value: {bad}")
        lo_q, hi_q = p.winsor_quantiles
        lower = np.nanquantile(arr, lo_q, axis=0)
        upper = np.nanquantile(arr, hi_q, axis=0)
        w = np.clip(arr, lower, upper)
        median = np.nanmedian(w, axis=0)
        scale = _MAD_TO_SIGMA * np.nanmedian(np.abs(w - median), axis=0)
        std = np.nanstd(w, axis=0)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
        return cls(
            columns=tuple(str(c) for c in X.columns),
            lower=np.asarray(lower, dtype=np.float64),
            upper=np.asarray(upper, dtype=np.float64),
            median=np.asarray(median, dtype=np.float64),
            scale=np.asarray(scale, dtype=np.float64),
            clip_features=tuple(c for c in p.clip_features if c in X.columns),
            clip=float(p.clip),
            winsor_quantiles=(float(lo_q), float(hi_q)),
        )

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Apply the fitted normalisation row by row.

        Parameters
        ----------
        X : pandas.DataFrame, shape (n_rows, >= n_features)
            Must contain :attr:`columns` (extra columns are ignored; output uses
            :attr:`columns` order).

        Returns
        -------
        pandas.DataFrame, shape (n_rows, n_features)
            Same index. Each output row depends only on the same input row.

        Raises
        ------
        KeyError
            If a fitted column is missing.
        """
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise KeyError(f"missing feature columns: {missing}")
        arr = X.loc[:, list(self.columns)].to_numpy(dtype=np.float64)
        arr = np.where(np.isinf(arr), np.nan, arr)
        out = (np.clip(arr, self.lower, self.upper) - self.median) / self.scale
        for c in self.clip_features:
            j = self.columns.index(c)
            out[:, j] = np.clip(out[:, j], -self.clip, self.clip)
        return pd.DataFrame(out, index=X.index, columns=list(self.columns))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (the normalisation meta-information the spec asks to save)."""
        return {
            "method": "robust_median_mad",
            "columns": list(self.columns),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "median": self.median.tolist(),
            "scale": self.scale.tolist(),
            "clip_features": list(self.clip_features),
            "clip": self.clip,
            "winsor_quantiles": list(self.winsor_quantiles),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normaliser:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the method is not ``robust_median_mad`` or array lengths disagree.
        """
        if d.get("method") != "robust_median_mad":
            raise ValueError(f"unknown normalisation method {d.get('method')!r}")
        cols = tuple(str(c) for c in d["columns"])
        arrays = {
            k: np.asarray(d[k], dtype=np.float64) for k in ("lower", "upper", "median", "scale")
        }
        if any(a.shape != (len(cols),) for a in arrays.values()):
            raise ValueError("normaliser arrays do not match the number of columns")
        q = d["winsor_quantiles"]
        return cls(
            columns=cols,
            clip_features=tuple(str(c) for c in d["clip_features"]),
            clip=float(d["clip"]),
            winsor_quantiles=(float(q[0]), float(q[1])),
            **arrays,
        )


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IsotonicCalibrator:
    """Piecewise-linear isotonic map fitted with ``sklearn.isotonic.IsotonicRegression``.

    Attributes
    ----------
    x_thresholds, y_thresholds : numpy.ndarray, shape (k,)
        ``X_thresholds_`` / ``y_thresholds_`` of the fitted regression (x strictly increasing,
        y non-decreasing in [0, 1]).

    Notes
    -----
    :meth:`predict` is linear interpolation between thresholds with constant extrapolation,
    identical to ``IsotonicRegression(out_of_bounds="clip").predict``.
    """

    x_thresholds: FloatArray
    y_thresholds: FloatArray

    @classmethod
    def fit(cls, raw: npt.ArrayLike, y: npt.ArrayLike) -> IsotonicCalibrator:
        """Fit an increasing isotonic regression of ``y`` (0/1) on raw scores (unweighted).

        Raises
        ------
        ValueError
            If the inputs are empty or their lengths differ.
        """
        r = np.asarray(raw, dtype=np.float64)
        t = np.asarray(y, dtype=np.float64)
        if r.ndim != 1 or r.shape != t.shape or r.size == 0:
            raise ValueError("raw and y must be non-empty 1-D arrays of the same length")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(r, t)
        return cls(
            x_thresholds=np.asarray(iso.X_thresholds_, dtype=np.float64),
            y_thresholds=np.asarray(iso.y_thresholds_, dtype=np.float64),
        )

    def predict(self, raw: npt.ArrayLike) -> FloatArray:
        """Calibrated probabilities, shape of ``raw``; non-decreasing in ``raw``."""
        return np.asarray(
            np.interp(np.asarray(raw, dtype=np.float64), self.x_thresholds, self.y_thresholds),
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready thresholds."""
        return {
            "method": "isotonic",
            "out_of_bounds": "clip",
            "x_thresholds": self.x_thresholds.tolist(),
            "y_thresholds": self.y_thresholds.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IsotonicCalibrator:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If the method is not isotonic or the arrays disagree.
        """
        if d.get("method") != "isotonic":
            raise ValueError(f"unknown calibration method {d.get('method')!r}")
        x = np.asarray(d["x_thresholds"], dtype=np.float64)
        yv = np.asarray(d["y_thresholds"], dtype=np.float64)
        if x.ndim != 1 or x.shape != yv.shape or x.size == 0:
            raise ValueError("calibrator thresholds must be non-empty arrays of equal length")
        return cls(x_thresholds=x, y_thresholds=yv)


# --------------------------------------------------------------------------------------------
# Trained model
# --------------------------------------------------------------------------------------------


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def _none_to_nan(d: Mapping[str, Any]) -> dict[str, float]:
    return {k: (math.nan if v is None else float(v)) for k, v in d.items()}


@dataclass(eq=False)
class TrainedModel:
    """A fitted classifier: final booster, calibrator, normaliser and the CV record.

    Attributes
    ----------
    booster : lightgbm.Booster
        Final booster trained on all samples with ``num_boost_round`` rounds.
    calibrator : IsotonicCalibrator
        Fitted on all out-of-fold raw scores.
    normaliser : Normaliser
        Fitted on all training rows; applied by :meth:`predict_proba`.
    feature_names : tuple of str
        Model input columns, in order.
    best_iterations : tuple of int
        Early-stopping best iteration of each fold.
    stopped_iterations : tuple of int
        Iterations actually run in each fold (``best + early_stopping_rounds`` when early
        stopping triggered).
    num_boost_round : int
        Rounds of the final booster (rounded median of ``best_iterations``).
    fold_metrics : list of dict
        Per-fold metrics on cross-fitted calibrated OOF predictions, plus ``best_iteration``,
        ``n_fit`` and ``n_valid``.
    oof_raw, oof_calibrated : numpy.ndarray, shape (n_samples,)
        Out-of-fold raw scores and their cross-fitted calibrated probabilities.
    oof_fold : numpy.ndarray of int, shape (n_samples,)
        Fold of each sample.
    params : LGBMParams
        Training parameters.
    """

    booster: lgb.Booster
    calibrator: IsotonicCalibrator
    normaliser: Normaliser
    feature_names: tuple[str, ...]
    best_iterations: tuple[int, ...]
    stopped_iterations: tuple[int, ...]
    num_boost_round: int
    fold_metrics: list[dict[str, float]]
    oof_raw: FloatArray
    oof_calibrated: FloatArray
    oof_fold: IntArray
    params: LGBMParams = field(default_factory=LGBMParams)

    def predict_raw(self, X: pd.DataFrame) -> FloatArray:
        """Uncalibrated booster probabilities, shape (n_rows,); row-wise (no batch effects).

        Raises
        ------
        KeyError
            If a feature column is missing.
        """
        Xn = self.normaliser.transform(X).loc[:, list(self.feature_names)]
        return np.asarray(self.booster.predict(Xn.to_numpy(dtype=np.float64)), dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> FloatArray:
        """Calibrated probability of class 1 for each row of ``X``, shape (n_rows,), in [0, 1].

        Raises
        ------
        KeyError
            If a feature column is missing.
        """
        return self.calibrator.predict(self.predict_raw(X))

    def save(self, directory: str | Path) -> None:
        """Write ``model.txt`` (native LightGBM text), ``calibrator.json``, ``normaliser.json``,
        ``training.json`` (feature names, iterations, fold metrics, params; NaN as null) and
        ``oof.npz`` into ``directory`` (created if needed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(d / "model.txt"))
        (d / "calibrator.json").write_text(json.dumps(self.calibrator.to_dict()))
        (d / "normaliser.json").write_text(json.dumps(self.normaliser.to_dict()))
        meta = {
            "feature_names": list(self.feature_names),
            "best_iterations": list(self.best_iterations),
            "stopped_iterations": list(self.stopped_iterations),
            "num_boost_round": self.num_boost_round,
            "fold_metrics": self.fold_metrics,
            "params": asdict(self.params),
        }
        (d / "training.json").write_text(json.dumps(_nan_to_none(meta), indent=2, allow_nan=False))
        np.savez(
            d / "oof.npz",
            oof_raw=self.oof_raw,
            oof_calibrated=self.oof_calibrated,
            oof_fold=self.oof_fold,
        )

    @classmethod
    def load(cls, directory: str | Path) -> TrainedModel:
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If a file is missing.
        ValueError
            If the saved feature names disagree with the booster or normaliser.
        """
        d = Path(directory)
        booster = lgb.Booster(model_file=str(d / "model.txt"))
        calibrator = IsotonicCalibrator.from_dict(json.loads((d / "calibrator.json").read_text()))
        normaliser = Normaliser.from_dict(json.loads((d / "normaliser.json").read_text()))
        meta = json.loads((d / "training.json").read_text())
        names = tuple(str(c) for c in meta["feature_names"])
        if tuple(booster.feature_name()) != names or normaliser.columns != names:
            raise ValueError("feature names of model.txt / normaliser.json / training.json differ")
        with np.load(d / "oof.npz", allow_pickle=False) as z:
            oof_raw = np.asarray(z["oof_raw"], dtype=np.float64)
            oof_cal = np.asarray(z["oof_calibrated"], dtype=np.float64)
            oof_fold = np.asarray(z["oof_fold"], dtype=np.int64)
        p = dict(meta["params"])
        return cls(
            booster=booster,
            calibrator=calibrator,
            normaliser=normaliser,
            feature_names=names,
            best_iterations=tuple(int(v) for v in meta["best_iterations"]),
            stopped_iterations=tuple(int(v) for v in meta["stopped_iterations"]),
            num_boost_round=int(meta["num_boost_round"]),
            fold_metrics=[_none_to_nan(m) for m in meta["fold_metrics"]],
            oof_raw=oof_raw,
            oof_calibrated=oof_cal,
            oof_fold=oof_fold,
            params=LGBMParams(**p),
        )


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


class _IterationCounter:
    """LightGBM callback recording how many iterations ran (before early stopping's check)."""

    order = 10  # early_stopping has order 30

    def __init__(self) -> None:
        self.iterations = 0

    def __call__(self, env: Any) -> None:
        self.iterations = int(env.iteration) + 1


def _fit_booster(
    Xn: FloatArray,
    y: FloatArray,
    w: FloatArray,
    names: Sequence[str],
    params: LGBMParams,
    num_boost_round: int,
    valid: tuple[FloatArray, FloatArray, FloatArray] | None,
) -> tuple[lgb.Booster, int]:
    """Train one booster; returns it (truncated to its best iteration when validating) and the
    number of iterations actually run."""
    bp = params.booster_params()
    dtrain = lgb.Dataset(
        Xn, label=y, weight=w, feature_name=list(names), free_raw_data=False, params=bp
    )
    if valid is None:
        booster = lgb.train(bp, dtrain, num_boost_round=num_boost_round)
        return booster, booster.current_iteration()
    xv, yv, wv = valid
    dvalid = lgb.Dataset(xv, label=yv, weight=wv, reference=dtrain, free_raw_data=False)
    counter = _IterationCounter()
    booster = lgb.train(
        bp,
        dtrain,
        num_boost_round=num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[counter, lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    return booster, counter.iterations


def train_classifier(
    X: pd.DataFrame,
    y: npt.ArrayLike,
    weights: npt.ArrayLike | None,
    t_pos: npt.ArrayLike,
    t_end_pos: npt.ArrayLike,
    params: LGBMParams,
    cv: PurgedKFold,
    *,
    metrics_fn: MetricsFn = ai1_metrics,
    normaliser_params: NormaliserParams | None = None,
) -> TrainedModel:
    """Train a calibrated binary LightGBM classifier with purged K-fold CV.

    Parameters
    ----------
    X : pandas.DataFrame, shape (n_samples, n_features)
        Raw (un-normalised) features of the labelled samples, one row per sample.
    y : array_like of {0, 1}, shape (n_samples,)
        Labels (AI1 ``y`` or AI2 ``y``).
    weights : array_like of float, shape (n_samples,), or None
        Sample weights. None: inverse-frequency class weights (clipped at
        ``params.class_weight_max_ratio``) computed on each fold's fit rows (and separately on
        its validation rows for the early-stopping loss) and on all rows for the final model, so
        no test-fold frequency leaks into training.
    t_pos, t_end_pos : array_like of int, shape (n_samples,)
        Bar positions of each sample and of its label end (purging).
    params : LGBMParams
        LightGBM / training parameters.
    cv : PurgedKFold
        Fold definition. Blocks are laid over ``[min t_pos, max t_pos]``.
    metrics_fn : callable, default :func:`~pairdesk.quant.classification.ai1_metrics`
        ``(y_true, p_calibrated) -> mapping`` evaluated on each non-empty test fold.
    normaliser_params : NormaliserParams, optional
        Defaults to ``NormaliserParams()``.

    Returns
    -------
    TrainedModel
        See the module docstring for the procedure.

    Raises
    ------
    ValueError
        On mismatched lengths, labels other than 0/1, non-positive weights, blocks shorter than
        ``cv.min_block_len_bars``, or a fold whose fit set is empty / single-class or whose
        validation tail is empty.

    Notes
    -----
    Source: spec 004 §時系列CV・評価KPI 仕様 v1 and config/retrain_policy.yaml. Determinism:
    ``deterministic=True``, ``force_row_wise=True`` and a fixed ``seed`` give bit-identical
    models for identical inputs.
    """
    yv = np.asarray(y)
    n = len(X)
    if yv.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {yv.shape}")
    if not np.isin(yv, [0, 1]).all():
        raise ValueError("y must contain only 0 and 1")
    yf = yv.astype(np.float64)
    tp = np.asarray(t_pos, dtype=np.int64)
    te = np.asarray(t_end_pos, dtype=np.int64)
    if tp.shape != (n,) or te.shape != (n,):
        raise ValueError("t_pos and t_end_pos must have one entry per sample")
    w_given: FloatArray | None = None
    if weights is not None:
        w_given = np.asarray(weights, dtype=np.float64)
        if w_given.shape != (n,) or not np.all(np.isfinite(w_given) & (w_given > 0)):
            raise ValueError("weights must be finite, positive and one per sample")
    names = tuple(str(c) for c in X.columns)
    npar = normaliser_params if normaliser_params is not None else NormaliserParams()

    def _weights(idx: IntArray) -> FloatArray:
        if w_given is not None:
            return w_given[idx]
        return class_weights(yv[idx], params.class_weight_max_ratio)

    t0 = int(tp.min())
    span = int(tp.max()) - t0 + 1
    oof_raw = np.full(n, np.nan)
    oof_fold = np.full(n, -1, dtype=np.int64)
    best: list[int] = []
    stopped: list[int] = []
    fold_info: list[dict[str, float]] = []
    for k, (tr, ts) in enumerate(cv.split(tp - t0, te - t0, span)):
        tr_sorted = tr[np.argsort(tp[tr], kind="mergesort")]
        n_val = math.ceil(params.valid_fraction * tr_sorted.size)
        val = tr_sorted[tr_sorted.size - n_val :]
        fit = tr_sorted[: tr_sorted.size - n_val]
        if val.size:
            fit = fit[te[fit] < int(tp[val].min()) - cv.purge_bars]
        if ts.size:
            oof_fold[ts] = k
        if val.size == 0 or fit.size == 0 or np.unique(yv[fit]).size < 2:
            # Too few events for this fold (common for AI1: a few hundred events in total).
            # The fold is recorded as skipped; its samples keep NaN out-of-fold scores.
            fold_info.append({"skipped": 1.0, "n_fit": float(fit.size), "n_valid": float(val.size)})
            continue
        norm = Normaliser.fit(X.iloc[fit], npar)
        x_fit = norm.transform(X.iloc[fit]).to_numpy()
        x_val = norm.transform(X.iloc[val]).to_numpy()
        booster, ran = _fit_booster(
            x_fit,
            yf[fit],
            _weights(fit),
            names,
            params,
            params.num_boost_round,
            (x_val, yf[val], _weights(val)),
        )
        it = (
            int(booster.best_iteration)
            if booster.best_iteration > 0
            else booster.current_iteration()
        )
        best.append(it)
        stopped.append(ran)
        if ts.size:
            x_ts = norm.transform(X.iloc[ts]).to_numpy()
            oof_raw[ts] = booster.predict(x_ts, num_iteration=it)
        fold_info.append(
            {"best_iteration": float(it), "n_fit": float(fit.size), "n_valid": float(val.size)}
        )
    if np.any(oof_fold < 0):
        raise ValueError("some samples were not assigned to a test fold")
    scored = np.isfinite(oof_raw)
    if not best or np.unique(yv[scored]).size < 2:
        raise ValueError(
            f"no CV fold could be fitted: single class or too few samples in every fold "
            f"({n} samples, {int(yv.sum())} positive)"
        )

    calibrator = IsotonicCalibrator.fit(oof_raw[scored], yf[scored])
    oof_cal = np.full(n, np.nan)
    fold_metrics: list[dict[str, float]] = []
    for k, info in enumerate(fold_info):
        in_k = (oof_fold == k) & scored
        metrics: dict[str, float] = {}
        if in_k.any():
            rest = scored & ~in_k
            if np.unique(yv[rest]).size == 2:
                oof_cal[in_k] = IsotonicCalibrator.fit(oof_raw[rest], yf[rest]).predict(
                    oof_raw[in_k]
                )
            else:
                oof_cal[in_k] = calibrator.predict(oof_raw[in_k])
            metrics = {k2: float(v) for k2, v in metrics_fn(yf[in_k], oof_cal[in_k]).items()}
        else:
            metrics = {"n": float(np.sum(oof_fold == k))}
        metrics.update(info)
        fold_metrics.append(metrics)

    final_rounds = max(1, round(float(np.median(best))))
    normaliser = Normaliser.fit(X, npar)
    all_idx = np.arange(n, dtype=np.int64)
    final, _ = _fit_booster(
        normaliser.transform(X).to_numpy(),
        yf,
        _weights(all_idx),
        names,
        params,
        final_rounds,
        None,
    )
    return TrainedModel(
        booster=final,
        calibrator=calibrator,
        normaliser=normaliser,
        feature_names=names,
        best_iterations=tuple(best),
        stopped_iterations=tuple(stopped),
        num_boost_round=final_rounds,
        fold_metrics=fold_metrics,
        oof_raw=oof_raw,
        oof_calibrated=oof_cal,
        oof_fold=oof_fold,
        params=params,
    )

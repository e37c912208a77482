"""Classification metrics for AI1 and AI2 (spec 004 §時系列CV・評価KPI 仕様 v1 学習時の評価指標).

AI1: AUC, Brier, PR-AUC (average precision), calibration ECE. AI2: weighted F1 at a threshold,
PR-AUC and ``Recall@低リスク帯`` (:func:`recall_low_risk_band`). Implemented directly with NumPy so
the tests can check them against scikit-learn. A metric that is undefined for the given labels
(e.g. AUC with a single class) returns NaN instead of raising, so per-fold tables stay complete.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from pairdesk.quant.typing import FloatArray
from scipy.stats import rankdata

__all__ = [
    "ai1_metrics",
    "ai2_metrics",
    "auc",
    "brier",
    "ece",
    "fold_summary",
    "pr_auc",
    "recall_low_risk_band",
    "weighted_f1",
]



def _check(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape:
        raise ValueError("y_true and y_prob must be 1-D arrays of the same length")
    if y.size == 0:
        raise ValueError("empty input")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("y_true must contain only 0 and 1")
    if not np.isfinite(p).all():
        raise ValueError("y_prob must be finite")
    return y.astype(np.float64), p


def auc(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney form, ties count 1/2).

    Parameters
    ----------
    y_true : array_like of {0, 1}, shape (n,)
    y_prob : array_like of float, shape (n,)
        Scores (any monotone scale).

    Returns
    -------
    float
        ``(sum of mid-ranks of positives - n1 (n1 + 1) / 2) / (n1 n0)``; NaN if one class is
        absent.

    Raises
    ------
    ValueError
        On mismatched shapes, empty input, labels other than 0/1 or non-finite scores.
    """
    y, p = _check(y_true, y_prob)
    n1 = float(y.sum())
    n0 = float(y.size - n1)
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(p, method="average")
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def brier(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Brier score ``mean((p - y)^2)`` (probabilities in [0, 1]; lower is better).

    Raises
    ------
    ValueError
        As :func:`auc`.
    """
    y, p = _check(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def pr_auc(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """PR-AUC as average precision ``sum_k (R_k - R_{k-1}) P_k``.

    Thresholds are the distinct scores in decreasing order (tied scores enter together), as in
    scikit-learn's ``average_precision_score`` (no interpolation).

    Returns
    -------
    float
        Average precision; NaN if there is no positive.

    Raises
    ------
    ValueError
        As :func:`auc`.
    """
    y, p = _check(y_true, y_prob)
    n_pos = y.sum()
    if n_pos == 0:
        return math.nan
    order = np.argsort(-p, kind="mergesort")
    ps = p[order]
    ys = y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1.0 - ys)
    last_of_group = np.r_[np.flatnonzero(np.diff(ps) != 0), ps.size - 1]
    tp_k = tp[last_of_group]
    fp_k = fp[last_of_group]
    precision = tp_k / (tp_k + fp_k)
    recall = tp_k / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def ece(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins, weighted by bin count.

    Parameters
    ----------
    y_true : array_like of {0, 1}, shape (n,)
    y_prob : array_like of float in [0, 1], shape (n,)
    n_bins : int, default 10
        Bins ``[e_0, e_1), ..., [e_{B-1}, e_B]`` with edges ``e_k = k / B`` (as float64; the
        last bin includes 1).

    Returns
    -------
    float
        ``sum_b (n_b / n) * |mean(y in b) - mean(p in b)|`` over non-empty bins.

    Raises
    ------
    ValueError
        As :func:`auc`, if ``n_bins < 1`` or a probability lies outside [0, 1].
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = _check(y_true, y_prob)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("y_prob must lie in [0, 1]")
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    b = np.minimum(np.searchsorted(edges, p, side="right") - 1, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    sum_y = np.bincount(b, weights=y, minlength=n_bins)
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    nz = count > 0
    gap = np.abs(sum_y[nz] / count[nz] - sum_p[nz] / count[nz])
    return float(np.sum(count[nz] / y.size * gap))


def weighted_f1(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float = 0.5) -> float:
    """Support-weighted F1 over the classes {0, 1} with prediction ``1 if p >= threshold``.

    Parameters
    ----------
    y_true : array_like of {0, 1}, shape (n,)
    y_prob : array_like of float, shape (n,)
    threshold : float, default 0.5
        Decision threshold (θ); ``p >= θ`` predicts risk = 1.

    Returns
    -------
    float
        ``sum_c (n_c / n) F1_c`` with ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`` (0 when the
        denominator is 0), the spec's ``F1@risk=1（加重）``.

    Raises
    ------
    ValueError
        As :func:`auc`.
    """
    y, p = _check(y_true, y_prob)
    pred = (p >= threshold).astype(np.float64)
    total = 0.0
    for c in (0.0, 1.0):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        denom = 2 * tp + fp + fn
        f1 = 2 * tp / denom if denom > 0 else 0.0
        total += float(np.sum(y == c)) / y.size * f1
    return total


def recall_low_risk_band(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, theta: float) -> float:
    """``Recall@低リスク帯``: share of truly low-risk samples that the model puts in the low band.

    Definition (choice; the spec names the metric only): the low-risk band is ``p < theta`` (the
    band where the backtest allows entries, ``risk_score < θ2``). The metric is the recall of the
    class ``risk = 0`` under that rule, ``#{y = 0, p < θ} / #{y = 0}``, i.e. ``1 -`` the AI2 false
    stop rate at θ (spec ``Stop誤検出率(AI2)``). High values mean few safe bars are blocked.

    Parameters
    ----------
    y_true : array_like of {0, 1}, shape (n,)
        1 = risk.
    y_prob : array_like of float, shape (n,)
        Predicted risk probability.
    theta : float
        Band edge θ2 (config/core_policy.yaml ``theta2_initial``).

    Returns
    -------
    float
        Recall in [0, 1]; NaN if there is no sample with ``y = 0``.

    Raises
    ------
    ValueError
        As :func:`auc`.
    """
    y, p = _check(y_true, y_prob)
    neg = y == 0
    if not neg.any():
        return math.nan
    return float(np.mean(p[neg] < theta))


def ai1_metrics(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> dict[str, float]:
    """AI1 metric set: ``auc, brier, pr_auc, ece`` plus ``n`` and ``positive_rate``.

    Raises
    ------
    ValueError
        As :func:`ece`.
    """
    y, p = _check(y_true, y_prob)
    return {
        "auc": auc(y, p),
        "brier": brier(y, p),
        "pr_auc": pr_auc(y, p),
        "ece": ece(y, p),
        "n": float(y.size),
        "positive_rate": float(y.mean()),
    }


def ai2_metrics(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, theta: float, threshold: float = 0.5
) -> dict[str, float]:
    """AI2 metric set: ``weighted_f1`` (at ``threshold``), ``pr_auc``, ``recall_low_risk_band``
    (at ``theta``), ``auc``, ``brier``, ``n``, ``positive_rate``.

    Raises
    ------
    ValueError
        As :func:`auc`.
    """
    y, p = _check(y_true, y_prob)
    return {
        "weighted_f1": weighted_f1(y, p, threshold),
        "pr_auc": pr_auc(y, p),
        "recall_low_risk_band": recall_low_risk_band(y, p, theta),
        "auc": auc(y, p),
        "brier": brier(y, p),
        "n": float(y.size),
        "positive_rate": float(y.mean()),
    }


def fold_summary(
    fold_metrics: Sequence[Mapping[str, float]],
) -> dict[str, dict[str, float | list[float]]]:
    """Mean, spread and per-fold values of each metric across CV / walk-forward folds.

    Parameters
    ----------
    fold_metrics : sequence of mapping str -> float
        One mapping per fold (e.g. :func:`ai1_metrics` outputs). A metric missing from a fold
        counts as NaN there.

    Returns
    -------
    dict
        ``{metric: {"mean", "std", "min", "max", "per_fold"}}``. Statistics are over the folds
        where the metric is finite; ``std`` is the sample standard deviation (ddof = 1, NaN with
        fewer than two finite folds), reported next to the mean as the spec asks (Fold差の分散を
        KPIに併記). ``per_fold`` keeps fold order, NaN included.

    Raises
    ------
    ValueError
        If ``fold_metrics`` is empty.
    """
    if len(fold_metrics) == 0:
        raise ValueError("fold_metrics is empty")
    names: list[str] = []
    for fm in fold_metrics:
        for k in fm:
            if k not in names:
                names.append(k)
    out: dict[str, dict[str, float | list[float]]] = {}
    for name in names:
        vals = np.array([float(fm.get(name, math.nan)) for fm in fold_metrics], dtype=np.float64)
        fin = vals[np.isfinite(vals)]
        out[name] = {
            "mean": float(fin.mean()) if fin.size else math.nan,
            "std": float(fin.std(ddof=1)) if fin.size >= 2 else math.nan,
            "min": float(fin.min()) if fin.size else math.nan,
            "max": float(fin.max()) if fin.size else math.nan,
            "per_fold": [float(v) for v in vals],
        }
    return out

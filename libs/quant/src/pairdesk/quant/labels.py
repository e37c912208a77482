"""Training labels for AI1 (mean-reversion probability) and AI2 (risk), spec 004 §ラベリング仕様 v1.

Every label carries the bar position at which its outcome is known (``t_end_pos``) so that the
purged cross-validation of :mod:`pairdesk.quant.cv` can drop training samples whose outcome window
overlaps a test block. All windows are counted in **bars** (rows of the features frame); the index
is the UTC bar-open time ``ts_utc``.

Choices where the spec is ambiguous (see also docs/quant-contracts.md §Labels):

* **Event window.** An AI1 event started at bar ``s`` is *open* on the bars ``s < u <= t_end``,
  where ``t_end`` is the first bar after ``s`` with ``|z| <= z_exit`` or ``s + M``. While it is
  open, new events of the same direction are suppressed (spec: 再エントリー抑制 / 重複防止), so
  same-direction events never share outcome bars. Whether an event is open at bar ``u`` depends only
  on ``z`` up to ``u``, hence the event rule is causal and :func:`ai1_candidates` (inference) marks
  exactly the bars :func:`label_ai1` labels (plus the final events whose horizon is not observed).
* **Opposite crossing.** A bar with ``|z| >= z_entry`` on the side opposite to the open event
  closes that event for suppression purposes (its own label is unchanged: it is the outcome of the
  ``z`` path after its start) and may start a new event in the new direction.
* **Speed filter.** ``speed_t = mean(|Δz_u|, u = t-K+1 .. t)`` with ``Δz_u = z_u - z_{u-1}``: the
  average per-bar move over the K bar intervals leading into bar ``t`` (all known at the close of
  ``t``). A bar is excluded from starting an event when ``speed_t > theta_speed`` or when any of
  those K moves is undefined. A bar excluded by the speed filter does not open an event (it neither
  suppresses later bars nor gets a label); it still closes an opposite open event.
* **Eligibility.** A bar can start an event only when every numeric column of ``features`` is
  finite there (the model needs its complete input row), so training labels and inference
  candidates see the same bars.
* **End of data.** An event is labelled only when its full horizon ``t + M`` lies inside the data,
  whether or not the exit was reached earlier (dropping only the unresolved ones would bias the
  labels towards 1 near the end).
* **AI2 reference equity.** ``dd_recent`` is the drawdown of a unit-notional mean-reversion
  reference position ``-sign(z_t)`` held while ``|z_t| >= z_exit`` (decided at the close of ``t``,
  earning the spread return of bar ``t + 1``). Equity is additive (fraction of notional, no
  compounding); ``dd_recent_t = max(E_u, u in [t-W+1, t]) - E_t``. The spread return must be a
  tradable P&L (:func:`hedged_spread_return` from the leg closes); the change of the ``spread``
  column is not one (it carries the hedge-ratio drift), so the caller supplies the returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit
from pairdesk.quant.typing import BoolArray, FloatArray, IntArray

__all__ = [
    "LabelParams",
    "RiskLabelParams",
    "ai1_candidates",
    "class_weights",
    "hedged_spread_return",
    "label_ai1",
    "label_ai2",
    "risk_conditions",
    "risk_state",
]



@dataclass(frozen=True)
class LabelParams:
    """AI1 event-label parameters (spec 004 §ラベリング仕様 v1, config/core_policy.yaml ``label_ai1``).

    Parameters
    ----------
    z_entry : float
        Event threshold: a bar is a candidate when ``|z| >= z_entry``. Default 2.0.
    z_exit : float
        Success threshold: ``|z| <= z_exit`` within ``M`` bars gives ``y = 1``. Default 0.5.
    M : int
        Outcome horizon in bars. Default 48.
    speed_k : int
        Number of bar intervals in the speed filter. Default 6.
    theta_speed : float
        Maximum mean ``|Δz|`` per bar over the last ``speed_k`` intervals. Default 0.12 (spec
        004); ``config/core_policy.yaml`` sets 0.57, the same percentile of the consistent z of
        features v1 (docs/quant-contracts.md §Labels, "Speed thresholds").
    """

    z_entry: float = 2.0
    z_exit: float = 0.5
    M: int = 48
    speed_k: int = 6
    theta_speed: float = 0.12

    def __post_init__(self) -> None:
        if not (0.0 <= self.z_exit < self.z_entry):
            raise ValueError(f"need 0 <= z_exit < z_entry, got {self.z_exit}, {self.z_entry}")
        if self.M < 1:
            raise ValueError(f"M must be >= 1 bar, got {self.M}")
        if self.speed_k < 1:
            raise ValueError(f"speed_k must be >= 1, got {self.speed_k}")
        if not self.theta_speed > 0:
            raise ValueError(f"theta_speed must be > 0, got {self.theta_speed}")


@dataclass(frozen=True)
class RiskLabelParams:
    """AI2 risk-state parameters (spec 004 §ラベリング仕様 v1 AI2, core_policy.yaml ``risk_label_ai2``).

    Parameters
    ----------
    theta_corr_var : float
        ``corr_stability`` (variance of the 180-bar rolling correlation) above which the pair is
        at risk. Default 0.025.
    theta_vol : float
        ``vol_ratio_spread`` (ATR now / 180-bar median ATR) above which the pair is at risk.
        Default 1.8.
    theta_speed : float
        Threshold on the EMA of ``|Δz|``. Default 0.12 per bar (spec 004);
        ``config/core_policy.yaml`` sets 0.49, the same percentile of the consistent z of features
        v1 (docs/quant-contracts.md §Labels, "Speed thresholds").
    speed_ema_half_life : float
        Half-life in bars of that EMA (``alpha = 1 - 2**(-1/h)``). Default 6.
    theta_dd : float
        Threshold on ``dd_recent`` (fraction of notional). Default 0.07.
    dd_window_bars : int
        Look-back of ``dd_recent`` in bars. The spec says 60 business days; the default assumes
        24 bars/day (1h bars); callers convert with their own bars/day. Default 1440.
    z_exit : float
        ``|z|`` below which the reference position is flat. Default 0.5 (= AI1 ``z_exit``).
    """

    theta_corr_var: float = 0.025
    theta_vol: float = 1.8
    theta_speed: float = 0.12
    speed_ema_half_life: float = 6.0
    theta_dd: float = 0.07
    dd_window_bars: int = 60 * 24
    z_exit: float = 0.5

    def __post_init__(self) -> None:
        if not self.speed_ema_half_life > 0:
            raise ValueError(f"speed_ema_half_life must be > 0, got {self.speed_ema_half_life}")
        if self.dd_window_bars < 1:
            raise ValueError(f"dd_window_bars must be >= 1, got {self.dd_window_bars}")
        if self.z_exit < 0:
            raise ValueError(f"z_exit must be >= 0, got {self.z_exit}")


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _utc_index(features: pd.DataFrame) -> pd.DatetimeIndex:
    idx = features.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise TypeError("features must be indexed by a DatetimeIndex (ts_utc)")
    if idx.tz is None:
        raise ValueError("features index must be timezone-aware UTC (ts_utc)")
    if not idx.is_unique or not idx.is_monotonic_increasing:
        raise ValueError("features index must be strictly increasing (unique ts_utc)")
    return idx.tz_convert("UTC")


def _column(features: pd.DataFrame, name: str) -> FloatArray:
    if name not in features.columns:
        raise KeyError(f"features is missing column {name!r}")
    return np.asarray(features[name], dtype=np.float64)


def _row_finite(features: pd.DataFrame) -> BoolArray:
    numeric = features.select_dtypes(include=[np.number])
    if numeric.shape[1] == 0:
        raise ValueError("features has no numeric columns")
    return np.asarray(np.isfinite(numeric.to_numpy(dtype=np.float64)).all(axis=1))


# --------------------------------------------------------------------------------------------
# AI1
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _speed(z: FloatArray, k: int) -> FloatArray:  # pragma: no cover - numba
    """Mean |z_u - z_{u-1}| over u = t-k+1..t; NaN if any term is undefined."""
    n = z.shape[0]
    out = np.full(n, np.nan)
    for t in range(k, n):
        acc = 0.0
        ok = True
        for u in range(t - k + 1, t + 1):
            d = z[u] - z[u - 1]
            if not np.isfinite(d):
                ok = False
                break
            acc += abs(d)
        if ok:
            out[t] = acc / k
    return out


@njit(cache=True)
def _ai1_events(
    z: FloatArray,
    speed: FloatArray,
    eligible: BoolArray,
    z_entry: float,
    z_exit: float,
    m: int,
    theta_speed: float,
) -> IntArray:  # pragma: no cover - numba
    """Causal event state machine; returns direction (+1/-1) at event bars, 0 elsewhere."""
    n = z.shape[0]
    events = np.zeros(n, dtype=np.int64)
    open_dir = 0
    open_start = -1
    for t in range(n):
        zt = z[t]
        if open_dir != 0 and t - open_start > m:
            open_dir = 0  # M bars have passed: window (s, s+M] is over
        if not np.isfinite(zt):
            continue
        if abs(zt) <= z_exit:
            open_dir = 0  # exit reached: the open event is resolved
            continue
        if abs(zt) < z_entry:
            continue
        d = 1 if zt > 0 else -1
        if open_dir == -d:
            open_dir = 0  # opposite crossing closes the open event
        if open_dir == d:
            continue  # same-direction re-entry suppressed while the window is open
        if not eligible[t]:
            continue
        sp = speed[t]
        if not np.isfinite(sp) or sp > theta_speed:
            continue  # speed filter (不利イベント除外)
        events[t] = d
        open_dir = d
        open_start = t
    return events


@njit(cache=True)
def _ai1_outcomes(
    z: FloatArray, starts: IntArray, z_exit: float, m: int
) -> tuple[IntArray, IntArray]:  # pragma: no cover - numba
    """For each start t: (y, t_end_pos) with the first u in (t, t+M] where |z_u| <= z_exit."""
    k = starts.shape[0]
    y = np.zeros(k, dtype=np.int64)
    t_end = np.empty(k, dtype=np.int64)
    for i in range(k):
        t = starts[i]
        t_end[i] = t + m
        for u in range(t + 1, t + m + 1):
            zu = z[u]
            if np.isfinite(zu) and abs(zu) <= z_exit:
                y[i] = 1
                t_end[i] = u
                break
    return y, t_end


def _ai1_event_directions(features: pd.DataFrame, params: LabelParams) -> IntArray:
    _utc_index(features)
    z = _column(features, "z")
    eligible = _row_finite(features)
    speed = _speed(z, params.speed_k)
    return np.asarray(
        _ai1_events(
            z,
            speed,
            eligible,
            float(params.z_entry),
            float(params.z_exit),
            int(params.M),
            float(params.theta_speed),
        )
    )


def ai1_candidates(features: pd.DataFrame, params: LabelParams) -> BoolArray:
    """Bars at which an AI1 prediction is made at inference time (past information only).

    The event rule of :func:`label_ai1` evaluated causally: ``|z_t| >= z_entry``, every numeric
    column finite at ``t``, speed filter passed, and no open event of the same direction (an event
    is open until ``|z| <= z_exit`` or ``M`` bars after its start; an opposite-side crossing closes
    it). Whether a bar is a candidate depends only on rows ``<= t``.

    Parameters
    ----------
    features : pandas.DataFrame, shape (n_bars, n_features)
        Features v1 indexed by strictly increasing UTC ``ts_utc``; must contain ``z``. Warm-up
        NaN rows are never candidates.
    params : LabelParams
        Event parameters.

    Returns
    -------
    numpy.ndarray of bool, shape (n_bars,)
        True at candidate bars. Unlike :func:`label_ai1`, the final bars whose horizon is not yet
        observed are included.

    Raises
    ------
    TypeError
        If the index is not a DatetimeIndex.
    ValueError
        If the index is not timezone-aware or not strictly increasing.
    KeyError
        If ``z`` is missing.

    Notes
    -----
    Source: spec 004 §ラベリング仕様 v1 (AI1 イベント起点 / 再エントリー抑制 / 重複防止 /
    不利イベント除外); the backtest (spec §backtest) only trades on these bars.
    """
    return np.asarray(_ai1_event_directions(features, params) != 0)


def label_ai1(features: pd.DataFrame, params: LabelParams) -> pd.DataFrame:
    """AI1 event labels: did ``|z|`` revert to ``z_exit`` within ``M`` bars of the event?

    Parameters
    ----------
    features : pandas.DataFrame, shape (n_bars, n_features)
        Features v1 indexed by strictly increasing UTC ``ts_utc``; must contain ``z`` (the
        unsmoothed clipped z-score). Bar positions are row positions.
    params : LabelParams
        Event parameters (z_entry, z_exit, M, speed_k, theta_speed).

    Returns
    -------
    pandas.DataFrame
        One row per event bar ``t`` (the bars of :func:`ai1_candidates` with ``t + M < n_bars``),
        index ``ts_utc`` (UTC), columns:

        ``y`` : int64
            1 if ``|z_u| <= z_exit`` for some ``u`` in ``(t, t + M]``, else 0.
        ``direction`` : int64
            ``+1`` when ``z_t > 0`` (sell A / buy B), ``-1`` when ``z_t < 0`` (buy A / sell B).
        ``t_pos`` : int64
            Bar position of the event.
        ``t_end_pos`` : int64
            First exit bar if ``y = 1``, else ``t + M`` (the last bar inspected).
        ``t_end`` : pandas.Timestamp (UTC)
            ``ts_utc`` of ``t_end_pos``.
        ``bars_to_exit`` : int64
            ``t_end_pos - t_pos`` (equals ``M`` when ``y = 0``).

    Raises
    ------
    TypeError, ValueError, KeyError
        As :func:`ai1_candidates`.

    Notes
    -----
    Source: spec 004 §ラベリング仕様 v1 (AI1（回帰確率）ラベル定義). The module docstring lists the
    choices made where the spec is ambiguous. Events whose horizon runs past the last bar are
    dropped (no label from unseen future) but still suppress later same-direction events.
    """
    idx = _utc_index(features)
    directions = _ai1_event_directions(features, params)
    n = len(features)
    starts = np.flatnonzero((directions != 0) & (np.arange(n) + params.M < n)).astype(np.int64)
    z = _column(features, "z")
    y, t_end_pos = _ai1_outcomes(z, starts, float(params.z_exit), int(params.M))
    out = pd.DataFrame(
        {
            "y": y.astype(np.int64),
            "direction": directions[starts].astype(np.int64),
            "t_pos": starts,
            "t_end_pos": t_end_pos.astype(np.int64),
            "t_end": idx[t_end_pos],
            "bars_to_exit": (t_end_pos - starts).astype(np.int64),
        },
        index=pd.DatetimeIndex(idx[starts], name="ts_utc"),
    )
    return out


# --------------------------------------------------------------------------------------------
# AI2
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _ema_halflife(x: FloatArray, half_life: float) -> FloatArray:  # pragma: no cover - numba
    """EMA seeded with the first finite value; NaN inputs give NaN outputs and keep the state."""
    alpha = 1.0 - 2.0 ** (-1.0 / half_life)
    out = np.full(x.shape[0], np.nan)
    state = np.nan
    for i in range(x.shape[0]):
        xi = x[i]
        if not np.isfinite(xi):
            continue
        state = xi if not np.isfinite(state) else state + alpha * (xi - state)
        out[i] = state
    return out


def _reference_drawdown(
    z: FloatArray, spread_return: FloatArray, z_exit: float, window: int
) -> FloatArray:
    finite_z = np.isfinite(z)
    position = np.where(finite_z & (np.abs(np.where(finite_z, z, 0.0)) >= z_exit), -np.sign(z), 0.0)
    pnl = np.zeros_like(z)
    pnl[1:] = position[:-1] * spread_return[1:]
    pnl[~np.isfinite(pnl)] = 0.0
    equity = np.cumsum(pnl)
    peak = pd.Series(equity).rolling(window, min_periods=1).max().to_numpy()
    return np.asarray(peak - equity, dtype=np.float64)


def hedged_spread_return(
    features: pd.DataFrame, close_a: pd.Series, close_b: pd.Series
) -> FloatArray:
    """Return of the beta-hedged unit spread position over each bar (the AI2 reference P&L).

    Parameters
    ----------
    features : pandas.DataFrame, shape (n_bars, n_features)
        Features v1 indexed by strictly increasing UTC ``ts_utc``; needs ``beta``.
    close_a, close_b : pandas.Series
        Leg close prices (price units) indexed by ``ts_utc``; every timestamp of
        ``features.index`` must be present (extra timestamps are ignored).

    Returns
    -------
    numpy.ndarray of float64, shape (n_bars,)
        ``R_t = (P_A,t / P_A,t-1 - 1) - beta_{t-1} (P_B,t / P_B,t-1 - 1)`` between consecutive
        feature rows: the P&L, as a fraction of the leg-A notional, of long 1 unit of A notional
        and short ``beta_{t-1}`` of B notional set at the close of ``t - 1`` (the beta-neutral
        sizing of spec 004 §コストテーブル). NaN at row 0 and where ``beta_{t-1}`` is NaN.

    Raises
    ------
    KeyError
        If ``beta`` is missing or a feature timestamp has no close.
    ValueError, TypeError
        On a bad features index.

    Notes
    -----
    The change of the ``spread`` column is *not* a P&L: with a time-varying beta,
    ``S_t - S_{t-1}`` also contains ``(beta_t - beta_{t-1}) ln P_B,t``, which on BTC/ETH 1h bars
    is several times larger than the hedged return.
    """
    idx = _utc_index(features)
    beta = _column(features, "beta")
    prices = []
    for name, close in (("close_a", close_a), ("close_b", close_b)):
        c = close.copy()
        c.index = pd.DatetimeIndex(c.index).tz_convert("UTC")
        missing = idx.difference(c.index)
        if len(missing):
            raise KeyError(
                f"{name} has no price for {len(missing)} feature bars, e.g. {missing[0]}"
            )
        prices.append(np.asarray(c.reindex(idx), dtype=np.float64))
    pa, pb = prices
    out = np.full(len(idx), np.nan)
    out[1:] = (pa[1:] / pa[:-1] - 1.0) - beta[:-1] * (pb[1:] / pb[:-1] - 1.0)
    return out


def risk_conditions(
    features: pd.DataFrame,
    params: RiskLabelParams,
    spread_return: npt.ArrayLike,
) -> pd.DataFrame:
    """The four AI2 risk conditions and their inputs at every bar.

    Parameters
    ----------
    features : pandas.DataFrame, shape (n_bars, n_features)
        Features v1 indexed by strictly increasing UTC ``ts_utc``; needs ``corr_stability``,
        ``vol_ratio_spread`` and ``z``.
    params : RiskLabelParams
        Thresholds and windows.
    spread_return : array_like, shape (n_bars,)
        Return over bar ``t`` of a long unit spread position (fraction of notional), normally
        :func:`hedged_spread_return`. NaN returns contribute zero P&L.

    Returns
    -------
    pandas.DataFrame, shape (n_bars, 8)
        Index ``ts_utc``. Values: ``speed_ema`` (EMA half-life ``speed_ema_half_life`` of
        ``|Δz|``, NaN until the first defined ``Δz``), ``dd_recent`` (>= 0). Conditions (bool,
        False when the input is NaN): ``corr_unstable`` (corr_stability > theta_corr_var),
        ``vol_spike`` (vol_ratio_spread > theta_vol), ``speed_high`` (speed_ema > theta_speed),
        ``dd_high`` (dd_recent > theta_dd), ``risk`` (any of the four) and ``defined`` (all of
        corr_stability, vol_ratio_spread, speed_ema finite).

    Raises
    ------
    TypeError, ValueError
        On a bad index, or if ``spread_return`` has the wrong length.
    KeyError
        If a needed column is missing.

    Notes
    -----
    Source: spec 004 §ラベリング仕様 v1 (AI2（リスク）ラベル定義). ``dd_recent`` uses the reference
    equity described in the module docstring over the last ``dd_window_bars`` bars (inclusive of
    ``t``). Every value at ``t`` uses rows ``<= t`` only.
    """
    idx = _utc_index(features)
    z = _column(features, "z")
    corr_stab = _column(features, "corr_stability")
    vol_ratio = _column(features, "vol_ratio_spread")
    n = len(features)
    ret = np.asarray(spread_return, dtype=np.float64)
    if ret.shape != (n,):
        raise ValueError(f"spread_return must have shape ({n},), got {ret.shape}")
    abs_dz = np.full(n, np.nan)
    abs_dz[1:] = np.abs(np.diff(z))
    speed_ema = _ema_halflife(abs_dz, float(params.speed_ema_half_life))
    dd = _reference_drawdown(z, ret, float(params.z_exit), int(params.dd_window_bars))
    corr_unstable = np.isfinite(corr_stab) & (corr_stab > params.theta_corr_var)
    vol_spike = np.isfinite(vol_ratio) & (vol_ratio > params.theta_vol)
    speed_high = np.isfinite(speed_ema) & (speed_ema > params.theta_speed)
    dd_high = dd > params.theta_dd
    defined = np.isfinite(corr_stab) & np.isfinite(vol_ratio) & np.isfinite(speed_ema)
    return pd.DataFrame(
        {
            "speed_ema": speed_ema,
            "dd_recent": dd,
            "corr_unstable": corr_unstable,
            "vol_spike": vol_spike,
            "speed_high": speed_high,
            "dd_high": dd_high,
            "risk": corr_unstable | vol_spike | speed_high | dd_high,
            "defined": defined,
        },
        index=pd.DatetimeIndex(idx, name="ts_utc"),
    )


def risk_state(
    features: pd.DataFrame,
    params: RiskLabelParams,
    spread_return: npt.ArrayLike,
) -> pd.Series:
    """AI2 risk state at each bar: 1 if any of the four spec conditions holds.

    Parameters
    ----------
    features, params, spread_return
        As :func:`risk_conditions`.

    Returns
    -------
    pandas.Series of bool, shape (n_bars,)
        Index ``ts_utc``; name ``risk``. False where the inputs are undefined (warm-up).

    Notes
    -----
    Source: spec 004 §ラベリング仕様 v1 (AI2 risk = 1 条件). This is the *state* at bar ``t``; the
    training label of :func:`label_ai2` looks forward from ``t``.
    """
    return risk_conditions(features, params, spread_return)["risk"].rename("risk")


def label_ai2(
    features: pd.DataFrame,
    params: RiskLabelParams,
    spread_return: npt.ArrayLike,
    horizon_bars: int = 48,
) -> pd.DataFrame:
    """AI2 labels: will the risk state be 1 on any bar of the next ``horizon_bars`` bars?

    Parameters
    ----------
    features : pandas.DataFrame, shape (n_bars, n_features)
        Features v1 (see :func:`risk_conditions` for the needed columns).
    params : RiskLabelParams
        Thresholds and windows.
    spread_return : array_like, shape (n_bars,)
        As :func:`risk_conditions` (normally :func:`hedged_spread_return`).
    horizon_bars : int, default 48
        Look-ahead ``M`` in bars (spec AI1 ``M``).

    Returns
    -------
    pandas.DataFrame
        One row per bar ``t`` where every numeric column of ``features`` is finite at ``t``, the
        risk inputs are defined on every bar of ``(t, t + horizon_bars]`` and
        ``t + horizon_bars < n_bars``. Index ``ts_utc``; columns ``y`` (int64, 1 if
        ``risk_state`` is True on some bar of ``(t, t + horizon_bars]``), ``t_pos``,
        ``t_end_pos`` (``t + horizon_bars``) and ``t_end`` (UTC timestamp of ``t_end_pos``).

    Raises
    ------
    ValueError
        If ``horizon_bars < 1`` or on a bad index.
    KeyError
        If a needed column is missing.

    Notes
    -----
    Source: spec 004 §ラベリング仕様 v1 (AI2) with the forward-looking definition of
    docs/quant-contracts.md §Labels (the model predicts the state rather than restating inputs).
    """
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be >= 1, got {horizon_bars}")
    idx = _utc_index(features)
    cond = risk_conditions(features, params, spread_return)
    risk = cond["risk"].to_numpy(dtype=np.int64)
    undefined = (~cond["defined"].to_numpy(dtype=bool)).astype(np.int64)
    n = len(features)
    h = int(horizon_bars)
    n_start = max(n - h, 0)
    c_risk = np.concatenate([[0], np.cumsum(risk)])
    c_undef = np.concatenate([[0], np.cumsum(undefined)])
    t = np.arange(n_start)
    # horizon bars t+1 .. t+h  <->  cumulative-sum indices [t+1, t+h+1)
    any_risk = (c_risk[t + h + 1] - c_risk[t + 1]) > 0
    all_defined = (c_undef[t + h + 1] - c_undef[t + 1]) == 0
    keep = _row_finite(features)[:n_start] & all_defined
    starts = t[keep].astype(np.int64)
    y = any_risk[keep].astype(np.int64)
    t_end_pos = starts + h
    return pd.DataFrame(
        {
            "y": y.astype(np.int64),
            "t_pos": starts,
            "t_end_pos": t_end_pos.astype(np.int64),
            "t_end": idx[t_end_pos],
        },
        index=pd.DatetimeIndex(idx[starts], name="ts_utc"),
    )


# --------------------------------------------------------------------------------------------
# Class weights
# --------------------------------------------------------------------------------------------


def class_weights(y: npt.ArrayLike, max_ratio: float = 5.0) -> FloatArray:
    """Per-sample inverse-frequency class weights with the weight ratio clipped at ``max_ratio``.

    Parameters
    ----------
    y : array_like of {0, 1}, shape (n_samples,)
        Binary labels.
    max_ratio : float, default 5.0
        Largest allowed ratio between the two class weights (spec: 1:5).

    Returns
    -------
    numpy.ndarray of float64, shape (n_samples,)
        Weight of each sample. Before clipping, ``w_c = n / (2 n_c)`` (inverse frequency). If
        ``w_rare / w_common > max_ratio`` the rare class is set to ``max_ratio * w_common``. The
        weights are then rescaled to mean 1 (sum ``n``). If only one class is present all weights
        are 1.

    Raises
    ------
    ValueError
        If ``y`` is empty, not 1-D, contains values other than 0/1, or ``max_ratio < 1``.

    Notes
    -----
    Source: spec 004 §ラベリング仕様 v1 (クラス不均衡: inverse frequency, 重み比は最大 1:5 にクリップ).
    """
    if max_ratio < 1.0:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("y must be a non-empty 1-D array")
    if not np.isin(arr, [0, 1]).all():
        raise ValueError("y must contain only 0 and 1")
    yb = arr.astype(np.int64)
    n = yb.size
    n_pos = int(yb.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.ones(n, dtype=np.float64)
    w_pos = n / (2.0 * n_pos)
    w_neg = n / (2.0 * n_neg)
    if w_pos / w_neg > max_ratio:
        w_pos = max_ratio * w_neg
    elif w_neg / w_pos > max_ratio:
        w_neg = max_ratio * w_pos
    w = np.where(yb == 1, w_pos, w_neg).astype(np.float64)
    return np.asarray(w * (n / w.sum()), dtype=np.float64)

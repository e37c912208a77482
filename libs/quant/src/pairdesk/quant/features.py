"""Features v1 for one pair of legs (spec 004 §特徴量仕様 v1), batch computation.

:func:`compute_features` turns two legs of closed OHLC bars into the 21 feature columns of
:data:`FEATURE_COLUMNS` followed by the :data:`EXTRA_COLUMNS` (``kappa``), i.e.
:data:`OUTPUT_COLUMNS`. It runs the same compiled loop over the per-bar update as the live
:class:`pairdesk.quant.incremental.PairFeatureState` (which feeds it one bar at a time), so the two
agree to the last bit; each bar costs work bounded by the window sizes, independent of the history
length (48k hourly bars in ~34 ms on an idle core).

Notes
-----
Bars are indexed ``t = 0, 1, ...`` over the **common** timestamps of the two legs (inner join, never
forward-filled). Windows are in bars; defaults from ``config/pipeline_policy.yaml`` ``features``.
With ``W_b`` = ``beta_window_bars``, ``W_z`` = ``z_window_bars``, ``W_r`` = ``rho_window_bars``,
``W_s`` = ``slope_window_bars``, ``W_m`` = ``atr_baseline_median_bars``, ``n`` = ``atr_period``,
``m`` = ``rsi_period``:

* Prices are logs of the closes: ``p_X,t = ln C_X,t``; log returns ``r_X,t = p_X,t - p_X,t-1``.
* **Hedge ratio** ``beta_t``, method ``hedge_ratio.method``:

  - ``rolling_ols`` (default, the spec). **Raw beta** ``b_t``: OLS slope of ``p_A`` on ``p_B`` with
    intercept over bars ``t-W_b+1..t`` (centred sums). With OLS residuals ``e``, if
    ``std(e, ddof=1) / (MAD(e) / 0.6744897501960817) > huber_mad_ratio`` (``MAD`` = median of
    ``|e - median(e)|``; 1/0.67449 = 1.4826022 is the contract's "1.4826 * MAD" with the exact
    normal-consistency constant of statsmodels and scipy), the slope is re-estimated by Huber
    IRLS exactly as ``statsmodels.RLM(p_A, [1, p_B], M=HuberT(t=huber_t)).fit(scale_est='mad')``
    (scale ``median(|e|) / 0.67449`` re-estimated after every weighted fit; weights
    ``min(1, t / |e / scale|)``; stop when the deviance changes by ``<= huber_tol`` or after
    ``huber_maxiter`` fits counting the start fit, or when the scale is 0). **beta** = EMA of the
    finite raw betas, ``alpha = 1 - 2**(-1 / beta_ema_half_life)``, seeded with the first finite
    raw beta (= ``pandas.ewm(halflife=72, adjust=False)``); a non-finite raw beta leaves it as is.
  - ``kalman``: state ``(alpha_t, beta_t)`` a random walk with covariance
    ``delta / (1 - delta) * V_e * I`` per bar, observation ``p_A = alpha + beta p_B + eps``,
    ``var(eps) = V_e`` (``kalman_obs_var``, or the OLS residual variance of the first ``W_b``
    bars when None). Started at bar ``W_b - 1`` from the OLS fit of the first window with its
    coefficient covariance; ``beta`` is the filtered ``beta_t`` (not smoothed further).

* **spread** ``S_t = p_A,t - beta_t * p_B,t`` (log units, intercept omitted).
* **z** (``rolling_ols``): the spread *under today's beta* against its own window,
  ``x_u = p_A,u - beta_t p_B,u`` for ``u = t-W_z+1..t``,
  ``z_t = clip((x_t - mean(x)) / std(x, ddof=1), -z_clip, z_clip)``, computed as
  ``(p_A,t - beta_t p_B,t - (m_A - beta_t m_B)) / sqrt(v_A - 2 beta_t c_AB + beta_t^2 v_B)`` from the
  window moments of the log prices (NaN when that variance is at the rounding level, <= 1e-12 of
  ``v_A + beta^2 v_B``). Not the moments of the stored ``S`` values (each under its own beta):
  those measure the drift of beta (corr -0.998 with its z-score on XAU/XAG 1h).
  **z** (``kalman``): ``clip(e_t / sqrt(Q_t), -z_clip, z_clip)``, the filter's innovation over its
  predicted standard deviation, from bar ``W_b``.
  **z_ema** = EMA of z with ``alpha = 1 - 2**(-1 / z_ema_half_life)`` seeded with the first finite
  z (a NaN z leaves it unchanged). ``delta_z = z_t - z_{t-1}``, ``abs_delta_z = |delta_z|``;
  **slope_z** = OLS slope of the last ``W_s`` z values on bar index.
* **Hedged spread**: ``h_t = r_A,t - beta_{t-1} r_B,t`` (the return of the position held over bar
  ``t``, hedged with the previous bar's beta) and ``H_t = H_{t-1} + h_t`` with ``H = 0`` at the first
  beta. ``abs_delta_S = |h_t|``; **atr_spread** = Wilder ATR with close-only ``TR_t = |h_t|``;
  **rsi_spread** = Wilder RSI (period ``m``) of ``h``: first average gain/loss are the means of the
  first ``m`` gains/losses, then Wilder smoothing; ``RSI = 100 - 100 / (1 + G/L)``, 100 when
  ``L = 0``. **ema_gap_spread** = ``EMA_span(ema_fast_span)(H) - EMA_span(ema_slow_span)(H)``
  (``alpha = 2 / (span + 1)``, adjust=False, both seeded with the first H). **slope_spread** = OLS
  slope of the last ``W_s`` values of ``H`` on bar index divided by ``std(x, ddof=1)`` (the z
  denominator): z-units per bar.
* **Wilder ATR** (period ``n``): legs ``TR_t = max(H-L, |H-C_{t-1}|, |L-C_{t-1}|)`` in price units,
  from the second bar on (TA-Lib convention); the first ATR is the mean of the first ``n`` TRs,
  then ``ATR_t = ((n-1) ATR_{t-1} + TR_t) / n``. ``atr_ratio_X = atr_X / median(atr_X over W_m)``,
  ``vol_ratio_spread = atr_spread / median(atr_spread over W_m)``; the median windows include the
  current bar and need ``W_m`` values (NaN if the median is 0).
* **half_life / kappa**: OLS ``dx_u = a + b x_{u-1}`` over the last ``W_z`` bars of the spread under
  today's beta, ``x_u = p_A,u - beta_t p_B,u`` (``dx_u = r_A,u - beta_t r_B,u``), from running
  (co)variances of ``(p_A,u-1, p_B,u-1, r_A,u, r_B,u)``; ``kappa = -b`` (per bar, an extra output);
  ``half_life = clip(ln 2 / kappa, *half_life_clip)`` for ``kappa > 0`` and the upper clip for
  ``kappa <= 0`` (not mean reverting; the spec's ``|kappa|`` would give such a spread a short
  half-life). NaN when the variance of ``x_{u-1}`` is at the rounding level.
* **rho_rolling** = Pearson correlation of ``r_A`` and ``r_B`` over the last ``W_r`` returns;
  **corr_stability** = ``var(rho_rolling over W_r values, ddof=1)``.
* **beta_stability** = ``std(beta over W_b values, ddof=1) / (|mean| + beta_stability_eps)``.
* Window means and (co)variances are running sums around a shift near the window mean (O(1) per
  bar, corrected two-pass formula), recomputed exactly from the window buffer every window and
  whenever the mean drifts from the shift, so log prices ~7.6 do not cancel catastrophically and
  no rounding error accumulates along the history; exactly constant windows give exactly zero
  variance. Rolling medians keep a sorted window (exact order statistics). Details:
  ``pairdesk.quant._feature_kernels``.
* **Warm-up**: every row with index ``t < params.warmup_bars`` is all-NaN (the state still learns
  from those bars). ``warmup_bars`` is the first index at which every output is defined for
  non-degenerate data (372 with the defaults, set by ``vol_ratio_spread``: beta from bar 179,
  ``h`` from 180, 14 values for the ATR, then 180 ATRs for the median).

References
----------
spec 004 §特徴量仕様 v1 (formulas, windows, "推奨窓長"), §ラベリング 共通前提/データ品質 (alignment);
``docs/quant-contracts.md`` §Features v1 and "Hedge ratio: rolling OLS vs Kalman" (the choices
above, with the measurements behind them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

import numpy as np
import pandas as pd
from pairdesk.quant import _feature_kernels as _k

__all__ = [
    "EXTRA_COLUMNS",
    "FEATURE_COLUMNS",
    "HEDGE_RATIO_METHODS",
    "OUTPUT_COLUMNS",
    "FeatureParams",
    "HedgeRatioParams",
    "align_pair",
    "compute_features",
    "rolling_beta_raw",
]

FEATURE_COLUMNS: tuple[str, ...] = (
    "beta",
    "spread",
    "z",
    "delta_z",
    "z_ema",
    "atr_spread",
    "vol_ratio_spread",
    "half_life",
    "rho_rolling",
    "corr_stability",
    "beta_stability",
    "atr_A",
    "atr_B",
    "atr_ratio_A",
    "atr_ratio_B",
    "ema_gap_spread",
    "slope_spread",
    "rsi_spread",
    "abs_delta_S",
    "abs_delta_z",
    "slope_z",
)

#: Outputs beyond the spec's 21 features, appended after them: ``kappa`` (mean-reversion speed per
#: bar of the spread under today's hedge ratio; ``half_life = ln 2 / kappa``). Not a model input.
EXTRA_COLUMNS: tuple[str, ...] = ("kappa",)

#: Columns of :func:`compute_features`: the 21 :data:`FEATURE_COLUMNS`, then :data:`EXTRA_COLUMNS`.
OUTPUT_COLUMNS: tuple[str, ...] = FEATURE_COLUMNS + EXTRA_COLUMNS

#: Hedge-ratio estimators selectable by ``features.hedge_ratio.method``.
HEDGE_RATIO_METHODS: tuple[str, ...] = ("rolling_ols", "kalman")

_OHLC = ("open", "high", "low", "close")
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UTC+00:00", "Z", "Etc/UCT", "UCT", "Universal", "Zulu"})


@dataclass(frozen=True)
class HedgeRatioParams:
    """Hedge-ratio estimator (``config/pipeline_policy.yaml`` ``features.hedge_ratio``).

    Attributes
    ----------
    method : {"rolling_ols", "kalman"}
        ``rolling_ols`` (spec 004 default): window OLS/Huber beta over ``beta_window_bars``,
        EMA-smoothed. ``kalman``: Kalman filter on the random-walk state ``(alpha, beta)``.
    kalman_delta : float
        State-noise ratio ``delta`` in ``(0, 1)``: the state covariance per bar is
        ``delta / (1 - delta) * obs_var * I``. Default 1e-4.
    kalman_obs_var : float or None
        Observation variance (log-price units squared, > 0). None (default): the OLS residual
        variance of the first ``beta_window_bars`` bars (ddof 2), fixed thereafter.

    Raises
    ------
    ValueError
        Unknown method, ``delta`` outside ``(0, 1)``, non-positive or non-finite ``obs_var``.

    References
    ----------
    ``docs/quant-contracts.md`` §Features v1, "Hedge ratio: rolling OLS vs Kalman".
    """

    method: str = "rolling_ols"
    kalman_delta: float = 1e-4
    kalman_obs_var: float | None = None

    def __post_init__(self) -> None:
        if self.method not in HEDGE_RATIO_METHODS:
            raise ValueError(
                f"hedge_ratio.method must be one of {', '.join(HEDGE_RATIO_METHODS)}, "
                f"got {self.method!r}"
            )
        d = self.kalman_delta
        if isinstance(d, bool) or not isinstance(d, int | float | np.integer | np.floating):
            raise ValueError(f"hedge_ratio.kalman.delta must be a number, got {d!r}")
        if not 0.0 < float(d) < 1.0:
            raise ValueError(f"hedge_ratio.kalman.delta must be in (0, 1), got {d!r}")
        object.__setattr__(self, "kalman_delta", float(d))
        v = self.kalman_obs_var
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise ValueError(f"hedge_ratio.kalman.obs_var must be a number or null, got {v!r}")
            if not (math.isfinite(float(v)) and float(v) > 0.0):
                raise ValueError(f"hedge_ratio.kalman.obs_var must be finite and > 0, got {v!r}")
            object.__setattr__(self, "kalman_obs_var", float(v))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> HedgeRatioParams:
        """Build from the YAML form ``{method: ..., kalman: {delta: ..., obs_var: ...}}``.

        Raises
        ------
        ValueError
            Unknown keys, or values rejected by the constructor.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"hedge_ratio must be a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - {"method", "kalman"})
        if unknown:
            raise ValueError(f"unknown hedge_ratio key(s): {', '.join(map(str, unknown))}")
        kal = values.get("kalman") or {}
        if not isinstance(kal, Mapping):
            raise ValueError(f"hedge_ratio.kalman must be a mapping, got {type(kal).__name__}")
        unknown = sorted(set(kal) - {"delta", "obs_var"})
        if unknown:
            raise ValueError(f"unknown hedge_ratio.kalman key(s): {', '.join(map(str, unknown))}")
        return cls(
            method=values.get("method", "rolling_ols"),
            kalman_delta=kal.get("delta", 1e-4),
            kalman_obs_var=kal.get("obs_var"),
        )


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of features v1; defaults are ``config/pipeline_policy.yaml`` ``features``.

    Attributes
    ----------
    beta_window_bars : int
        Window (bars) of the raw rolling beta and of ``beta_stability``. Spec 004: 180.
    beta_ema_half_life : float
        Half-life (bars) of the EMA smoothing the raw beta. Spec 004: 72.
    huber_mad_ratio : float
        Huber switch: re-estimate beta by Huber IRLS when ``std(e)/(1.4826 MAD(e))`` exceeds it. 2.0.
    huber_t : float
        Huber tuning constant (statsmodels ``HuberT`` default 1.345).
    z_window_bars : int
        Window (bars) of the spread mean/std for z, of ``half_life`` and of ``std_S``. Spec 004: 180.
    z_clip : float
        z is clipped to ``[-z_clip, z_clip]``. Spec 004: 5.
    z_ema_half_life : float
        Half-life (bars) of ``z_ema``. Spec 004: 12.
    atr_period : int
        Wilder ATR period for the legs and the spread. Spec 004: 14.
    atr_baseline_median_bars : int
        Window (bars, current bar included) of the ATR medians in the ratios. Spec 004: 180.
    rho_window_bars : int
        Window (log returns) of ``rho_rolling`` and (rho values) of ``corr_stability``. Spec 004: 180.
    slope_window_bars : int
        Window (bars) of ``slope_spread`` and ``slope_z``. Spec 004: 20.
    ema_fast_span, ema_slow_span : int
        Spans of the two spread EMAs in ``ema_gap_spread``. Spec 004: 12, 26.
    rsi_period : int
        Wilder RSI period of the spread. Spec 004: 14.
    half_life_clip : tuple of float
        ``(lo, hi)`` bounds of ``half_life`` in bars. Spec 004: ``[1, 240]``.
    huber_maxiter : int
        IRLS iteration cap, statsmodels ``RLM.fit`` semantics (start fit counts as 1). Default 50.
    huber_tol : float
        IRLS tolerance on the change of the deviance (statsmodels ``conv='dev'``). Default 1e-8.
    beta_stability_eps : float
        Added to ``|mean(beta)|`` in ``beta_stability``'s denominator. Spec 004: 1e-6.
    hedge_ratio : HedgeRatioParams
        Hedge-ratio estimator (rolling OLS by default, or Kalman). A mapping in the YAML form
        ``{method: ..., kalman: {delta: ..., obs_var: ...}}`` is accepted and converted.

    Raises
    ------
    ValueError
        If a window is too short for its statistic or a constant is out of range.
    """

    beta_window_bars: int = 180
    beta_ema_half_life: float = 72.0
    huber_mad_ratio: float = 2.0
    huber_t: float = 1.345
    z_window_bars: int = 180
    z_clip: float = 5.0
    z_ema_half_life: float = 12.0
    atr_period: int = 14
    atr_baseline_median_bars: int = 180
    rho_window_bars: int = 180
    slope_window_bars: int = 20
    ema_fast_span: int = 12
    ema_slow_span: int = 26
    rsi_period: int = 14
    half_life_clip: tuple[float, float] = (1.0, 240.0)
    huber_maxiter: int = 50
    huber_tol: float = 1e-8
    beta_stability_eps: float = 1e-6
    hedge_ratio: HedgeRatioParams = HedgeRatioParams()

    def __post_init__(self) -> None:
        if isinstance(self.hedge_ratio, Mapping):
            object.__setattr__(self, "hedge_ratio", HedgeRatioParams.from_mapping(self.hedge_ratio))
        elif not isinstance(self.hedge_ratio, HedgeRatioParams):
            raise ValueError(
                "FeatureParams.hedge_ratio must be a HedgeRatioParams or a mapping, got "
                f"{type(self.hedge_ratio).__name__}"
            )
        ints = {
            "beta_window_bars": (self.beta_window_bars, 3),
            "z_window_bars": (self.z_window_bars, 3),
            "rho_window_bars": (self.rho_window_bars, 3),
            "slope_window_bars": (self.slope_window_bars, 2),
            "atr_period": (self.atr_period, 1),
            "atr_baseline_median_bars": (self.atr_baseline_median_bars, 1),
            "ema_fast_span": (self.ema_fast_span, 1),
            "ema_slow_span": (self.ema_slow_span, 1),
            "rsi_period": (self.rsi_period, 1),
            "huber_maxiter": (self.huber_maxiter, 1),
        }
        for name, (value, lo) in ints.items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
                raise ValueError(f"FeatureParams.{name} must be an integer >= {lo}, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("beta_ema_half_life", "huber_mad_ratio", "huber_t", "z_clip", "z_ema_half_life",
                     "huber_tol", "beta_stability_eps"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, int | float | np.integer | np.floating
            ):
                raise ValueError(f"FeatureParams.{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        positives = {
            "beta_ema_half_life": self.beta_ema_half_life,
            "huber_mad_ratio": self.huber_mad_ratio,
            "huber_t": self.huber_t,
            "z_clip": self.z_clip,
            "z_ema_half_life": self.z_ema_half_life,
            "huber_tol": self.huber_tol,
        }
        for name, fvalue in positives.items():
            if not (math.isfinite(fvalue) and fvalue > 0):
                raise ValueError(f"FeatureParams.{name} must be finite and > 0, got {fvalue!r}")
        if not (math.isfinite(self.beta_stability_eps) and self.beta_stability_eps >= 0):
            raise ValueError(
                f"FeatureParams.beta_stability_eps must be finite and >= 0, got {self.beta_stability_eps!r}"
            )
        try:
            clip = tuple(float(v) for v in self.half_life_clip)
        except (TypeError, ValueError):
            clip = ()
        if len(clip) != 2 or not (0 < clip[0] <= clip[1] < math.inf):
            raise ValueError(
                f"FeatureParams.half_life_clip must be (lo, hi) with 0 < lo <= hi < inf, got {self.half_life_clip!r}"
            )
        object.__setattr__(self, "half_life_clip", (clip[0], clip[1]))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FeatureParams:
        """Build from a mapping such as ``pipeline_policy.yaml`` ``features.value``.

        Unknown keys raise ``ValueError``; missing keys keep their defaults. Integral floats (YAML
        ``72``) are accepted for the integer windows.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown feature parameter(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            default = known[key].default
            if isinstance(default, int) and not isinstance(default, bool):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
            elif isinstance(default, float):
                value = float(value)
            elif isinstance(default, tuple):
                value = tuple(float(v) for v in value)
            elif isinstance(default, HedgeRatioParams) and isinstance(value, Mapping):
                value = HedgeRatioParams.from_mapping(value)
            kwargs[key] = value
        return cls(**kwargs)

    @property
    def warmup_bars(self) -> int:
        """Index of the first row where every feature is defined (372 with the defaults).

        Bars are counted over the common (aligned) timestamps. Rows ``0 .. warmup_bars - 1`` are NaN.
        """
        b0 = self.beta_window_bars - 1  # first hedge ratio, spread and hedged spread H
        t_sd = max(b0, self.z_window_bars - 1)  # first window std of the spread under beta_t
        t_z = b0 + 1 if self.hedge_ratio.method == "kalman" else t_sd  # first z
        starts = (
            t_z + 1,  # delta_z, abs_delta_z
            t_z + self.slope_window_bars - 1,  # slope_z
            max(b0 + self.slope_window_bars - 1, t_sd),  # slope_spread
            max(b0, self.z_window_bars),  # half_life, kappa
            b0 + self.atr_period + self.atr_baseline_median_bars - 1,  # vol_ratio_spread
            b0 + self.rsi_period,  # rsi_spread
            b0 + self.beta_window_bars - 1,  # beta_stability
            2 * self.rho_window_bars - 1,  # corr_stability
            self.atr_period + self.atr_baseline_median_bars - 1,  # atr_ratio_A/B
        )
        return max(starts)

    def _packed(self) -> tuple[np.ndarray, np.ndarray]:
        """Kernel parameter arrays ``(ip, fp)`` (layout in ``_feature_kernels``)."""
        ip = np.zeros(_k.N_IP, dtype=np.int64)
        ip[_k.IP_WB] = self.beta_window_bars
        ip[_k.IP_WZ] = self.z_window_bars
        ip[_k.IP_WR] = self.rho_window_bars
        ip[_k.IP_WS] = self.slope_window_bars
        ip[_k.IP_NATR] = self.atr_period
        ip[_k.IP_WMED] = self.atr_baseline_median_bars
        ip[_k.IP_NRSI] = self.rsi_period
        ip[_k.IP_MAXIT] = self.huber_maxiter
        longest = max(
            self.beta_window_bars,
            self.z_window_bars,
            self.rho_window_bars,
            self.slope_window_bars,
            self.atr_baseline_median_bars,
        )
        ip[_k.IP_C] = 1 << (longest + 1).bit_length()  # power of two >= longest + 2
        ip[_k.IP_WARM] = self.warmup_bars
        kalman = self.hedge_ratio.method == "kalman"
        ip[_k.IP_METHOD] = _k.METHOD_KALMAN if kalman else _k.METHOD_OLS
        fp = np.zeros(_k.N_FP, dtype=np.float64)
        fp[_k.FP_ABETA] = -math.expm1(-math.log(2.0) / self.beta_ema_half_life)
        fp[_k.FP_HRATIO] = self.huber_mad_ratio
        fp[_k.FP_HT] = self.huber_t
        fp[_k.FP_ZCLIP] = self.z_clip
        fp[_k.FP_AZ] = -math.expm1(-math.log(2.0) / self.z_ema_half_life)
        fp[_k.FP_HLLO] = self.half_life_clip[0]
        fp[_k.FP_HLHI] = self.half_life_clip[1]
        fp[_k.FP_AFAST] = 2.0 / (self.ema_fast_span + 1.0)
        fp[_k.FP_ASLOW] = 2.0 / (self.ema_slow_span + 1.0)
        fp[_k.FP_HTOL] = self.huber_tol
        fp[_k.FP_BEPS] = self.beta_stability_eps
        delta = self.hedge_ratio.kalman_delta
        fp[_k.FP_KQ] = delta / (1.0 - delta)
        obs_var = self.hedge_ratio.kalman_obs_var
        fp[_k.FP_KVE] = math.nan if obs_var is None else obs_var
        return ip, fp


def _check_leg(bars: pd.DataFrame, leg: str) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise ValueError(f"bars_{leg} must be a pandas DataFrame, got {type(bars).__name__}")
    missing = [c for c in _OHLC if c not in bars.columns]
    if missing:
        raise ValueError(f"bars_{leg} is missing column(s): {', '.join(missing)}")
    idx = bars.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise ValueError(f"bars_{leg} must be indexed by a tz-aware UTC DatetimeIndex (ts_utc)")
    if idx.tz is None or str(idx.tz) not in _UTC_NAMES:
        raise ValueError(f"bars_{leg} index must be tz-aware UTC, got tz={idx.tz!s}")
    if idx.hasnans:
        raise ValueError(f"bars_{leg} index contains NaT")
    if not idx.is_unique:
        raise ValueError(f"bars_{leg} index has duplicate timestamps")
    if not idx.is_monotonic_increasing:
        raise ValueError(f"bars_{leg} index is not sorted (must be strictly increasing)")


def align_pair(bars_a: pd.DataFrame, bars_b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inner-join two legs on their common ``ts_utc`` (never forward-filled).

    Parameters
    ----------
    bars_a, bars_b : pandas.DataFrame
        Bars of each leg indexed by a tz-aware UTC ``DatetimeIndex`` (bar open time), strictly
        increasing and unique, with at least the columns ``open, high, low, close``.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Both legs restricted to the common timestamps (all their columns kept), same index named
        ``ts_utc``.

    Raises
    ------
    ValueError
        Missing OHLC column; index not a UTC ``DatetimeIndex``, unsorted, with duplicates or NaT.

    References
    ----------
    spec 004 §ラベリング 共通前提/データ品質; ``docs/quant-contracts.md`` §Bars and alignment.
    """
    _check_leg(bars_a, "a")
    _check_leg(bars_b, "b")
    common = bars_a.index.intersection(bars_b.index, sort=False).sort_values()
    ia = bars_a.index.get_indexer(common)
    ib = bars_b.index.get_indexer(common)
    out_a = bars_a.iloc[ia]
    out_b = bars_b.iloc[ib]
    out_a.index = common.rename("ts_utc")
    out_b.index = common.rename("ts_utc")
    return out_a, out_b


def _aligned_ohlc(
    bars_a: pd.DataFrame, bars_b: pd.DataFrame
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Common index (exactly as :func:`align_pair`) and the (n, 4) float64 OHLC arrays of both legs.

    The rows are gathered from the price columns with a compiled merge of the two sorted indexes
    (no intermediate DataFrames); prices on the common bars are validated on the way.

    Raises
    ------
    ValueError
        As :func:`align_pair`; or a NaN, infinite or non-positive price on a common bar.
    """
    _check_leg(bars_a, "a")
    _check_leg(bars_b, "b")
    idx_a = cast(pd.DatetimeIndex, bars_a.index)  # checked by _check_leg
    idx_b = cast(pd.DatetimeIndex, bars_b.index)
    common = cast(
        pd.DatetimeIndex, idx_a.intersection(idx_b, sort=False).sort_values().rename("ts_utc")
    )
    if idx_a.dtype == idx_b.dtype:  # same unit and tz: merge the int64 timestamps directly
        pos_a, pos_b = _k.common_positions(idx_a.asi8, idx_b.asi8)
    else:
        pos_a = idx_a.get_indexer(common).astype(np.int64)
        pos_b = idx_b.get_indexer(common).astype(np.int64)
    arrays = []
    for bars, pos, leg in ((bars_a, pos_a, "a"), (bars_b, pos_b, "b")):
        cols = [np.ascontiguousarray(bars[c].to_numpy(dtype=np.float64)) for c in _OHLC]
        arr, row, col = _k.gather_ohlc(*cols, pos)
        if row >= 0:
            raise ValueError(
                f"bars_{leg} has a NaN, infinite or non-positive price: {_OHLC[col]}="
                f"{arr[row, col]!r} at {common[row]}"
            )
        arrays.append(arr)
    return common, arrays[0], arrays[1]


def compute_features(
    bars_a: pd.DataFrame, bars_b: pd.DataFrame, params: FeatureParams | None = None
) -> pd.DataFrame:
    """Features v1 of the pair (A, B) for every common bar.

    Parameters
    ----------
    bars_a, bars_b : pandas.DataFrame
        Closed bars of leg A and leg B, indexed by a tz-aware UTC ``DatetimeIndex`` (``ts_utc``,
        bar open time), strictly increasing and unique, float columns ``open, high, low, close``
        in price units (extra columns ignored). Legs are inner-joined on common timestamps.
    params : FeatureParams, optional
        Windows and constants; defaults from ``config/pipeline_policy.yaml``.

    Returns
    -------
    pandas.DataFrame
        Shape ``(n_common, 22)``, index = the common timestamps (``ts_utc``, UTC), columns exactly
        :data:`OUTPUT_COLUMNS` in order (the 21 :data:`FEATURE_COLUMNS`, then ``kappa``), float64.
        Rows ``0 .. params.warmup_bars - 1`` are NaN. Units: ``beta`` elasticity; ``spread``,
        ``abs_delta_S``, ``atr_spread``, ``ema_gap_spread`` log units; ``z``-family in std units;
        ``slope_spread`` and ``slope_z`` std units per bar; ``atr_A``/``atr_B`` price units;
        ``half_life`` bars; ``kappa`` per bar; ``rsi_spread`` 0..100; ratios dimensionless.

    Raises
    ------
    ValueError
        Missing column; non-UTC, unsorted or duplicate index; NaN/inf or non-positive price on a
        common bar; fewer common bars than ``params.warmup_bars + 1``.

    Notes
    -----
    Formulas and choices are listed in the module docstring. Every output row depends only on bars
    at or before its timestamp.

    References
    ----------
    spec 004 §特徴量仕様 v1; ``docs/quant-contracts.md`` §Features v1.
    """
    p = FeatureParams() if params is None else params
    index, arr_a, arr_b = _aligned_ohlc(bars_a, bars_b)
    n = len(index)
    need = p.warmup_bars + 1
    if n < need:
        raise ValueError(f"need at least {need} common bars for the warm-up, got {n}")
    ip, fp = p._packed()
    state = _k.new_state(ip)
    # feature-major buffer: the DataFrame wraps its transpose as-is (no copy)
    out = np.empty((_k.N_OUT, n), dtype=np.float64)
    bad = _k.run_bars(ip, fp, *state, arr_a, arr_b, out)
    if bad >= 0:  # unreachable after validation; kept so a kernel refusal can never pass silently
        raise ValueError(f"invalid price at common bar {bad} ({index[bad]})")
    return pd.DataFrame(out.T, index=index, columns=list(OUTPUT_COLUMNS), copy=False)


def rolling_beta_raw(
    log_a: np.ndarray, log_b: np.ndarray, params: FeatureParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unsmoothed) window beta of ``log_a`` on ``log_b`` with the Huber switch.

    The same window estimator the features use, exposed for diagnostics and tests.

    Parameters
    ----------
    log_a, log_b : numpy.ndarray
        Shape ``(n,)``, log closes of legs A and B on common bars.
    params : FeatureParams, optional
        Uses ``beta_window_bars``, ``huber_mad_ratio``, ``huber_t``, ``huber_maxiter``, ``huber_tol``.

    Returns
    -------
    beta : numpy.ndarray
        Shape ``(n,)``, raw beta of the window ending at each bar; NaN for the first
        ``beta_window_bars - 1`` bars (and on a window where ``log_b`` is constant).
    huber : numpy.ndarray
        Shape ``(n,)``, bool: the Huber re-estimate replaced OLS on that window.

    Raises
    ------
    ValueError
        Shapes differ or an input is not finite.

    References
    ----------
    spec 004 §特徴量仕様 v1 (β: rolling OLS 180, Huber when the residual ratio exceeds 2.0).
    """
    p = FeatureParams() if params is None else params
    x = np.ascontiguousarray(log_b, dtype=np.float64)
    y = np.ascontiguousarray(log_a, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"log_a and log_b must be 1-d of equal length, got {y.shape} and {x.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("log_a and log_b must be finite")
    return _k.rolling_window_beta(
        x, y, p.beta_window_bars, p.huber_mad_ratio, p.huber_t, p.huber_maxiter, p.huber_tol
    )

"""Incremental features v1 (PairFeatureState) == batch compute_features, bar by bar.

Both hedge-ratio methods (rolling OLS and Kalman) run the same kernel in both paths, so the rows
must agree to the last bit (and at least to 1e-9, the contract).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pairdesk.quant.features import (
    FEATURE_COLUMNS,
    OUTPUT_COLUMNS,
    FeatureParams,
    HedgeRatioParams,
    align_pair,
    compute_features,
)
from pairdesk.quant.incremental import PairFeatureState

OHLC = ["open", "high", "low", "close"]


def _feed(state: PairFeatureState, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    arr_a = a[OHLC].to_numpy()
    arr_b = b[OHLC].to_numpy()
    ts = a.index
    return np.array(
        [state.update_output_array(ts[i], tuple(arr_a[i]), tuple(arr_b[i])) for i in range(len(a))]
    )


def _walk(n: int, seed: int, vol: float, corr: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-06-02 22:00", periods=n, freq="1h", tz="UTC", name="ts_utc")
    common = rng.normal(0.0, vol, n)
    legs = []
    for lvl in (2000.0, 25.0):
        r = corr * common + math.sqrt(max(1.0 - corr * corr, 0.0)) * rng.normal(0.0, vol, n)
        close = lvl * np.exp(np.cumsum(r))
        opn = np.r_[close[0], close[:-1]]
        hi = np.maximum(opn, close) * (1.0 + rng.uniform(0.0, vol, n))
        lo = np.minimum(opn, close) * (1.0 - rng.uniform(0.0, vol, n))
        legs.append(pd.DataFrame({"open": opn, "high": hi, "low": lo, "close": close}, index=idx))
    return legs[0], legs[1]


@pytest.mark.parametrize("method", ["rolling_ols", "kalman"])
def test_batch_equals_incremental_real_2024(
    method: str, metals_2024: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    a, b = align_pair(*metals_2024)
    p = FeatureParams(hedge_ratio=HedgeRatioParams(method=method))
    batch = compute_features(a, b, p).to_numpy()
    state = PairFeatureState(p)
    inc = _feed(state, a, b)
    assert state.n_bars == len(a)
    if method == "rolling_ols":
        assert state.huber_windows > 0  # the robust branch is exercised on this slice
    else:
        assert state.huber_windows == 0  # no window beta under the Kalman filter
    assert np.array_equal(np.isnan(inc), np.isnan(batch))
    np.testing.assert_allclose(inc, batch, rtol=0, atol=1e-9)
    assert np.array_equal(inc, batch, equal_nan=True)  # same kernel: bit-identical in fact


def test_update_returns_named_dict(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, b = align_pair(*metals_2024)
    a, b = a.iloc[:420], b.iloc[:420]
    batch = compute_features(a, b)
    state = PairFeatureState()
    for i, ts in enumerate(a.index):
        row = state.update(ts, tuple(a[OHLC].iloc[i]), tuple(b[OHLC].iloc[i]))
        assert tuple(row) == OUTPUT_COLUMNS
        assert all(isinstance(v, float) for v in row.values())
        if i < FeatureParams().warmup_bars:
            assert all(math.isnan(v) for v in row.values())
        assert state.n_bars == i + 1
    assert row == batch.iloc[-1].to_dict()
    assert state.last_ts_ns == a.index[-1].value


def test_int_and_timestamp_inputs_agree(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, b = align_pair(*metals_2024)
    p = FeatureParams(
        beta_window_bars=20, z_window_bars=20, rho_window_bars=20, atr_baseline_median_bars=20
    )
    s1 = PairFeatureState(p)
    s2 = PairFeatureState(p)
    for i in range(120):
        ts = a.index[i]
        bar_a = tuple(float(v) for v in a[OHLC].iloc[i])
        bar_b = tuple(float(v) for v in b[OHLC].iloc[i])
        r1 = s1.update_output_array(ts, bar_a, bar_b)  # type: ignore[arg-type]
        r2 = s2.update_array(int(ts.value), list(bar_a), np.array(bar_b))  # type: ignore[arg-type]
        assert r1.shape == (len(OUTPUT_COLUMNS),)
        assert r2.shape == (len(FEATURE_COLUMNS),)
        assert np.array_equal(r1[: len(FEATURE_COLUMNS)], r2, equal_nan=True)
    assert s1.params is p


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    vol=st.sampled_from([1e-4, 3e-3, 2e-2]),
    corr=st.floats(-0.9, 0.99),
    wb=st.integers(3, 12),
    wz=st.integers(3, 12),
    wr=st.integers(3, 10),
    ws=st.integers(2, 6),
    natr=st.integers(1, 5),
    wmed=st.integers(1, 9),
    nrsi=st.integers(1, 5),
    extra=st.integers(-3, 40),
    method=st.sampled_from(["rolling_ols", "kalman"]),
)
def test_batch_equals_incremental_random_walks(
    seed: int, vol: float, corr: float, wb: int, wz: int, wr: int, ws: int, natr: int, wmed: int,
    nrsi: int, extra: int, method: str,
) -> None:  # fmt: skip
    p = FeatureParams(
        beta_window_bars=wb, z_window_bars=wz, rho_window_bars=wr, slope_window_bars=ws,
        atr_period=natr, atr_baseline_median_bars=wmed, rsi_period=nrsi,
        beta_ema_half_life=5.0, z_ema_half_life=3.0, ema_fast_span=3, ema_slow_span=7,
        hedge_ratio=HedgeRatioParams(method=method, kalman_delta=1e-3),
    )  # fmt: skip
    n = max(p.warmup_bars + 1 + extra, 1)
    a, b = _walk(n, seed, vol, corr)
    state = PairFeatureState(p)
    inc = _feed(state, a, b)
    # warm-up rows are all NaN in the incremental path, whatever the batch does
    assert np.isnan(inc[: p.warmup_bars]).all()
    if n < p.warmup_bars + 1:
        with pytest.raises(ValueError, match="need at least"):
            compute_features(a, b, p)
        return
    batch = compute_features(a, b, p).to_numpy()
    assert np.array_equal(np.isnan(inc), np.isnan(batch))
    np.testing.assert_allclose(inc, batch, rtol=0, atol=1e-9)
    assert np.isfinite(batch[p.warmup_bars :]).all()


def test_errors_leave_state_unchanged(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, b = align_pair(*metals_2024)
    a, b = a.iloc[:400], b.iloc[:400]
    batch = compute_features(a, b).to_numpy()
    state = PairFeatureState()
    arr_a = a[OHLC].to_numpy()
    arr_b = b[OHLC].to_numpy()
    rows = []
    for i, ts in enumerate(a.index):
        if i == 390:
            with pytest.raises(ValueError, match="ts_utc must be strictly increasing"):
                state.update(a.index[i - 1], tuple(arr_a[i]), tuple(arr_b[i]))
            with pytest.raises(ValueError, match="bar_a has a NaN, infinite or non-positive price"):
                state.update(ts, (1.0, 2.0, float("nan"), 1.5), tuple(arr_b[i]))
            with pytest.raises(ValueError, match="bar_b has a NaN, infinite or non-positive price"):
                state.update(ts, tuple(arr_a[i]), (1.0, 2.0, 0.5, 0.0))
            with pytest.raises(ValueError, match="bar_b has a NaN, infinite or non-positive price"):
                state.update(ts, tuple(arr_a[i]), (1.0, float("inf"), 0.5, 1.0))
            with pytest.raises(
                ValueError, match=r"bar_a and bar_b must each be \(open, high, low, close\)"
            ):
                state.update(ts, (1.0, 2.0, 0.5), tuple(arr_b[i]))  # type: ignore[arg-type]
            with pytest.raises(
                ValueError, match=r"must each be \(open, high, low, close\) numbers"
            ):
                state.update(ts, (1.0, 2.0, None, 1.5), tuple(arr_b[i]))  # type: ignore[arg-type]
            assert state.n_bars == 390
        rows.append(state.update_output_array(ts, tuple(arr_a[i]), tuple(arr_b[i])))
    assert np.array_equal(np.array(rows), batch, equal_nan=True)


def test_timestamp_validation() -> None:
    state = PairFeatureState()
    bar = (2000.0, 2001.0, 1999.0, 2000.5)
    with pytest.raises(ValueError, match="ts_utc must be tz-aware"):
        state.update(pd.Timestamp("2024-01-01 00:00"), bar, bar)
    with pytest.raises(ValueError, match="ts_utc must be a pandas Timestamp or int ns"):
        state.update("2024-01-01", bar, bar)  # type: ignore[arg-type]
    state.update(pd.Timestamp("2024-01-01 01:00", tz="Europe/Paris"), bar, bar)  # = 00:00 UTC
    with pytest.raises(ValueError, match="strictly increasing"):
        state.update(pd.Timestamp("2024-01-01 00:00", tz="UTC"), bar, bar)
    state.update(pd.Timestamp("2024-01-01 01:00", tz="UTC"), bar, bar)
    assert state.n_bars == 2


def test_crypto_incremental_tail(crypto_2025: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, b = align_pair(*crypto_2025)
    a, b = a.iloc[:1500], b.iloc[:1500]
    batch = compute_features(a, b).to_numpy()
    inc = _feed(PairFeatureState(), a, b)
    assert np.array_equal(inc, batch, equal_nan=True)
    assert np.isfinite(inc[FeatureParams().warmup_bars :]).all()


def test_degenerate_inputs_batch_equals_incremental() -> None:
    """Flat legs, a perfectly collinear pair and constant bars: no exception, NaN where undefined."""
    p = FeatureParams(beta_window_bars=8, z_window_bars=6, rho_window_bars=5, slope_window_bars=3,
                      atr_period=3, atr_baseline_median_bars=4, rsi_period=3)  # fmt: skip
    n = 140
    idx = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC", name="ts_utc")
    rng = np.random.default_rng(5)
    cb = 25.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    cb[40:70] = cb[40]  # leg B flat for 30 bars: beta window and returns degenerate
    ca = cb**2 / 25.0  # ln A = 2 ln B - ln 25: an exact fit, residuals at the rounding level
    ca[100:] = 1900.0  # then leg A constant
    b = pd.DataFrame({"open": cb, "high": cb, "low": cb, "close": cb}, index=idx)
    a = pd.DataFrame({"open": ca, "high": ca, "low": ca, "close": ca}, index=idx)
    batch = compute_features(a, b, p)
    inc = _feed(PairFeatureState(p), a, b)
    assert np.array_equal(inc, batch.to_numpy(), equal_nan=True)
    assert not np.isinf(batch.to_numpy()).any()
    # B flat over a whole rho window: correlation undefined; its Wilder ATR decays by (n-1)/n
    assert batch["rho_rolling"].iloc[50:70].isna().all()
    decay = batch["atr_B"].iloc[50:70] / batch["atr_B"].iloc[49:69].to_numpy()
    np.testing.assert_allclose(decay, 2.0 / 3.0, rtol=1e-12)
    # the smoothed beta is held (not NaN) while the raw beta is undefined
    assert batch["beta"].iloc[50:70].notna().all()
    assert (batch["beta"].iloc[50:70].diff().iloc[1:] == 0.0).all()

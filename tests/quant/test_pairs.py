"""Pair discovery (docs/quant-contracts.md §Pair discovery) against independent computations.

Every test statistic is checked against statsmodels on the same aligned window: ``coint`` (both
orderings), ``adfuller`` (autolag AIC, same lag and nobs), ``coint_johansen`` (det_order 0,
k_ar_diff 1), ``multipletests(method="fdr_bh")``, and an OLS AR(1) fit for the half-life. Hurst
is pinned by hand-worked cases and by the known values of a random walk (≈ 0.5) and an OU process
(< 0.5). Economic sanity: a planted cointegrated pair among random walks is selected, noise pairs
are not, and the false-selection rate on pure noise stays at or below α.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from pairdesk.quant.costs import CostModel
from pairdesk.quant.pairs import (
    CANDIDATE_COLUMNS,
    ScanParams,
    adf_test,
    benjamini_hochberg,
    engle_granger,
    half_life,
    hurst_exponent,
    hurst_lags,
    johansen_trace,
    round_trip_cost_bps,
    scan_pairs,
)
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.stattools import adfuller, coint
from statsmodels.tsa.vector_ar.vecm import coint_johansen

REPO = Path(__file__).resolve().parents[2]
COSTS = yaml.safe_load((REPO / "config" / "cost_table.yaml").read_text())


def _coint(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stat, p, _ = coint(a, b)
    return float(stat), float(p)


def _adf(x: np.ndarray, regression: str) -> tuple[float, float, int, int, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stat, p, lag, nobs, _, ic = adfuller(x, regression=regression, autolag="AIC")
    return float(stat), float(p), int(lag), int(nobs), float(ic)


def _cointegrated(
    seed: int, n: int, ar: tuple[float, ...] = (0.9,), beta: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """log B a random walk, log A = 0.3 + beta log B + AR(p) noise (stationary)."""
    rng = np.random.default_rng(seed)
    b = 4.0 + np.cumsum(rng.normal(0, 0.01, n))
    e = rng.normal(0, 0.004, n)
    u = np.zeros(n)
    for t in range(n):
        u[t] = e[t] + sum(c * u[t - k - 1] for k, c in enumerate(ar) if t - k - 1 >= 0)
    return 0.3 + beta * b + u, b


def _real(pair: tuple[pd.DataFrame, pd.DataFrame], n: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = pair
    common = a.index.intersection(b.index)[:n]
    return np.log(a.loc[common, "close"].to_numpy()), np.log(b.loc[common, "close"].to_numpy())


# ----------------------------------------------------------------------------- Engle–Granger / ADF


@pytest.mark.parametrize("which", ["metals", "crypto"])
def test_engle_granger_equals_coint_on_real_pairs(
    which: str,
    metals_2024: tuple[pd.DataFrame, pd.DataFrame],
    crypto_2025: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    a, b = _real(metals_2024 if which == "metals" else crypto_2025, 1500)
    for y0, y1 in ((a, b), (b, a)):
        ours = engle_granger(y0, y1)
        stat, p = _coint(y0, y1)
        assert ours.stat == pytest.approx(stat, rel=1e-10, abs=1e-10)
        assert ours.pvalue == pytest.approx(p, rel=1e-9, abs=1e-12)
        slope = sm.OLS(y0, sm.add_constant(y1)).fit().params
        assert ours.hedge_ratio == pytest.approx(slope[1], rel=1e-10)
        assert ours.intercept == pytest.approx(slope[0], rel=1e-9, abs=1e-10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engle_granger_equals_coint_with_nonzero_aic_lag(seed: int) -> None:
    """AR(2) residuals make AIC pick lagged differences; same lag, stat and p as statsmodels."""
    a, b = _cointegrated(seed, 800, ar=(1.2, -0.45))
    ours = engle_granger(a, b)
    stat, p = _coint(a, b)
    resid = sm.OLS(a, sm.add_constant(b)).fit().resid
    _, _, lag, _, _ = _adf(resid, "n")
    assert lag > 0
    assert ours.usedlag == lag
    assert ours.stat == pytest.approx(stat, rel=1e-10)
    assert ours.pvalue == pytest.approx(p, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("seed", "regression", "offset"), [(4, "c", 5.0), (5, "n", 5.0), (6, "c", 1e4)]
)
def test_adf_equals_adfuller(seed: int, regression: str, offset: float) -> None:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=600)
    x = np.zeros(600)
    for t in range(2, 600):  # AR(2) with a root near 1: the ADF lag search has work to do
        x[t] = 1.3 * x[t - 1] - 0.35 * x[t - 2] + e[t]
    ours = adf_test(x + offset, regression)
    stat, p, lag, nobs, ic = _adf(x + offset, regression)
    assert (ours.usedlag, ours.nobs) == (lag, nobs)
    assert ours.stat == pytest.approx(stat, rel=1e-10)
    assert ours.pvalue == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert ours.icbest == pytest.approx(ic, rel=1e-10)


def test_engle_granger_collinear_legs_like_statsmodels() -> None:
    b = np.log(np.linspace(100, 200, 300))
    res = engle_granger(2.0 * b + 1.0, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stat, p, _ = coint(2.0 * b + 1.0, b)
    assert res.stat == stat == -math.inf
    assert res.pvalue == p == 0.0


def test_single_pair_tests_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        engle_granger(np.arange(20.0), np.arange(21.0))
    with pytest.raises(ValueError, match="NaN or inf"):
        engle_granger(np.r_[np.arange(20.0), np.nan], np.arange(21.0))
    with pytest.raises(ValueError, match="constant"):
        engle_granger(np.ones(50), np.arange(50.0))
    with pytest.raises(ValueError, match="regression"):
        adf_test(np.arange(50.0), "ct")
    with pytest.raises(ValueError, match="constant"):
        adf_test(np.ones(50))
    with pytest.raises(ValueError, match="1-d"):
        adf_test(np.ones((5, 5)))
    with pytest.raises(ValueError, match="same length"):
        johansen_trace(np.arange(5.0), np.arange(5.0))


# ----------------------------------------------------------------------------- Johansen


@pytest.mark.parametrize("case", ["metals", "planted", "walks"])
def test_johansen_equals_coint_johansen(
    case: str, metals_2024: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    if case == "metals":
        a, b = _real(metals_2024, 3000)
    elif case == "planted":
        a, b = _cointegrated(7, 1000)
    else:
        rng = np.random.default_rng(8)
        a, b = np.cumsum(rng.normal(size=(2, 1000)), axis=1)
    ours = johansen_trace(a, b)
    ref = coint_johansen(np.column_stack([a, b]), det_order=0, k_ar_diff=1)
    assert ours.trace == pytest.approx(ref.lr1[0], rel=1e-9)
    assert ours.max_eig == pytest.approx(ref.lr2[0], rel=1e-9)
    assert ours.crit_5pct == ref.cvt[0, 1]
    assert ours.reject == (ref.lr1[0] > ref.cvt[0, 1])
    if case == "planted":
        assert ours.reject


# ----------------------------------------------------------------------------- BH, half-life, Hurst


def test_benjamini_hochberg_equals_multipletests() -> None:
    rng = np.random.default_rng(9)
    p = np.r_[rng.uniform(size=40), rng.uniform(0, 0.01, size=10), [0.0, 1.0, 0.5, 0.5]]
    assert np.allclose(
        benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=0, atol=1e-15
    )
    with_nan = np.r_[p[:10], np.nan, p[10:20]]
    q = benjamini_hochberg(with_nan)
    assert np.isnan(q[10])
    ref = multipletests(np.r_[p[:10], p[10:20]], method="fdr_bh")[1]
    assert np.allclose(np.r_[q[:10], q[11:]], ref, rtol=0, atol=1e-15)
    assert np.isnan(benjamini_hochberg(np.array([np.nan]))).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.2, 1.5]))


def test_half_life_hand_worked_and_against_ols() -> None:
    # s_t = 0.5^t exactly: Δs_t = -0.5 s_{t-1} → φ = 0.5, κ = ln 2, half-life exactly 1 bar
    kappa, hl = half_life(0.5 ** np.arange(30.0))
    assert kappa == pytest.approx(math.log(2.0), rel=1e-12)
    assert hl == pytest.approx(1.0, rel=1e-12)
    # alternating signs overshoot every bar: φ = -1 → κ = inf, half-life 0
    assert half_life(np.tile([1.0, -1.0], 20)) == (math.inf, 0.0)
    # simulated AR(1) φ = 0.95: κ from an independent statsmodels OLS of Δs on [1, s_{t-1}]
    rng = np.random.default_rng(10)
    s = np.zeros(20000)
    for t in range(1, s.size):
        s[t] = 0.95 * s[t - 1] + rng.normal()
    b = sm.OLS(np.diff(s), sm.add_constant(s[:-1])).fit().params[1]
    kappa, hl = half_life(s)
    assert kappa == pytest.approx(-math.log(1.0 + b), rel=1e-10)
    assert hl == pytest.approx(math.log(2) / -math.log(0.95), rel=0.1)
    # explosive: κ ≤ 0 → not mean reverting, half-life inf
    x = np.cumprod(np.full(300, 1.01)) + np.random.default_rng(11).normal(0, 1e-3, 300)
    kappa, hl = half_life(x)
    assert kappa < 0
    assert hl == math.inf
    with pytest.raises(ValueError, match="constant"):
        half_life(np.ones(10))


def test_hurst_hand_worked_random_walk_and_ou() -> None:
    # alternating 0,1 (401 points): each odd lag has an even number of ±1 differences (mean 0,
    # std exactly 1 at every lag) → slope 0
    alt = np.tile([0.0, 1.0], 201)[:401]
    assert hurst_exponent(alt, lags=[1, 3, 5, 7]) == pytest.approx(0.0, abs=1e-12)
    # s_t = t²: s_{t+τ} - s_t = 2tτ + τ², std = 2τ·std(t) → log-log slope exactly 1 with equal
    # sample counts; with n - τ samples it is close to 1 (hand: std(t over 0..n-τ-1) shrinks)
    t = np.arange(4000.0)
    assert hurst_exponent(t**2, lags=[1, 2, 4]) == pytest.approx(1.0, abs=2e-3)
    rng = np.random.default_rng(12)
    rw = np.cumsum(rng.normal(size=20000))
    assert hurst_exponent(rw) == pytest.approx(0.5, abs=0.05)
    ou = np.zeros(20000)
    e = rng.normal(size=20000)
    for i in range(1, ou.size):
        ou[i] = 0.9 * ou[i - 1] + e[i]
    assert hurst_exponent(ou) < 0.3
    assert list(hurst_lags(ScanParams())) == sorted(set(hurst_lags(ScanParams())))
    with pytest.raises(ValueError, match="lags"):
        hurst_exponent(rw, lags=[0, 2])


def test_round_trip_cost_hand_worked() -> None:
    cm = CostModel.from_mapping(COSTS, ["BTCUSDT", "XAUUSD"])
    # defaults: spread 5 (half per fill) + slippage 8 + commission 10 = 20.5 bps per fill
    assert round_trip_cost_bps(cm, "BTCUSDT", "BTCUSDT", 1.0) == pytest.approx(2 * (20.5 + 20.5))
    # XAUUSD override: spread 6, slippage 10 → 3 + 10 + 10 = 23 bps; leg B weighted by |β| = 0.5
    assert round_trip_cost_bps(cm, "XAUUSD", "BTCUSDT", -0.5) == pytest.approx(
        2 * (23 + 0.5 * 20.5)
    )
    with pytest.raises(ValueError, match="no costs"):
        round_trip_cost_bps(cm, "ETHUSDT", "BTCUSDT")


def test_scan_params_validation_and_config_defaults() -> None:
    raw = yaml.safe_load((REPO / "config" / "backtest_policy.yaml").read_text())["scan"]["value"]
    assert ScanParams.from_mapping(raw) == ScanParams()
    with pytest.raises(ValueError, match="alpha"):
        ScanParams(alpha=0.0)
    with pytest.raises(ValueError, match="min_bars"):
        ScanParams(min_bars=10)
    with pytest.raises(ValueError, match="half_life"):
        ScanParams(half_life_min_bars=10, half_life_max_bars=5)
    with pytest.raises(ValueError, match="hurst"):
        ScanParams(min_bars=100, hurst_max_lag=60)
    with pytest.raises(ValueError, match="unknown keys"):
        ScanParams.from_mapping({"alpah": 0.1})
    with pytest.raises(ValueError, match="not a number"):
        ScanParams.from_mapping({"alpha": "x"})


# ----------------------------------------------------------------------------- the scan


def _walks(seed: int, n: int, names: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame(3.0 + np.cumsum(rng.normal(0, 0.01, (n, len(names))), axis=0), idx, names)


def test_scan_rows_equal_statsmodels_on_each_pairs_common_bars() -> None:
    wide = _walks(13, 700, ["AAA", "BBB", "CCC"])
    a, b = _cointegrated(14, 700, ar=(1.1, -0.3))
    wide["PA"], wide["PB"] = a, b
    wide.iloc[:60, 0] = np.nan  # AAA starts later
    wide.iloc[[100, 101, 500], 3] = np.nan  # holes in PA: inner join, no fill
    res = scan_pairs(wide, ScanParams(min_bars=200, hurst_max_lag=90), None)
    assert list(res.columns) == list(CANDIDATE_COLUMNS)
    assert len(res) == 10
    lags_checked: list[int] = []
    for rec in res.to_dict("records"):
        row = dict(rec)
        sub = wide[[row["leg_A"], row["leg_B"]]].dropna()
        x, y = sub.iloc[:, 0].to_numpy(), sub.iloc[:, 1].to_numpy()
        assert row["n_bars"] == len(sub)
        assert (row["start"], row["end"]) == (sub.index[0], sub.index[-1])
        s_ab, p_ab = _coint(x, y)
        _, p_ba = _coint(y, x)
        assert row["eg_stat_ab"] == pytest.approx(s_ab, rel=1e-10)
        assert row["eg_pvalue_ab"] == pytest.approx(p_ab, rel=1e-9, abs=1e-12)
        assert row["eg_pvalue_ba"] == pytest.approx(p_ba, rel=1e-9, abs=1e-12)
        assert row["eg_pvalue"] == max(row["eg_pvalue_ab"], row["eg_pvalue_ba"])
        j = coint_johansen(np.column_stack([x, y]), 0, 1)
        assert row["johansen_trace"] == pytest.approx(j.lr1[0], rel=1e-9)
        fit = sm.OLS(x, sm.add_constant(y)).fit()
        assert row["hedge_ratio"] == pytest.approx(fit.params[1], rel=1e-10)
        stat, p, lag, _, _ = _adf(fit.resid, "c")
        assert row["adf_stat"] == pytest.approx(stat, rel=1e-9)
        assert row["adf_lag"] == lag
        assert row["adf_pvalue"] == pytest.approx(p, rel=1e-8, abs=1e-12)
        assert row["spread_sigma_bps"] == pytest.approx(np.std(fit.resid, ddof=1) * 1e4, rel=1e-10)
        r = np.diff(sub.to_numpy(), axis=0)
        assert row["corr_returns"] == pytest.approx(np.corrcoef(r.T)[0, 1], rel=1e-10)
        crossings = np.count_nonzero(np.diff(np.sign(fit.resid)) != 0)
        years = (sub.index[-1] - sub.index[0]) / pd.Timedelta(days=365.25)
        assert row["zero_crossings_per_year"] == pytest.approx(crossings / years, rel=1e-12)
        lags_checked.append(int(row["eg_lag_ab"]))
    assert max(lags_checked) > 0
    q = multipletests(res.sort_values("pair_id")["eg_pvalue"], method="fdr_bh")[1]
    assert np.allclose(res.sort_values("pair_id")["qvalue"], q, rtol=0, atol=1e-15)
    assert res["pair_id"].iloc[0] == "PA_PB"
    assert list(res["rank"]) == list(range(1, 11))


def test_planted_pair_selected_and_noise_not() -> None:
    wide = _walks(15, 1500, [f"N{i}" for i in range(8)])
    a, b = _cointegrated(16, 1500, ar=(0.9,), beta=1.1)
    wide["PLANTA"], wide["PLANTB"] = a, b
    cm = CostModel.from_mapping(
        {"defaults": {"spread_bps": 1, "slippage_bps": 1, "commission_bps": 1}}, wide.columns
    )
    res = scan_pairs(wide, ScanParams(min_bars=300, cost_multiple=1.0), cm).set_index("pair_id")
    planted = res.loc["PLANTA_PLANTB"]
    assert bool(planted.selected)
    assert planted.hedge_ratio == pytest.approx(1.1, abs=0.05)
    assert planted.half_life_bars == pytest.approx(math.log(2) / -math.log(0.9), rel=0.3)
    assert planted.hurst < 0.5
    assert bool(planted.johansen_reject)
    assert res["selected"].sum() == 1
    assert planted.round_trip_cost_bps == pytest.approx(2 * (2.5 + 1.1 * 2.5), rel=0.05)


def test_false_selection_rate_on_pure_noise_at_most_alpha() -> None:
    """30 independent random walks (435 null pairs): raw EG rejections ≈ 5 % (size of the test,
    both orderings must reject), and BH selects nothing (FWER under the global null ≤ α)."""
    wide = _walks(17, 600, [f"W{i:02d}" for i in range(30)])
    res = scan_pairs(wide, ScanParams(min_bars=250), None)
    raw = float(np.mean(res["eg_pvalue"] <= 0.05))
    assert raw <= 0.08
    assert int(res["selected"].sum()) == 0
    assert (res["qvalue"] >= res["eg_pvalue"] - 1e-15).all()


def test_rows_that_cannot_be_tested_carry_a_reason() -> None:
    wide = _walks(18, 400, ["AAA", "BBB", "FLAT", "SHORT"])
    wide["FLAT"] = 2.0
    wide.iloc[:300, 3] = np.nan
    b = wide["BBB"].to_numpy()
    wide["TWIN"] = 0.5 * b + 1.0
    res = scan_pairs(wide, ScanParams(min_bars=200, hurst_max_lag=50), None).set_index("pair_id")
    why = {str(k): str(v) for k, v in res["reason"].items()}
    assert why["AAA_SHORT"] == "too few common bars (100 < min_bars 200)"
    assert why["AAA_FLAT"] == "leg B is constant over the formation window"
    assert why["FLAT_SHORT"].startswith("too few")
    assert "collinear" in why["BBB_TWIN"]
    assert why["AAA_BBB"] == ""
    flagged = res["reason"] != ""
    assert not res.loc[flagged, "selected"].any()
    assert res.loc[flagged, "qvalue"].isna().all()
    assert (res.loc[flagged, "failed_filters"] == "not tested").all()
    # the q-values of the remaining rows are BH over those rows only
    ok = res.loc[~flagged]
    assert np.allclose(ok["qvalue"], multipletests(ok["eg_pvalue"], method="fdr_bh")[1])


def test_scan_input_from_mapping_and_bad_input() -> None:
    wide = _walks(19, 400, ["AAA", "BBB"])
    from_map = scan_pairs({"AAA": wide["AAA"], "BBB": wide["BBB"].iloc[10:]}, ScanParams(), None)
    direct = scan_pairs(
        wide.assign(BBB=wide["BBB"].where(wide.index >= wide.index[10])), ScanParams(), None
    )
    pd.testing.assert_frame_equal(from_map, direct)
    with pytest.raises(ValueError, match="at least 2 symbols"):
        scan_pairs(wide[["AAA"]], ScanParams(), None)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        scan_pairs(wide.reset_index(drop=True), ScanParams(), None)
    with pytest.raises(ValueError, match="increasing"):
        scan_pairs(wide.iloc[::-1], ScanParams(), None)
    bad = wide.copy()
    bad.iloc[5, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        scan_pairs(bad, ScanParams(), None)
    with pytest.raises(ValueError, match="no costs"):
        scan_pairs(wide, ScanParams(), CostModel.from_mapping(COSTS, ["AAA"]))

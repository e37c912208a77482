"""KPIs (spec 004 §時系列CV・評価KPI 統合戦略のKPI, 採用判定) and the moving-block bootstrap.

Every KPI is checked against an independent pandas/numpy computation written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pairdesk.quant.metrics import (
    KPI_NAMES,
    KpiParams,
    adoption_check,
    annualised_return,
    calendar_days,
    calmar,
    compute_kpis,
    daily_equity,
    daily_equity_frame,
    daily_returns,
    drawdown_on_capital,
    e_per_trade,
    halt_rate,
    infer_bar_ns,
    max_drawdown,
    monthly_win_rate,
    pnl_sigma,
    sharpe,
    trades_per_year,
    win_rate,
)
from pairdesk.quant.stats import (
    bootstrap_kpi_samples,
    bootstrap_kpis,
    moving_block_bootstrap_indices,
)

H = 3_600_000_000_000
E0 = 100_000.0


def weekday_hours(start: str, days: int) -> pd.DatetimeIndex:
    idx = pd.date_range(start, periods=days * 24, freq="h", tz="UTC")
    return idx[idx.day_of_week < 5]


@pytest.fixture(scope="module")
def curve() -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray]:
    """~4 months of weekday hourly equity plus 60 random trades."""
    rng = np.random.default_rng(42)
    idx = weekday_hours("2024-01-01", 120)
    eq = E0 * np.exp(np.cumsum(rng.normal(5e-5, 2e-3, len(idx))))
    pnl = rng.normal(30.0, 400.0, 60)
    return idx, eq, pnl, pnl / E0


def pandas_daily(idx: pd.DatetimeIndex, eq: np.ndarray) -> pd.Series:
    s = pd.Series(eq, index=idx)
    return s.groupby(idx.date).last()


def test_daily_equity_and_returns_vs_pandas(curve: tuple) -> None:
    idx, eq, _, _ = curve
    ref = pandas_daily(idx, eq)
    got = daily_equity(idx, eq)
    assert list(got.index) == list(ref.index)
    np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy())
    assert all(d.weekday() < 5 for d in got.index)  # trading days only
    # returns on the initial capital: ΔE_d / E_0 (sizes do not compound)
    ref_r = pd.concat([pd.Series([E0]), pd.Series(ref.to_numpy())]).diff().iloc[1:] / E0
    np.testing.assert_allclose(daily_returns(idx, eq, E0).to_numpy(), ref_r.to_numpy(), rtol=1e-12)
    # int64 ns input gives the same thing
    np.testing.assert_array_equal(
        daily_equity(idx.as_unit("ns").asi8, eq).to_numpy(), ref.to_numpy()
    )


def test_daily_uses_bar_open_date() -> None:
    # the 23:00 bar closes at 00:00 of the next day but belongs to its open date
    idx = pd.DatetimeIndex(["2024-01-02 22:00", "2024-01-02 23:00", "2024-01-03 00:00"], tz="UTC")
    d = daily_equity(idx, [1.0, 2.0, 3.0])
    assert d.to_dict() == {
        pd.Timestamp("2024-01-02").date(): 2.0,
        pd.Timestamp("2024-01-03").date(): 3.0,
    }


def test_compute_kpis_vs_independent(curve: tuple) -> None:
    idx, eq, pnl, roc = curve
    k = compute_kpis(idx, eq, pnl, roc, initial_capital=E0, bar_ns=H)
    assert set(k) == set(KPI_NAMES)
    daily = pandas_daily(idx, eq).to_numpy()
    r = np.diff(np.r_[E0, daily]) / E0
    # Sharpe: numpy formula on ΔE/E0
    assert k["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    # MaxDD: brute force O(n²) over the daily curve starting from E0, in units of E0
    e = np.r_[E0, daily]
    brute = max((e[i] - e[j]) / E0 for j in range(len(e)) for i in range(j + 1))
    assert k["max_dd"] == pytest.approx(brute, rel=1e-12)
    # annualised return = mean daily return × P; simple over the calendar span
    days = ((idx[-1] + pd.Timedelta(hours=1)) - idx[0]).total_seconds() / 86400
    assert k["ann_return"] == pytest.approx(r.mean() * 252, rel=1e-12)
    assert k["ann_return_simple"] == pytest.approx((eq[-1] / E0 - 1) * 365.25 / days, rel=1e-12)
    assert k["calmar"] == pytest.approx(k["ann_return"] / brute, rel=1e-12)
    # monthly win rate: pandas month-end equity changes
    naive = idx.tz_localize(None)
    month_end = pd.Series(eq, index=naive).groupby(naive.to_period("M")).last().to_numpy()
    m_pnl = np.diff(np.r_[E0, month_end])
    assert k["monthly_win_rate"] == pytest.approx((m_pnl > 0).mean(), rel=1e-12)
    # trade statistics
    assert k["trades"] == 60
    assert k["trades_per_year"] == pytest.approx(60 * 365.25 / days, rel=1e-12)
    assert k["e_per_trade"] == pytest.approx(roc.mean(), rel=1e-12)
    assert k["win_rate"] == pytest.approx((pnl > 0).mean(), rel=1e-12)
    assert k["pnl_sigma"] == pytest.approx(np.std(pnl, ddof=1), rel=1e-12)
    # the single-KPI helpers agree
    assert sharpe(r) == pytest.approx(k["sharpe"], rel=1e-12)
    assert drawdown_on_capital(daily, E0) == pytest.approx(brute, rel=1e-12)
    # the peak-relative drawdown of a compounding curve stays available
    rel = max(1 - e[j] / e[i] for j in range(len(e)) for i in range(j + 1))
    assert max_drawdown(daily, E0) == pytest.approx(rel, rel=1e-12)
    assert annualised_return(E0, eq[-1], days) == pytest.approx(
        (eq[-1] / E0) ** (365.25 / days) - 1, rel=1e-12
    )
    assert annualised_return(E0, eq[-1], days, compound=False) == pytest.approx(
        k["ann_return_simple"], rel=1e-12
    )
    assert calmar(k["ann_return"], k["max_dd"]) == pytest.approx(k["calmar"], rel=1e-12)
    assert e_per_trade(roc) == pytest.approx(k["e_per_trade"], rel=1e-12)
    assert trades_per_year(60, days) == pytest.approx(k["trades_per_year"], rel=1e-12)
    assert win_rate(pnl) == k["win_rate"]
    assert pnl_sigma(pnl) == pytest.approx(k["pnl_sigma"], rel=1e-12)
    assert monthly_win_rate(idx, eq, E0) == k["monthly_win_rate"]
    assert calendar_days(idx) == pytest.approx(days, rel=1e-15)
    # periods per year is a parameter
    k365 = compute_kpis(
        idx, eq, pnl, roc, initial_capital=E0, params=KpiParams(periods_per_year=365)
    )
    assert k365["sharpe"] == pytest.approx(k["sharpe"] * math.sqrt(365 / 252), rel=1e-12)


def test_kpis_on_real_buy_and_hold(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, _ = metals_2024
    close = a["close"]
    when = pd.DatetimeIndex(close.index)
    eq = E0 * close.to_numpy() / close.iloc[0]
    k = compute_kpis(close.index, eq, [], [], initial_capital=E0)
    daily = close.groupby(when.date).last() / close.iloc[0] * E0
    r = pd.concat([pd.Series([E0]), pd.Series(daily.to_numpy())]).diff().iloc[1:] / E0
    assert k["sharpe"] == pytest.approx(r.mean() / r.std() * math.sqrt(252), rel=1e-10)
    dd = (pd.Series(np.r_[E0, daily.to_numpy()]).cummax().to_numpy()[1:] - daily) / E0
    assert k["max_dd"] == pytest.approx(dd.max(), rel=1e-10)
    assert k["trades"] == 0
    assert math.isnan(k["win_rate"])
    assert math.isnan(k["pnl_sigma"])
    assert infer_bar_ns(close.index) == H


def test_edge_cases() -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    k = compute_kpis(idx, [E0, E0, E0], [10.0], [1e-4], initial_capital=E0)
    assert math.isnan(k["sharpe"])  # one daily return
    assert k["max_dd"] == 0.0
    assert math.isnan(k["calmar"])
    assert math.isnan(k["pnl_sigma"])  # one trade
    assert annualised_return(E0, -5.0, 30.0) == -1.0
    assert math.isnan(sharpe([0.01, 0.01, 0.01]))
    assert halt_rate(10, 3) == 0.3
    assert math.isnan(halt_rate(0, 0))
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_kpis(idx[::-1], [1.0, 2.0, 3.0], [], [], initial_capital=E0)
    with pytest.raises(ValueError, match="initial_capital must be > 0"):
        compute_kpis(idx, [1.0, 2.0, 3.0], [], [], initial_capital=0.0)
    with pytest.raises(ValueError, match="same length"):
        compute_kpis(idx, [1.0, 2.0, 3.0], [1.0], [], initial_capital=E0)
    with pytest.raises(ValueError, match="at least 2 bars"):
        infer_bar_ns(idx[:1])


def test_ruined_curve_has_finite_kpis_with_the_right_sign() -> None:
    # 5 daily closes: +10 %, then down through zero to −100 % of E0, flat afterwards
    idx = pd.DatetimeIndex([f"2024-01-0{d} 12:00" for d in (1, 2, 3, 4, 5)], tz="UTC").append(
        pd.DatetimeIndex(["2024-01-05 13:00"], tz="UTC")
    )
    eq = np.array([1.1, 0.5, -0.2, 0.0, 0.0, 0.0]) * E0
    k = compute_kpis(idx, eq, [-E0], [-1.0], initial_capital=E0, bar_ns=H)
    r = np.array([0.1, -0.6, -0.7, 0.2, 0.0])  # ΔE/E0 by hand
    assert all(math.isfinite(k[n]) for n in ("sharpe", "ann_return", "max_dd", "calmar"))
    assert k["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert k["sharpe"] < 0
    assert k["ann_return"] == pytest.approx(-0.2 * 252, rel=1e-12)
    assert k["max_dd"] == pytest.approx(1.3, rel=1e-12)  # peak 1.1 E0 → trough −0.2 E0
    assert k["calmar"] == pytest.approx(-0.2 * 252 / 1.3, rel=1e-12)
    assert k["ann_return_simple"] < 0
    # the old compounding definition E_d/E_{d-1} − 1 would have flipped sign here
    with np.errstate(divide="ignore", invalid="ignore"):
        compounding = eq[[0, 1, 2, 3, 5]] / np.r_[E0, eq[[0, 1, 2, 3]]] - 1
    assert not np.isfinite(compounding).all()


@pytest.mark.parametrize(
    ("sharpe_", "dd", "tpy", "expected"),
    [
        (1.5, 0.08, 210.0, {"sharpe": True, "max_dd": True, "trades_per_year": True}),
        (1.2, 0.08, 210.0, {"sharpe": False, "max_dd": True, "trades_per_year": True}),
        (1.5, 0.12, 210.0, {"sharpe": True, "max_dd": False, "trades_per_year": True}),
        (1.5, 0.08, 150.0, {"sharpe": True, "max_dd": True, "trades_per_year": True}),
        (1.5, 0.08, 149.9, {"sharpe": True, "max_dd": True, "trades_per_year": False}),
        (float("nan"), 0.08, 210.0, {"sharpe": False, "max_dd": True, "trades_per_year": True}),
    ],
)
def test_adoption_check(sharpe_: float, dd: float, tpy: float, expected: dict) -> None:
    got = adoption_check({"sharpe": sharpe_, "max_dd": dd, "trades_per_year": tpy})
    assert got == {**expected, "passed": all(expected.values())}


def test_daily_equity_frame(curve: tuple) -> None:
    idx, eq, _, _ = curve
    f = daily_equity_frame(idx, eq, E0)
    assert list(f.columns) == ["date", "equity", "dd"]
    ref = pandas_daily(idx, eq)
    peak = pd.Series(np.r_[E0, ref.to_numpy()]).cummax().to_numpy()[1:]
    np.testing.assert_allclose(f["dd"].to_numpy(), (peak - ref.to_numpy()) / E0, rtol=1e-12)
    # without the initial capital: relative to the running peak
    g = daily_equity_frame(idx, eq)
    np.testing.assert_allclose(
        g["dd"].to_numpy(), 1 - ref.to_numpy() / ref.cummax().to_numpy(), rtol=1e-14
    )
    assert f["dd"].max() == pytest.approx(
        compute_kpis(idx, eq, [], [], initial_capital=E0)["max_dd"]
    )


# ------------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------------


def test_block_indices_structure() -> None:
    idx = moving_block_bootstrap_indices(95, block=20, n_samples=50, rng=np.random.default_rng(1))
    assert idx.shape == (50, 95)
    for row in idx:
        for b0 in range(0, 95, 20):
            blk = row[b0 : b0 + 20]
            np.testing.assert_array_equal(blk, blk[0] + np.arange(len(blk)))
            assert 0 <= blk[0] <= 95 - 20
    again = moving_block_bootstrap_indices(95, 20, 50, np.random.default_rng(1))
    np.testing.assert_array_equal(idx, again)
    with pytest.raises(ValueError, match=r"block must be an integer in 1\.\.n"):
        moving_block_bootstrap_indices(10, block=20, n_samples=5)


@pytest.fixture(scope="module")
def bars() -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    idx = weekday_hours("2024-01-01", 140)
    n = len(idx)
    bar_pnl = rng.normal(8.0, 150.0, n)
    exit_bar = np.sort(rng.choice(n, size=150, replace=False))
    tpnl = rng.normal(40.0, 300.0, 150)
    return idx, bar_pnl, exit_bar, tpnl, tpnl / E0


def test_bootstrap_equals_explicit_resampling(bars: tuple) -> None:
    idx, bar_pnl, exit_bar, tpnl, troc = bars
    n = len(idx)
    samples = bootstrap_kpi_samples(
        bar_pnl, idx, exit_bar, tpnl, troc, initial_capital=E0, bar_ns=H, n_samples=12, seed=3
    )
    rows = moving_block_bootstrap_indices(n, 20, 12, np.random.default_rng(3))
    for s, take in enumerate(rows):
        equity = E0 + np.cumsum(bar_pnl[take])
        members = [np.flatnonzero(exit_bar == src) for src in take]
        sel = np.concatenate(members)
        ref = compute_kpis(idx, equity, tpnl[sel], troc[sel], initial_capital=E0, bar_ns=H)
        np.testing.assert_allclose(
            samples[s], [ref[k] for k in KPI_NAMES], rtol=1e-9, equal_nan=True
        )


def test_bootstrap_ci_contains_point_and_is_deterministic(bars: tuple) -> None:
    idx, bar_pnl, exit_bar, tpnl, troc = bars
    point = compute_kpis(idx, E0 + np.cumsum(bar_pnl), tpnl, troc, initial_capital=E0, bar_ns=H)
    ci = bootstrap_kpis(bar_pnl, idx, exit_bar, tpnl, troc, initial_capital=E0, seed=42)
    assert set(ci) == set(KPI_NAMES)
    for name in ("ann_return", "ann_return_simple", "sharpe", "e_per_trade", "win_rate",
                 "trades_per_year", "pnl_sigma", "monthly_win_rate"):  # fmt: skip
        lo, hi = ci[name]
        assert lo <= point[name] <= hi, name
        assert lo < hi, name
    assert ci == bootstrap_kpis(bar_pnl, idx, exit_bar, tpnl, troc, initial_capital=E0, seed=42)
    other = bootstrap_kpis(bar_pnl, idx, exit_bar, tpnl, troc, initial_capital=E0, seed=43)
    assert other["sharpe"] != ci["sharpe"]
    # a 90% interval nests inside the 95% one
    ci90 = bootstrap_kpis(bar_pnl, idx, exit_bar, tpnl, troc, initial_capital=E0, seed=42, ci=0.9)
    assert ci["sharpe"][0] <= ci90["sharpe"][0] <= ci90["sharpe"][1] <= ci["sharpe"][1]


def test_bootstrap_full_size_real_curve(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    a, _ = metals_2024
    eq = E0 * a["close"].to_numpy() / a["close"].iloc[0]
    bar_pnl = np.diff(eq, prepend=E0)
    ci = bootstrap_kpis(bar_pnl, a.index, [], [], [], initial_capital=E0, n_samples=1000, seed=42)
    point = compute_kpis(a.index, eq, [], [], initial_capital=E0)
    lo, hi = ci["sharpe"]
    assert lo <= point["sharpe"] <= hi
    assert ci["trades"] == (0.0, 0.0)
    assert all(math.isnan(v) for v in ci["win_rate"])


def test_bootstrap_validation(bars: tuple) -> None:
    idx, bar_pnl, exit_bar, tpnl, troc = bars
    with pytest.raises(ValueError, match="trade_exit_bar must lie in"):
        bootstrap_kpis(bar_pnl, idx, exit_bar + len(idx), tpnl, troc, initial_capital=E0)
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_kpis(bar_pnl[:-1], idx, exit_bar, tpnl, troc, initial_capital=E0)
    with pytest.raises(ValueError, match="ci must be in"):
        bootstrap_kpis(bar_pnl, idx, exit_bar, tpnl, troc, initial_capital=E0, ci=1.0)


def test_observed_periods_per_year_counts_the_daily_returns_a_market_has() -> None:
    """Metals trade Sun 22:00Z → Fri 21:00Z: 6 UTC dates a week, so ≈ 6/7 × 365.25 daily returns a
    year; 24/7 crypto gives 365.25; annualising either by 252 would mis-state the Sharpe."""
    from pairdesk.quant.metrics import observed_periods_per_year

    hours = pd.date_range("2024-01-07 22:00", "2024-03-29 20:00", freq="h", tz="UTC")  # Sun → Fri
    wd, hr = hours.dayofweek, hours.hour
    open_ = ~((wd == 5) | ((wd == 6) & (hr < 22)) | ((wd == 4) & (hr >= 21)))
    metals = hours[open_]
    days = (metals[-1] + pd.Timedelta(hours=1) - metals[0]) / pd.Timedelta(days=1)
    n_dates = len(pd.unique(metals.normalize()))
    assert n_dates == 12 * 6  # 12 weeks x (Sun, Mon, Tue, Wed, Thu, Fri)
    assert observed_periods_per_year(metals) == pytest.approx(n_dates * 365.25 / days)
    assert 305 < observed_periods_per_year(metals) < 325  # 313 over long spans; edges add a little
    crypto = pd.date_range("2024-01-01", periods=24 * 70, freq="h", tz="UTC")
    assert observed_periods_per_year(crypto) == pytest.approx(365.25)

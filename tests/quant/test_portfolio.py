"""Portfolio backtest (spec 004 §backtest-assets-engine, §運用Runbook DD levels, docs/quant-contracts.md
§Portfolio backtest).

Hand-built scenarios with zero costs check shared capital, caps, margin refusals, every
drawdown level and ruin to the dollar; synthetic OU / random-walk pairs check the economics;
the N = 1 portfolio equals :func:`run_backtest`; look-ahead and KPIs are checked against
independent pandas computations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pairdesk.quant.backtest import BacktestParams, run_backtest
from pairdesk.quant.costs import CostModel, LegCosts, LegSpec
from pairdesk.quant.metrics import KpiParams
from pairdesk.quant.portfolio import (
    PORTFOLIO_ID,
    DDPolicy,
    PairInputs,
    PortfolioParams,
    grid_search_portfolio,
    run_portfolio,
)

H = 3_600_000_000_000
E0 = 100_000.0
START = pd.Timestamp("2024-01-08", tz="UTC").value  # a Monday
LEG_A = LegSpec("AAA", 0.01, 1.0, 0.01, 0.01)
LEG_B = LegSpec("BBB", 0.01, 1.0, 0.01, 0.01)
FREE = CostModel(legs={"AAA": LegCosts(0.0, 0.0, 0.0), "BBB": LegCosts(0.0, 0.0, 0.0)})
COSTLY = CostModel(
    legs={"AAA": LegCosts(2.0, 1.0, 1.0, -3.0, 1.0), "BBB": LegCosts(3.0, 2.0, 1.0, 0.5, -2.0)}
)
NO_CAPS = PortfolioParams(math.inf, math.inf, 0.5, None)


def flat_pair(pid: str, n: int, start: int = 0, bar: int = H, **kw: Any) -> dict[str, Any]:
    """A=100, B=50, β=1, z=0 (no signal), risk 0.1, everything tradable."""
    d: dict[str, Any] = {
        "pair_id": pid,
        "ts": START + bar * np.arange(start, start + n, dtype=np.int64),
        "close_a": np.full(n, 100.0),
        "close_b": np.full(n, 50.0),
        "z": np.zeros(n),
        "beta": np.ones(n),
        "return_prob": np.full(n, np.nan),
        "risk_score": np.full(n, 0.1),
        "tradable": np.ones(n, dtype=bool),
        "leg_a": LEG_A,
        "leg_b": LEG_B,
    }
    d.update(kw)
    return d


def signal(d: dict[str, Any], t: int, z: float = 2.5) -> None:
    """AI1 candidate at bar t with z held at ``z`` from t on."""
    d["z"][t:] = z
    d["return_prob"][t] = 0.9


def pairs_of(*ds: dict[str, Any]) -> list[PairInputs]:
    return [PairInputs(**d) for d in ds]


# ------------------------------------------------------------------------------------------------
# shared capital, caps, margin
# ------------------------------------------------------------------------------------------------


def test_two_pairs_share_one_capital_account_hand_checked() -> None:
    p1 = flat_pair("P1", 12)
    p2 = flat_pair("P2", 9, start=3)  # starts 3 bars later: the clock is the union
    signal(p1, 1)  # short spread: sell 1000 A @100, buy 2000 B @50, filled at bar 2
    p1["close_a"][4:] = 98.0  # +2 000 USD
    p1["z"][6:] = 0.0  # exit signal at bar 6, fill at bar 7 (A=98)
    signal(p2, 1, z=-3.0)  # P2 local bar 1 = clock bar 4: long spread, filled at local 2
    p2["close_b"][4:] = 49.0  # long spread = short B: +2 000 USD from local bar 4
    res = run_portfolio(pairs_of(p1, p2), FREE, BacktestParams(), NO_CAPS)
    assert len(res.ts) == 12
    assert res.ts[0] == START
    assert res.ts[-1] == START + 11 * H
    eq = res.equity
    # by hand: P1 +2000 from clock bar 4, P2 +2000 from clock bar 7 (its local bar 4)
    expected = np.full(12, E0)
    expected[4:] += 2000.0
    expected[7:] += 2000.0
    np.testing.assert_array_equal(eq, expected)
    tr = res.trades.set_index("pair_id")
    assert tr.loc["P1", "pnl"] == 2000.0
    assert tr.loc["P2", "pnl"] == 2000.0
    assert tr.loc["P1", "qty_a"] == -1000.0
    assert tr.loc["P1", "qty_b"] == 2000.0
    assert tr.loc["P2", "qty_a"] == 1000.0
    assert tr.loc["P2", "qty_b"] == -2000.0
    # P2's bars and timestamps are its own: local fill bar 2 = clock bar 5
    assert tr.loc["P2", "bar_entry"] == 2
    assert tr.loc["P2", "timestamp_entry"] == pd.Timestamp(START + 6 * H, tz="UTC")
    assert tr.loc["P2", "exit_reason"] == "end_of_data"
    assert tr.loc["P1", "exit_reason"] == "z_exit"
    np.testing.assert_array_equal(res.position("P2"), [0, 0, 1, 1, 1, 1, 1, 1, 0])
    # per-pair daily PnL and the portfolio row of the summary
    assert res.pair_daily_pnl.iloc[-1].to_dict() == {"P1": 2000.0, "P2": 2000.0}
    s = res.summary()
    assert list(s["pair_id"]) == [PORTFOLIO_ID, "P1", "P2"]
    assert s.loc[0, "trades"] == 2
    assert s.loc[1, "trades"] == 1


def test_the_same_pairs_alone_add_up_when_nothing_binds() -> None:
    rng = np.random.default_rng(11)
    ds = []
    for k in range(3):
        d = flat_pair(f"P{k}", 300)
        d["close_a"] = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.003, 300))), 2)
        d["close_b"] = np.round(50 * np.exp(np.cumsum(rng.normal(0, 0.003, 300))), 2)
        d["z"] = rng.normal(0, 1.5, 300)
        d["return_prob"] = np.where(np.abs(d["z"]) > 2, 0.9, np.nan)
        ds.append(d)
    res = run_portfolio(pairs_of(*ds), COSTLY, BacktestParams(), NO_CAPS)
    alone = [run_portfolio(pairs_of(d), COSTLY, BacktestParams(), NO_CAPS) for d in ds]
    np.testing.assert_allclose(res.equity - E0, sum(a.equity - E0 for a in alone), atol=1e-8)
    assert len(res.trades) == sum(len(a.trades) for a in alone) > 10


def test_margin_and_gross_caps_refuse_entries_and_pair_cap_scales() -> None:
    p1, p2 = flat_pair("P1", 8, margin_requirement=0.5), flat_pair("P2", 8, margin_requirement=0.5)
    signal(p1, 1)
    signal(p2, 1)
    # each position: 100 000 A + 100 000 B gross = 200 000; margin 0.5 → 100 000 = all equity
    res = run_portfolio(
        pairs_of(p1, p2), FREE, BacktestParams(), PortfolioParams(10, 10, 0.1, None)
    )
    assert res.counters["P1"].entries == 1
    assert res.counters["P1"].refused == 0
    assert res.counters["P2"].refused == 1
    assert res.counters["P2"].entries == 0
    assert res.counters[PORTFOLIO_ID].refused == 1
    assert list(res.trades["pair_id"]) == ["P1"]
    # total gross cap 3 × E0: the second 200 000 position does not fit next to the first
    p1["margin_requirement"] = p2["margin_requirement"] = 0.0
    res = run_portfolio(pairs_of(p1, p2), FREE, BacktestParams(), PortfolioParams(10, 3, 0.5, None))
    assert (res.counters["P1"].entries, res.counters["P2"].refused) == (1, 1)
    # per-pair cap 1 × E0: leg-A target 100 000 / (2 · 1.01) = 49 504.95 → 495.05 lots → 495.05
    res = run_portfolio(pairs_of(p1), FREE, BacktestParams(), PortfolioParams(1.0, 10, 0.5, None))
    assert res.trades["qty_a"].iloc[0] == pytest.approx(-495.05)
    assert abs(res.trades["qty_a"].iloc[0]) * 100 + res.trades["qty_b"].iloc[0] * 50 <= E0


# ------------------------------------------------------------------------------------------------
# drawdown policy
# ------------------------------------------------------------------------------------------------


def test_portfolio_dd_warn_halt_flatten_each_once() -> None:
    n = 16
    p1, p2 = flat_pair("P1", n), flat_pair("P2", n)
    signal(p1, 1)  # short 1000 A from bar 2 at 100: each +1 in A costs 1 % of E0
    a = np.full(n, 100.0)
    a[3], a[4:7], a[7:10], a[10:] = 104.0, 108.5, 110.5, 112.5
    p1["close_a"] = a  # dd 0.04, 0.085 (warn, bar 4), 0.105 (halt, bar 7), 0.125 (flatten, bar 10)
    signal(p2, 4)  # at the warn bar: sized × 0.5
    p2["z"][6:] = 0.0  # P2 exits (signal 6, fill 7) — exits continue under halt
    signal(p2, 8)  # halt: blocked
    signal(p2, 12)  # after flatten, dd still ≥ warn: blocked
    pf = PortfolioParams(math.inf, math.inf, 0.5, DDPolicy(pair_level=False))
    res = run_portfolio(pairs_of(p1, p2), FREE, BacktestParams(), pf)
    ev = res.dd_events
    assert list(ev["level"]) == ["warn", "halt", "flatten"]
    assert (ev["scope"] == PORTFOLIO_ID).all()
    np.testing.assert_allclose(ev["dd"], [0.085, 0.105, 0.125], rtol=1e-12)
    assert list(ev["ts"]) == [pd.Timestamp(START + (b + 1) * H, tz="UTC") for b in (4, 7, 10)]
    tr = res.trades.set_index("pair_id")
    assert tr.loc["P2", "qty_a"] == -500.0  # half of 1000 lots
    assert tr.loc["P2", "bar_exit"] == 7
    assert tr.loc["P1", "exit_reason"] == "dd_flatten"
    assert (tr.loc["P1", "bar_signal_exit"], tr.loc["P1", "bar_exit"]) == (10, 11)
    assert tr.loc["P1", "pnl"] == -12_500.0
    assert res.equity[-1] == E0 - 12_500.0
    c2 = res.counters["P2"]
    assert (c2.entries, c2.scaled, c2.blocked) == (1, 1, 2)
    assert not res.ruined


def test_pair_dd_rule_uses_sigma_of_the_pairs_daily_pnl() -> None:
    bar = 4 * H  # 6 bars a day
    n = 6 * 12
    d = flat_pair("P1", n, bar=bar)
    signal(d, 1)
    # wiggle A by ±0.2 a day for 8 days (daily PnL ±200 USD), then lose 5 a bar on day 10
    a = np.full(n, 100.0)
    for day in range(1, 9):
        a[6 * day : 6 * day + 6] = 100.0 + (0.2 if day % 2 else -0.2)
    a[54:] = 100.0 + 5.0 * np.arange(1, n - 54 + 1)
    d["close_a"] = a
    pol = DDPolicy(dd_warn=0.5, dd_halt=0.6, dd_flatten=0.7, pair_sigma_min_days=5)
    res = run_portfolio(
        pairs_of(d), FREE, BacktestParams(M=1000), PortfolioParams(math.inf, math.inf, 0.5, pol)
    )
    ev = res.dd_events
    assert (ev["scope"] == "P1").all()
    assert list(ev["level"])[-1] == "flatten"
    tr = res.trades.iloc[0]
    assert tr["exit_reason"] == "dd_flatten_pair"
    # σ of the pair's daily PnL over its active days, by pandas, as a fraction of E0
    first = ev.iloc[0]
    day = first["ts"] - pd.Timedelta(bar)  # the bar's open time gives its trading day
    daily = res.pair_daily_pnl["P1"]
    dp = daily.diff().fillna(daily.iloc[0])
    before = dp[[dd < day.date() for dd in dp.index]]
    active = before[before != 0.0].iloc[-60:]
    assert first["sigma"] == pytest.approx(active.std(ddof=1) / E0, rel=1e-12)
    assert first["dd"] >= 2.5 * first["sigma"]


# ------------------------------------------------------------------------------------------------
# ruin
# ------------------------------------------------------------------------------------------------


def test_ruin_liquidates_and_kpis_stay_finite_and_correct() -> None:
    bar = 4 * H
    n = 36  # 6 days of 6 bars
    d = flat_pair("P1", n, bar=bar, margin_requirement=0.05)
    signal(d, 1)  # short 1000 A @100 filled at bar 2, long 2000 B @50
    a = np.full(n, 100.0)
    a[12:18] = 150.0  # day 3: equity 50 000
    a[18:] = 200.0  # day 4, first bar: equity 0 <= 0.5 × margin (0.05 × 300 000) → ruin
    d["close_a"] = a
    res = run_portfolio(pairs_of(d), FREE, BacktestParams(), PortfolioParams(10, 20, 0.5, None))
    assert res.ruined
    assert res.ruin_ts == pd.Timestamp(START + 19 * bar, tz="UTC")
    tr = res.trades.iloc[0]
    assert (tr["exit_reason"], tr["pnl"], tr["bar_exit"]) == ("ruin", -E0, 18)
    expected = np.r_[np.full(12, E0), np.full(6, 50_000.0), np.zeros(18)]
    np.testing.assert_array_equal(res.equity, expected)
    k = res.kpis(KpiParams(periods_per_year=252))
    r = np.array([0.0, 0.0, -0.5, -0.5, 0.0, 0.0])  # ΔE/E0 per day, by hand
    assert k["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert k["sharpe"] < 0
    assert k["ann_return"] == pytest.approx(-252 / 6, rel=1e-12)
    assert k["max_dd"] == 1.0
    assert k["calmar"] == pytest.approx(-252 / 6, rel=1e-12)
    assert all(math.isfinite(v) for v in k.values() if not math.isnan(v))  # no ±inf
    assert math.isfinite(k["win_rate"])
    # single-pair run_backtest with stop_at_ruin: ruin at equity <= 0
    single = run_backtest(
        d["ts"], d["close_a"], d["close_b"], d["z"], d["beta"], d["return_prob"],
        d["risk_score"], d["tradable"], (LEG_A, LEG_B), FREE, stop_at_ruin=True,
    )  # fmt: skip
    assert single.ruined
    assert single.ruin_bar == 18
    np.testing.assert_array_equal(single.equity, expected)
    assert single.kpis(KpiParams(periods_per_year=252))["sharpe"] == pytest.approx(k["sharpe"])
    # without the stop (run_backtest's default) equity runs below zero; KPIs stay finite
    a2 = a.copy()
    a2[24:] = 250.0  # day 5: equity −50 000
    free_run = run_backtest(
        d["ts"], a2, d["close_b"], d["z"], d["beta"], d["return_prob"], d["risk_score"],
        d["tradable"], (LEG_A, LEG_B), FREE,
    )  # fmt: skip
    assert not free_run.ruined
    assert free_run.equity[-1] == -50_000.0
    assert free_run.trades["exit_reason"].iloc[0] == "end_of_data"
    k2 = free_run.kpis(KpiParams(periods_per_year=252))
    r2 = np.array([0.0, 0.0, -0.5, -0.5, -0.5, 0.0])
    assert k2["sharpe"] == pytest.approx(r2.mean() / r2.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert k2["sharpe"] < 0
    assert k2["max_dd"] == 1.5


# ------------------------------------------------------------------------------------------------
# N = 1, look-ahead, KPIs, grid
# ------------------------------------------------------------------------------------------------


def ou_pair(pid: str, n: int, seed: int, phi: float = 0.97, start: int = 0) -> dict[str, Any]:
    """Log spread s = ln A − ln B an AR(1) (OU) with coefficient ``phi`` (1.0 = random walk);
    z = the causal rolling z-score (200 bars) of s; AI1 candidate when |z| ≥ 2."""
    rng = np.random.default_rng(seed)
    lb = np.log(50.0) + np.cumsum(rng.normal(0, 0.002, n))
    s = np.zeros(n)
    eps = rng.normal(0, 0.002, n)
    for i in range(1, n):
        s[i] = phi * s[i - 1] + eps[i]
    a = np.round(np.exp(np.log(100.0) + s + lb - np.log(50.0)), 2)
    b = np.round(np.exp(lb), 2)
    spread = pd.Series(np.log(a) - np.log(b))
    z = ((spread - spread.rolling(200).mean()) / spread.rolling(200).std()).to_numpy()
    d = flat_pair(pid, n, start=start)
    d.update(close_a=a, close_b=b, z=z, return_prob=np.where(np.abs(z) >= 2.0, 0.9, np.nan))
    return d


@pytest.fixture(scope="module")
def four_pairs() -> list[PairInputs]:
    return pairs_of(*(ou_pair(f"P{k}", 3000 - 300 * k, 20 + k, start=100 * k) for k in range(4)))


def test_n1_portfolio_equals_run_backtest_exactly() -> None:
    d = ou_pair("P1", 4000, 7)
    prm = BacktestParams(theta1=0.5, theta2=0.5, latency_bars=1)
    single = run_backtest(
        d["ts"], d["close_a"], d["close_b"], d["z"], d["beta"], d["return_prob"],
        d["risk_score"], d["tradable"], (LEG_A, LEG_B), COSTLY, prm,
    )  # fmt: skip
    # defaults that do not bind (caps wide, no margin, DD thresholds never reached)
    pol = DDPolicy(dd_warn=0.9, dd_halt=0.95, dd_flatten=0.99, pair_level=False)
    for pf in (PortfolioParams.unconstrained(), PortfolioParams(100, 100, 0.5, pol)):
        res = run_portfolio(pairs_of(d), COSTLY, prm, pf)
        np.testing.assert_array_equal(res.equity, single.equity)
        pd.testing.assert_frame_equal(
            res.trades.drop(columns="pair_id"), single.trades.drop(columns="pair_id")
        )
        np.testing.assert_array_equal(res.position("P1"), single.position)
        assert res.counters["P1"] == single.counters
    assert len(single.trades) > 20


def test_look_ahead_perturbing_after_t(four_pairs: list[PairInputs]) -> None:
    prm = BacktestParams()
    pf = PortfolioParams(3.0, 6.0, 0.5, DDPolicy(dd_warn=0.01, dd_halt=0.02, dd_flatten=0.03))
    base = run_portfolio(four_pairs, COSTLY, prm, pf)
    cut_ts = START + 1500 * H
    rng = np.random.default_rng(5)
    pert = []
    for p in four_pairs:
        late = np.asarray(p.ts) >= cut_ts
        m = int(late.sum())
        ca = np.array(p.close_a, copy=True)
        ca[late] *= rng.uniform(0.9, 1.1, m)
        z = np.array(p.z, copy=True)
        z[late] = rng.normal(0, 3, m)
        prob = np.array(p.return_prob, copy=True)
        prob[late] = np.where(rng.uniform(size=m) < 0.5, 0.9, np.nan)
        pert.append(PairInputs(**{**p.__dict__, "close_a": ca, "z": z, "return_prob": prob}))
    res = run_portfolio(pert, COSTLY, prm, pf)
    cut = int(np.searchsorted(base.ts, cut_ts))
    np.testing.assert_array_equal(base.equity[:cut], res.equity[:cut])
    t_cut = pd.Timestamp(cut_ts, tz="UTC")
    b0 = base.trades[base.trades["timestamp_exit"] <= t_cut].reset_index(drop=True)
    b1 = res.trades[res.trades["timestamp_exit"] <= t_cut].reset_index(drop=True)
    assert len(b0) > 10
    pd.testing.assert_frame_equal(b0, b1)
    ev0 = base.dd_events[base.dd_events["ts"] <= t_cut].reset_index(drop=True)
    ev1 = res.dd_events[res.dd_events["ts"] <= t_cut].reset_index(drop=True)
    assert len(ev0) > 0
    pd.testing.assert_frame_equal(ev0, ev1)
    assert not np.array_equal(base.equity[cut:], res.equity[cut:])


def test_portfolio_kpis_vs_pandas(four_pairs: list[PairInputs]) -> None:
    res = run_portfolio(four_pairs, COSTLY, BacktestParams(), PortfolioParams(3, 10, 0.5, None))
    idx = pd.to_datetime(res.ts, utc=True)
    daily = pd.Series(res.equity, index=idx).groupby(idx.date).last()
    r = pd.concat([pd.Series([E0]), pd.Series(daily.to_numpy())]).diff().iloc[1:] / E0
    k = res.kpis(KpiParams(periods_per_year=365.0))
    assert k["sharpe"] == pytest.approx(r.mean() / r.std() * math.sqrt(365), rel=1e-10)
    assert k["ann_return"] == pytest.approx(r.mean() * 365, rel=1e-10)
    peak = pd.Series(np.r_[E0, daily.to_numpy()]).cummax().to_numpy()[1:]
    assert k["max_dd"] == pytest.approx(((peak - daily.to_numpy()) / E0).max(), rel=1e-10)
    assert k["trades"] == len(res.trades) > 20
    # accounting: per-pair day-end PnL adds up to the portfolio equity; all closed at the end
    np.testing.assert_allclose(
        res.pair_daily_pnl.sum(axis=1).to_numpy() + E0, daily.to_numpy(), rtol=1e-12
    )
    by_pair = res.trades.groupby("pair_id")["pnl"].sum()
    np.testing.assert_allclose(res.pair_daily_pnl.iloc[-1][by_pair.index], by_pair, rtol=1e-10)
    assert res.equity[-1] == pytest.approx(E0 + res.trades["pnl"].sum(), rel=1e-12)
    # per-pair diagnostics: E0 + the pair's daily PnL
    pk = res.pair_kpis("P0", KpiParams(periods_per_year=365.0))
    d0 = res.pair_daily_pnl["P0"]
    r0 = pd.concat([pd.Series([0.0]), pd.Series(d0.to_numpy())]).diff().iloc[1:] / E0
    assert pk["sharpe"] == pytest.approx(r0.mean() / r0.std() * math.sqrt(365), rel=1e-10)
    assert pk["trades"] == (res.trades["pair_id"] == "P0").sum()


def test_grid_search_portfolio_equals_run_portfolio(four_pairs: list[PairInputs]) -> None:
    pf = PortfolioParams(3, 10, 0.5, DDPolicy())
    g1, g2 = np.array([0.5, 0.95]), np.array([0.05, 0.5])
    grid = grid_search_portfolio(four_pairs, COSTLY, BacktestParams(), g1, g2, pf)
    for i, t1 in enumerate(g1):
        for j, t2 in enumerate(g2):
            k = run_portfolio(four_pairs, COSTLY, BacktestParams(theta1=t1, theta2=t2), pf).kpis()
            for name, v in k.items():
                np.testing.assert_allclose(grid[i, j][name], v, rtol=1e-12, equal_nan=True)
    assert grid["trades"][0, 1] > 0
    assert grid["trades"][1, 1] == 0
    assert grid["trades"][0, 0] == 0


# ------------------------------------------------------------------------------------------------
# economics
# ------------------------------------------------------------------------------------------------


def gross_edge(phi: float) -> tuple[float, float, int]:
    pairs = pairs_of(*(ou_pair(f"P{k}", 6000, 100 + k, phi=phi) for k in range(6)))
    res = run_portfolio(pairs, FREE, BacktestParams(), NO_CAPS)
    g = res.trades["pnl_gross"].to_numpy()
    return float(g.mean()), float(g.std(ddof=1) / math.sqrt(len(g))), len(g)


def test_planted_mean_reversion_trades_profitably_before_costs() -> None:
    mean, se, n = gross_edge(0.97)
    assert n > 100
    assert mean / se > 4.0


def test_pure_noise_has_no_gross_edge() -> None:
    mean, se, n = gross_edge(1.0)  # the log spread is a random walk
    assert n > 100
    assert abs(mean / se) < 3.0


# ------------------------------------------------------------------------------------------------
# parameters and errors
# ------------------------------------------------------------------------------------------------


def test_params_from_policy_and_validation() -> None:
    bt = {"portfolio": {"value": {"pair_gross_cap": 2.0, "total_gross_cap": 8.0}}}
    dd = {"dd_warn_portfolio": {"value": 0.05}, "leverage_scale_warn": {"value": 0.25}}
    pf = PortfolioParams.from_policy(bt, dd)
    assert (pf.pair_gross_cap, pf.total_gross_cap) == (2.0, 8.0)
    assert pf.dd_policy == DDPolicy(dd_warn=0.05, leverage_scale_warn=0.25)
    with pytest.raises(ValueError, match="unknown keys"):
        PortfolioParams.from_policy({"portfolio": {"value": {"caps": 1}}})
    with pytest.raises(ValueError, match="dd_warn < dd_halt"):
        DDPolicy(dd_warn=0.2)
    with pytest.raises(ValueError, match="leverage_scale_warn"):
        DDPolicy(leverage_scale_warn=0.0)
    with pytest.raises(ValueError, match="maintenance_margin_fraction"):
        PortfolioParams(maintenance_margin_fraction=1.5)
    d = flat_pair("P1", 5)
    with pytest.raises(ValueError, match="at least one pair"):
        run_portfolio([], FREE)
    with pytest.raises(ValueError, match="unique"):
        run_portfolio(pairs_of(d, d), FREE)
    with pytest.raises(ValueError, match="pair P2: z must have shape"):
        run_portfolio(pairs_of(d, flat_pair("P2", 5, z=np.zeros(4))), FREE)
    bad = flat_pair("P2", 5)
    bad["close_b"][2] = np.nan
    with pytest.raises(ValueError, match="pair P2: close_b must be finite"):
        run_portfolio(pairs_of(d, bad), FREE)
    with pytest.raises(ValueError, match="margin_requirement must be >= 0"):
        run_portfolio(pairs_of(flat_pair("P1", 5, margin_requirement=-1.0)), FREE)
    with pytest.raises(ValueError, match="theta grids"):
        grid_search_portfolio(pairs_of(d), FREE, None, [], [0.3])

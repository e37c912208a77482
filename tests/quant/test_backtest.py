"""Backtest engine rules (spec 004 §backtest-assets-engine 仕様 v1, §閾値最適化).

Hand-built 30-bar scenarios with zero costs check timing and exit rules exactly; the shipped
metals data check look-ahead, accounting identities and that the grid search equals
``run_backtest`` cell by cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pairdesk.quant.backtest import (
    GRID_FIELDS,
    BacktestCounters,
    BacktestParams,
    BacktestResult,
    ThetaObjectiveParams,
    grid_search,
    run_backtest,
    theta_grid,
)
from pairdesk.quant.costs import CostModel, LegCosts, LegSpec, legs_from_universe, round_to_tick
from pairdesk.quant.metrics import KPI_NAMES
from pairdesk.quant.rule import PairBook, RuleBar, RuleGate

REPO = Path(__file__).resolve().parents[2]
H = 3_600_000_000_000
E0 = 100_000.0
LEG_A = LegSpec("AAA", 0.01, 1.0, 0.01, 0.01)
LEG_B = LegSpec("BBB", 0.01, 1.0, 0.01, 0.01)
FREE = CostModel(legs={"AAA": LegCosts(0.0, 0.0, 0.0), "BBB": LegCosts(0.0, 0.0, 0.0)})


def scenario(n: int = 30) -> dict[str, np.ndarray]:
    """Hourly bars from Mon 2024-01-08 00:00 UTC, prices on the 0.01 grid, no signals."""
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2024-01-08", tz="UTC").value
    return {
        "ts": start + H * np.arange(n, dtype=np.int64),
        "close_a": np.round(100 + np.cumsum(rng.normal(0, 0.5, n)), 2),
        "close_b": np.round(50 + np.cumsum(rng.normal(0, 0.3, n)), 2),
        "z": np.zeros(n),
        "beta": np.ones(n),
        "return_prob": np.full(n, np.nan),
        "risk_score": np.full(n, 0.10),
        "tradable": np.ones(n, dtype=bool),
    }


def run(sc: dict[str, np.ndarray], costs: CostModel = FREE, **kw: Any) -> BacktestResult:
    risk_label = kw.pop("risk_label", None)
    return run_backtest(
        sc["ts"],
        sc["close_a"],
        sc["close_b"],
        sc["z"],
        sc["beta"],
        sc["return_prob"],
        sc["risk_score"],
        sc["tradable"],
        (LEG_A, LEG_B),
        costs,
        BacktestParams(**kw),
        bar_ns=H,
        risk_label=risk_label,
    )


def with_signal(sc: dict[str, np.ndarray], t: int, z: float = 2.5, prob: float = 0.8) -> None:
    """AI1 candidate at bar t; z stays at its level afterwards until changed."""
    sc["z"][t:] = z
    sc["return_prob"][t] = prob


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------


def test_entry_at_t_fills_at_close_of_t_plus_1_and_equity_marks() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["z"][12:] = 0.3  # exit signal at 12 -> fill at 13
    res = run(sc)
    assert len(res.trades) == 1
    tr = res.trades.iloc[0]
    ca, cb = sc["close_a"], sc["close_b"]
    assert (tr["bar_signal_entry"], tr["bar_entry"]) == (5, 6)
    assert (tr["bar_signal_exit"], tr["bar_exit"]) == (12, 13)
    assert tr["exit_reason"] == "z_exit"
    assert tr["side"] == "SHORT_SPREAD"
    # sized on the signal bar's close: 100k / close_a[5], β = 1 -> same notional on B
    qa = -round(E0 / ca[5], 2)
    qb = round(-qa * ca[5] / cb[5], 2)
    assert tr["qty_a"] == pytest.approx(qa, abs=1e-12)
    assert tr["qty_b"] == pytest.approx(qb, abs=1e-12)
    # zero costs: fills are the closes of the fill bars, not of the signal bars
    assert tr["price_a_entry"] == ca[6]
    assert tr["price_b_entry"] == cb[6]
    assert tr["price_a_exit"] == ca[13]
    assert tr["price_b_exit"] == cb[13]
    assert tr["timestamp_entry"] == pd.Timestamp(sc["ts"][6] + H, tz="UTC")
    assert tr["z_at_entry"] == 2.5
    assert tr["z_at_exit"] == 0.3
    pnl = qa * (ca[13] - ca[6]) + qb * (cb[13] - cb[6])
    assert tr["pnl"] == pytest.approx(pnl, abs=1e-9)
    assert tr["pnl_gross"] == pytest.approx(pnl, abs=1e-9)
    expected = np.full(30, E0)
    for t in range(6, 13):
        expected[t] = E0 + qa * (ca[t] - ca[6]) + qb * (cb[t] - cb[6])
    expected[13:] = E0 + pnl
    np.testing.assert_allclose(res.equity, expected, rtol=0, atol=1e-9)
    assert list(res.position) == [0] * 6 + [-1] * 7 + [0] * 17


@pytest.mark.parametrize(("latency", "entry", "exit_"), [(0, 5, 12), (1, 6, 13), (3, 8, 15)])
def test_latency_option(latency: int, entry: int, exit_: int) -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["z"][12:] = 0.3
    tr = run(sc, latency_bars=latency).trades.iloc[0]
    assert (tr["bar_entry"], tr["bar_exit"]) == (entry, exit_)
    assert tr["price_a_entry"] == sc["close_a"][entry]
    assert tr["price_a_exit"] == sc["close_a"][exit_]


def test_fill_waits_for_next_tradable_bar() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["z"][12:] = 0.3
    sc["tradable"][6:8] = False  # weekend-like gap after the signal
    sc["tradable"][13] = False
    tr = run(sc).trades.iloc[0]
    assert (tr["bar_entry"], tr["bar_exit"]) == (8, 14)
    assert tr["price_a_entry"] == sc["close_a"][8]


# ------------------------------------------------------------------------------------------------
# exit reasons
# ------------------------------------------------------------------------------------------------


def test_exit_max_bars() -> None:
    sc = scenario()
    with_signal(sc, 5)  # z stays 2.5
    tr = run(sc, M=5).trades.iloc[0]
    # fill at 6; elapsed = t − 6 > 5 first at t = 12 -> fill 13
    assert (tr["bar_signal_exit"], tr["bar_exit"], tr["exit_reason"]) == (12, 13, "max_bars")


def test_exit_risk_stop_and_switch() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["risk_score"][9] = 0.45  # >= θ_stop
    tr = run(sc).trades.iloc[0]
    assert (tr["bar_signal_exit"], tr["bar_exit"], tr["exit_reason"]) == (9, 10, "risk_stop")
    tr = run(sc, risk_stop=False).trades.iloc[0]
    assert tr["exit_reason"] == "end_of_data"


def test_exit_priority_z_before_risk() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["risk_score"][9] = 0.9
    sc["z"][9:] = -0.2
    tr = run(sc).trades.iloc[0]
    assert (tr["bar_signal_exit"], tr["exit_reason"]) == (9, "z_exit")


def test_end_of_data_closes_at_last_close() -> None:
    sc = scenario()
    with_signal(sc, 5)
    res = run(sc, M=100)
    tr = res.trades.iloc[0]
    assert (tr["bar_exit"], tr["exit_reason"]) == (29, "end_of_data")
    assert tr["price_a_exit"] == sc["close_a"][29]
    assert res.equity[-1] == pytest.approx(E0 + tr["pnl"], abs=1e-9)
    assert res.position[-1] == 0


def test_pending_exit_at_end_becomes_end_of_data() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["z"][28:] = 0.1  # exit signal at 28, latency 2 would fill at 30 > last bar
    tr = run(sc, latency_bars=2).trades.iloc[0]
    assert (tr["bar_signal_exit"], tr["bar_exit"], tr["exit_reason"]) == (29, 29, "end_of_data")


def test_entry_never_fills_on_last_bar() -> None:
    sc = scenario()
    with_signal(sc, 28)
    res = run(sc)
    assert res.trades.empty
    assert (res.counters.entry_signals, res.counters.entries) == (1, 0)
    np.testing.assert_array_equal(res.equity, np.full(30, E0))


# ------------------------------------------------------------------------------------------------
# entry gating, direction, counters
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prob", "risk", "tradable", "passed", "vetoed"),
    [
        (0.70, 0.10, True, 0, 0),  # prob == θ1 is not > θ1
        (0.69, 0.10, True, 0, 0),
        (0.80, 0.30, True, 1, 1),  # risk == θ2 is not < θ2: AI2 veto
        (0.80, 0.55, True, 1, 1),
        (0.80, np.nan, True, 1, 1),  # missing risk score never passes
    ],
)
def test_no_entry_when_gated(
    prob: float, risk: float, tradable: bool, passed: int, vetoed: int
) -> None:
    sc = scenario()
    with_signal(sc, 5, prob=prob)
    sc["risk_score"][5] = risk
    res = run(sc)
    assert res.trades.empty
    c = res.counters
    assert (c.candidates, c.passed_theta1, c.vetoed_by_ai2, c.entries) == (1, passed, vetoed, 0)


def test_no_entry_when_not_tradable() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["tradable"][5] = False
    res = run(sc)
    assert res.trades.empty
    assert res.counters.candidates == 0


def test_one_position_at_a_time_and_reentry_after_exit() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["return_prob"][8] = 0.9  # while open: ignored, not even a decision point
    sc["z"][12:15] = 0.3  # exit signal 12, fill 13
    sc["z"][13] = -2.4  # new candidate on the exit-fill bar (flat after the fill)
    sc["z"][14:] = -2.4
    sc["return_prob"][13] = 0.85
    res = run(sc)
    assert len(res.trades) == 2
    assert list(res.trades["bar_entry"]) == [6, 14]
    assert list(res.trades["side"]) == ["SHORT_SPREAD", "LONG_SPREAD"]
    assert res.counters.candidates == 2
    assert res.trades["trade_id"].tolist() == [1, 2]


def test_direction_and_negative_beta() -> None:
    sc = scenario()
    with_signal(sc, 5, z=-2.5)
    tr = run(sc).trades.iloc[0]
    assert tr["side"] == "LONG_SPREAD"
    assert tr["qty_a"] > 0
    assert tr["qty_b"] < 0
    sc["beta"][:] = -0.8  # spread ln A + 0.8 ln B: long spread = long A and long B
    tr = run(sc).trades.iloc[0]
    assert tr["qty_a"] > 0
    assert tr["qty_b"] > 0
    assert tr["qty_b"] * sc["close_b"][5] == pytest.approx(
        0.8 * tr["qty_a"] * sc["close_a"][5], rel=0.01
    )


def test_position_scale_caps_at_one() -> None:
    sc = scenario()
    with_signal(sc, 5)
    full = run(sc).trades.iloc[0]["qty_a"]
    half = run(sc, position_scale=0.5).trades.iloc[0]["qty_a"]
    over = run(sc, position_scale=3.0).trades.iloc[0]["qty_a"]
    assert half == pytest.approx(-round(0.5 * E0 / sc["close_a"][5], 2), abs=1e-12)
    assert over == full


def test_ai2_false_positive_counters() -> None:
    sc = scenario()
    with_signal(sc, 5)
    sc["risk_score"][5] = 0.5  # veto
    sc["return_prob"][7] = 0.9  # passes, label 0 -> true negative, enters
    sc["z"][7:] = 2.5
    label = np.full(30, np.nan)
    label[5] = 0.0  # vetoed but no risk came: false positive
    label[7] = 0.0
    res = run(sc, risk_label=label)
    c = res.counters
    assert (c.ai2_negatives, c.ai2_false_positives) == (2, 1)
    assert c.fp_rate_ai2 == 0.5
    assert c.halt_rate == 0.5  # 1 vetoed of 2 that passed θ1
    assert np.isnan(run(sc).counters.fp_rate_ai2)


# ------------------------------------------------------------------------------------------------
# real data: look-ahead, accounting, grid search
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metals_inputs(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Any]:
    a, b = metals_2024
    j = (
        a[["close"]]
        .rename(columns={"close": "close_a"})
        .join(b[["close"]].rename(columns={"close": "close_b"}), how="inner")
        .iloc[:2000]
    )
    la, lb = np.log(j["close_a"]), np.log(j["close_b"])
    cov = la.rolling(180).cov(lb)
    beta = (cov / lb.rolling(180).var()).to_numpy()
    spread = la - pd.Series(beta, index=j.index) * lb
    z = ((spread - spread.rolling(180).mean()) / spread.rolling(180).std()).clip(-5, 5).to_numpy()
    rng = np.random.default_rng(11)
    n = len(j)
    prob = np.where(np.abs(z) >= 1.5, rng.uniform(0.55, 0.95, n), np.nan)
    risk = rng.uniform(0.0, 0.6, n)
    ts = pd.DatetimeIndex(j.index)
    hour = ts.hour
    universe = yaml.safe_load((REPO / "config" / "universe.yaml").read_text())
    leg_a, leg_b, mn = legs_from_universe(universe, "XAUUSD_XAGUSD")
    costs = CostModel.from_mapping(
        yaml.safe_load((REPO / "config" / "cost_table.yaml").read_text()), ["XAUUSD", "XAGUSD"]
    )
    return {
        "ts": ts,
        "close_a": j["close_a"].to_numpy(),
        "close_b": j["close_b"].to_numpy(),
        "z": z,
        "beta": beta,
        "return_prob": prob,
        "risk_score": risk,
        "tradable": np.asarray(hour != 21),
        "legs": (leg_a, leg_b),
        "costs": costs,
        "min_notional": mn,
        "risk_label": (rng.uniform(size=n) < 0.3).astype(float),
    }


def run_real(d: dict[str, Any], params: BacktestParams | None = None) -> BacktestResult:
    return run_backtest(
        d["ts"],
        d["close_a"],
        d["close_b"],
        d["z"],
        d["beta"],
        d["return_prob"],
        d["risk_score"],
        d["tradable"],
        d["legs"],
        d["costs"],
        params,
        min_notional_usd=d["min_notional"],
        risk_label=d["risk_label"],
    )


def test_real_data_accounting_identities(metals_inputs: dict[str, Any]) -> None:
    res = run_real(metals_inputs, BacktestParams(theta1=0.6, theta2=0.4))
    tr = res.trades
    assert len(tr) > 20
    costs = tr[["cost_spread", "cost_slippage", "cost_commission", "cost_swap"]].sum(axis=1)
    np.testing.assert_allclose(tr["pnl"], tr["pnl_gross"] - costs, rtol=0, atol=1e-8)
    assert (tr[["cost_spread", "cost_slippage", "cost_commission"]] >= 0).all().all()
    assert tr["exit_reason"].isin(["z_exit", "max_bars", "risk_stop", "end_of_data"]).all()
    # flat bars carry exactly the realised PnL of the trades exited so far
    cum = np.zeros(len(res.equity))
    np.add.at(cum, tr["bar_exit"].to_numpy(), tr["pnl"].to_numpy())
    realised = E0 + np.cumsum(cum)
    flat = res.position == 0
    np.testing.assert_allclose(res.equity[flat], realised[flat], rtol=0, atol=1e-6)
    assert res.equity[-1] == pytest.approx(E0 + tr["pnl"].sum(), abs=1e-6)
    # trades never overlap and fills are after signals
    assert (tr["bar_entry"].to_numpy()[1:] >= tr["bar_exit"].to_numpy()[:-1]).all()
    assert (tr["bar_entry"] > tr["bar_signal_entry"]).all()
    assert (tr["bar_exit"] > tr["bar_entry"]).all()
    # fills are on the tick grid
    np.testing.assert_allclose(tr["price_a_entry"] * 100, np.round(tr["price_a_entry"] * 100))
    np.testing.assert_allclose(tr["price_b_exit"] * 1000, np.round(tr["price_b_exit"] * 1000))
    # the end-of-day equity table is the last mark of each trading day
    daily = res.daily_equity()
    assert daily["equity"].iloc[-1] == res.equity[-1]
    assert (daily["dd"] >= 0).all()


@pytest.mark.parametrize("latency", [0, 1, 2])
def test_pair_book_stepped_bar_by_bar_is_run_backtest(
    metals_inputs: dict[str, Any], latency: int
) -> None:
    # the live paper book (pairdesk.quant.rule.PairBook) and run_backtest are one rule
    d = metals_inputs
    params = BacktestParams(theta1=0.6, theta2=0.4, latency_bars=latency)
    res = run_real(d, params)
    leg_a, leg_b = d["legs"]
    book = PairBook(params, leg_a, leg_b, d["costs"], d["min_notional"])
    close_time = np.asarray(pd.DatetimeIndex(d["ts"]).as_unit("ns").asi8) + H
    mult = d["costs"].slippage_multiplier(close_time)
    swapc = d["costs"].swap_cumulative(close_time)
    gate = RuleGate(theta1=params.theta1, theta2=params.theta2)
    n = len(d["close_a"])
    equity = np.empty(n)
    closed = []
    for t in range(n):
        bar = RuleBar(
            t=t,
            close_a=float(d["close_a"][t]),
            close_b=float(d["close_b"][t]),
            ref_a=round_to_tick(float(d["close_a"][t]), leg_a.tick_size),
            ref_b=round_to_tick(float(d["close_b"][t]), leg_b.tick_size),
            z=float(d["z"][t]),
            beta=float(d["beta"][t]),
            prob=float(d["return_prob"][t]),
            risk=float(d["risk_score"][t]),
            tradable=bool(d["tradable"][t]),
            mult=float(mult[t]),
            swapc=float(swapc[t]),
            last=t == n - 1,
            risk_label=float(d["risk_label"][t]),
        )
        before = book.trades_closed
        book.step(bar, gate)
        if book.trades_closed > before:
            closed.append(book.realised)
        equity[t] = book.mark(bar)
    np.testing.assert_array_equal(equity, res.equity)
    assert len(closed) == len(res.trades) > 10
    np.testing.assert_allclose(
        np.diff(closed, prepend=0.0), res.trades["pnl"].to_numpy(), rtol=1e-12, atol=1e-9
    )
    assert BacktestCounters.from_array(book.counters) == res.counters


def test_look_ahead_perturbing_after_t(metals_inputs: dict[str, Any]) -> None:
    d0 = metals_inputs
    params = BacktestParams(theta1=0.6, theta2=0.4)
    base = run_real(d0, params)
    cut = 1200
    rng = np.random.default_rng(5)
    d1 = dict(d0)
    n = len(d0["close_a"])
    m = n - cut
    for key, fn in {
        "close_a": lambda x: x * rng.uniform(0.9, 1.1, m),
        "close_b": lambda x: x * rng.uniform(0.9, 1.1, m),
        "z": lambda x: rng.normal(0, 3, m),
        "beta": lambda x: x + rng.normal(0, 0.3, m),
        "return_prob": lambda x: np.where(rng.uniform(size=m) < 0.5, rng.uniform(size=m), np.nan),
        "risk_score": lambda x: rng.uniform(size=m),
        "risk_label": lambda x: (rng.uniform(size=m) < 0.5).astype(float),
    }.items():
        arr = np.array(d0[key], dtype=float, copy=True)
        arr[cut:] = fn(arr[cut:])
        d1[key] = arr
    trad = np.array(d0["tradable"], copy=True)
    trad[cut:] = rng.uniform(size=m) < 0.7
    d1["tradable"] = trad
    pert = run_real(d1, params)
    before = base.trades[base.trades["bar_exit"] < cut].reset_index(drop=True)
    before_p = pert.trades[pert.trades["bar_exit"] < cut].reset_index(drop=True)
    assert len(before) > 10
    pd.testing.assert_frame_equal(before, before_p)
    np.testing.assert_array_equal(base.equity[:cut], pert.equity[:cut])
    np.testing.assert_array_equal(base.position[:cut], pert.position[:cut])
    assert not np.array_equal(base.equity[cut:], pert.equity[cut:])


def test_grid_search_equals_run_backtest_per_cell(metals_inputs: dict[str, Any]) -> None:
    d = metals_inputs
    params = BacktestParams()
    g1 = np.array([0.60, 0.70, 0.80])
    g2 = np.array([0.20, 0.30, 0.44])
    obj = ThetaObjectiveParams()
    grid = grid_search(
        d["ts"],
        d["close_a"],
        d["close_b"],
        d["z"],
        d["beta"],
        d["return_prob"],
        d["risk_score"],
        d["tradable"],
        d["legs"],
        d["costs"],
        params,
        g1,
        g2,
        min_notional_usd=d["min_notional"],
        risk_label=d["risk_label"],
        objective=obj,
    )
    assert grid.shape == (3, 3)
    assert set(grid.dtype.names or ()) == set(GRID_FIELDS)
    for i, t1 in enumerate(g1):
        for j, t2 in enumerate(g2):
            res = run_real(d, BacktestParams(theta1=t1, theta2=t2))
            k = res.kpis()
            cell = grid[i, j]
            assert (cell["theta1"], cell["theta2"]) == (t1, t2)
            for name in (*KPI_NAMES, "halt_rate", "theta_pass_rate", "fp_rate_ai2"):
                np.testing.assert_allclose(cell[name], k[name], rtol=1e-12, equal_nan=True)
            assert cell["trades"] == len(res.trades)
            score = (
                k["ann_return"]
                - 2.0 * max(0.0, k["max_dd"] - 0.12)
                - 0.05 * max(0.0, 150.0 - k["trades_per_year"])
                - 0.10 * k["fp_rate_ai2"]
            )
            assert cell["score"] == pytest.approx(score, rel=1e-12)
            assert cell["feasible"] == (k["max_dd"] <= 0.12 and k["trades_per_year"] >= 150)
    assert grid["trades"].min() > 0


# ------------------------------------------------------------------------------------------------
# parameters, grids, errors
# ------------------------------------------------------------------------------------------------


def test_theta_grid_spec_ranges() -> None:
    g1 = theta_grid(0.60, 0.85, 0.02)
    g2 = theta_grid(0.20, 0.45, 0.02)
    assert len(g1) == 13
    assert len(g2) == 13
    np.testing.assert_array_equal(g1, np.round(0.60 + 0.02 * np.arange(13), 10))
    assert (g1[0], g1[-1], g2[0], g2[-1]) == (0.6, 0.84, 0.2, 0.44)
    with pytest.raises(ValueError, match="step > 0"):
        theta_grid(0.6, 0.5, 0.02)


def test_params_from_policy() -> None:
    bt = yaml.safe_load((REPO / "config" / "backtest_policy.yaml").read_text())
    core = yaml.safe_load((REPO / "config" / "core_policy.yaml").read_text())
    p = BacktestParams.from_policy(bt, core)
    assert p == BacktestParams(theta1=0.70, theta2=0.30, z_exit=0.5, M=48, theta_stop=0.45)
    o = ThetaObjectiveParams.from_policy(core)
    assert o == ThetaObjectiveParams()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"theta1": 1.5}, "theta1 must be in"),
        ({"M": -1}, "M must be a non-negative integer"),
        ({"latency_bars": 1.5}, "latency_bars must be"),
        ({"initial_capital": 0.0}, "initial_capital must be > 0"),
    ],
)
def test_params_validation(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BacktestParams(**kw)


def test_input_validation() -> None:
    sc = scenario()
    bad = dict(sc, z=np.zeros(29))
    with pytest.raises(ValueError, match="z must have shape"):
        run(bad)
    bad = dict(sc, ts=sc["ts"][::-1].copy())
    with pytest.raises(ValueError, match="strictly increasing"):
        run(bad)
    bad = dict(sc, tradable=np.ones(30))
    with pytest.raises(ValueError, match="tradable must be a bool"):
        run(bad)
    close = sc["close_a"].copy()
    close[3] = np.nan
    with pytest.raises(ValueError, match="close_a must be finite"):
        run(dict(sc, close_a=close))
    with pytest.raises(ValueError, match="no costs for symbol"):
        run(sc, costs=CostModel(legs={"AAA": LegCosts(0, 0, 0)}))

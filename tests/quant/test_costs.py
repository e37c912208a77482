"""Cost model, tick/lot rounding and β-neutral sizing (spec 004 §コストテーブル / ユニバース仕様 v1).

The central test (`test_one_trade_hand_computed`) writes one XAUUSD/XAGUSD trade out line by line
with the shipped config/cost_table.yaml and compares it with the engine's itemised output.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pairdesk.quant.backtest import BacktestParams, run_backtest
from pairdesk.quant.costs import (
    CostModel,
    LegCosts,
    LegSpec,
    fill_price,
    legs_from_universe,
    round_to_tick,
    size_pair,
)

REPO = Path(__file__).resolve().parents[2]
H = 3_600_000_000_000  # one hour in ns


@pytest.fixture(scope="module")
def cost_table() -> dict:
    return yaml.safe_load((REPO / "config" / "cost_table.yaml").read_text())


@pytest.fixture(scope="module")
def metals() -> tuple[LegSpec, LegSpec, float]:
    universe = yaml.safe_load((REPO / "config" / "universe.yaml").read_text())
    return legs_from_universe(universe, "XAUUSD_XAGUSD")


@pytest.fixture(scope="module")
def model(cost_table: dict) -> CostModel:
    return CostModel.from_mapping(cost_table, ["XAUUSD", "XAGUSD", "BTCUSDT"])


def _ns(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


# ------------------------------------------------------------------------------------------------
# THE cost test
# ------------------------------------------------------------------------------------------------


def test_one_trade_hand_computed(metals: tuple[LegSpec, LegSpec, float], model: CostModel) -> None:
    """Short the spread Tue 21:00 → Fri 02:00 UTC: spread, slippage (×1.5 and ×1.2), tick
    rounding, commission on 4 fills, swap over Wed (triple) + Thu rollovers, equity marks."""
    leg_a, leg_b, min_notional = metals
    # bar open times (bar length 1 h); the bar of ts closes at ts + 1 h
    ts = np.array(
        [
            _ns("2024-01-09 18:00"),  # 0 Tue
            _ns("2024-01-09 19:00"),  # 1
            _ns("2024-01-09 20:00"),  # 2 entry signal (close 21:00)
            _ns("2024-01-09 21:00"),  # 3 entry fill, closes 22:00 -> slippage ×1.5
            _ns("2024-01-10 12:00"),  # 4 Wed, before the Wed rollover
            _ns("2024-01-11 12:00"),  # 5 Thu, after the Wed rollover (triple)
            _ns("2024-01-12 01:00"),  # 6 Fri, exit signal |z| <= 0.5 (close 02:00)
            _ns("2024-01-12 02:00"),  # 7 exit fill, closes 03:00 -> slippage ×1.2
            _ns("2024-01-12 03:00"),  # 8
            _ns("2024-01-12 04:00"),  # 9
        ],
        dtype=np.int64,
    )
    close_a = np.array(
        [2010.00, 2011.00, 2013.37, 2015.48, 2012.00, 2009.50, 2006.00, 2005.13, 2004.00, 2003.0]
    )
    close_b = np.array(
        [23.400, 23.410, 23.456, 23.517, 23.480, 23.390, 23.350, 23.301, 23.300, 23.290]
    )
    z = np.array([1.0, 1.5, 2.3, 2.2, 1.8, 1.2, 0.4, 0.3, 0.2, 0.1])
    beta = np.full(10, 1.25)
    prob = np.full(10, np.nan)
    prob[2] = 0.80
    risk = np.full(10, 0.10)
    tradable = np.ones(10, dtype=bool)
    params = BacktestParams(theta1=0.70, theta2=0.30, z_exit=0.5, M=48, latency_bars=1)
    res = run_backtest(
        ts, close_a, close_b, z, beta, prob, risk, tradable, (leg_a, leg_b), model, params,
        min_notional_usd=min_notional, bar_ns=H,
    )  # fmt: skip
    assert len(res.trades) == 1
    tr = res.trades.iloc[0]

    # --- sizing at the signal bar (close 2013.37 / 23.456, beta 1.25, 100k on leg A)
    # lots_A = round(100000 / 2013.37 = 49.66797) to 0.01 -> 49.67
    # lots_B = round(1.25 * 49.67 * 2013.37 / 23.456 = 5329.3447) to 0.01 -> 5329.34
    lots_a, lots_b = 49.67, 5329.34
    ratio = (lots_b * 23.456) / (lots_a * 2013.37) / 1.25
    assert abs(ratio - 1) < 0.01
    # z > 0 -> SHORT_SPREAD: sell A, buy B
    assert tr["side"] == "SHORT_SPREAD"
    assert tr["qty_a"] == pytest.approx(-lots_a, abs=1e-12)
    assert tr["qty_b"] == pytest.approx(+lots_b, abs=1e-12)

    # --- entry fill at the close of bar 3 (22:00 UTC, window 22:00-01:00 -> multiplier 1.5)
    # XAUUSD: half spread 6/2 = 3 bp, slippage 10 bp × 1.5 = 15 bp; sell -> floor to 0.01
    # 2015.48 × (1 − 0.0003 − 0.0015) = 2011.852136 -> 2011.85
    pa_in = math.floor(2015.48 * (1 - 0.0003 - 0.0015) / 0.01) / 100
    assert pa_in == 2011.85
    # XAGUSD: half spread 8/2 = 4 bp, slippage 12 bp × 1.5 = 18 bp; buy -> ceil to 0.001
    # 23.517 × (1 + 0.0004 + 0.0018) = 23.5687374 -> 23.569
    pb_in = math.ceil(23.517 * (1 + 0.0004 + 0.0018) / 0.001) / 1000
    assert pb_in == 23.569
    # --- exit fill at the close of bar 7 (03:00 UTC, window 01:00-07:00 -> multiplier 1.2)
    # XAUUSD buy back: 2005.13 × (1 + 0.0003 + 0.0012) = 2008.137695 -> ceil 2008.14
    pa_out = math.ceil(2005.13 * (1 + 0.0003 + 0.0012) / 0.01) / 100
    assert pa_out == 2008.14
    # XAGUSD sell: 23.301 × (1 − 0.0004 − 0.00144) = 23.25812616 -> floor 23.258
    pb_out = math.floor(23.301 * (1 - 0.0004 - 0.00144) / 0.001) / 1000
    assert pb_out == 23.258
    assert tr["price_a_entry"] == pytest.approx(pa_in, abs=1e-9)
    assert tr["price_b_entry"] == pytest.approx(pb_in, abs=1e-9)
    assert tr["price_a_exit"] == pytest.approx(pa_out, abs=1e-9)
    assert tr["price_b_exit"] == pytest.approx(pb_out, abs=1e-9)

    # --- spread: half spread on the reference (close) of each of the 4 fills
    spread = (
        lots_a * 2015.48 * 0.0003
        + lots_b * 23.517 * 0.0004
        + lots_a * 2005.13 * 0.0003
        + lots_b * 23.301 * 0.0004
    )
    # --- slippage: execution shortfall minus the spread (includes the tick-rounding residual)
    shortfall = (
        lots_a * (2015.48 - pa_in)
        + lots_b * (pb_in - 23.517)
        + lots_a * (pa_out - 2005.13)
        + lots_b * (23.301 - pb_out)
    )
    slippage = shortfall - spread
    # --- commission 10 bp per side on each fill notional (both legs, both sides)
    commission_in = (lots_a * pa_in + lots_b * pb_in) * 0.0010
    commission_out = (lots_a * pa_out + lots_b * pb_out) * 0.0010
    commission = commission_in + commission_out
    # --- swap: rollovers at 21:00 UTC in (Tue 22:00, Fri 03:00] = Wed (triple: 3) + Thu (1)
    swap_days = 3 + 1
    # short XAUUSD earns +3.0 bp/day, long XAGUSD pays -3.0 bp/day, on entry notionals
    swap_credit = swap_days * (lots_a * pa_in * 3.0e-4 + lots_b * pb_in * (-3.0e-4))
    cost_swap = -swap_credit
    # --- PnL
    gross = -lots_a * (2005.13 - 2015.48) + lots_b * (23.301 - 23.517)
    pnl = -lots_a * (pa_out - pa_in) + lots_b * (pb_out - pb_in) - commission + swap_credit
    assert pnl == pytest.approx(gross - spread - slippage - commission - cost_swap, abs=1e-9)

    assert tr["cost_spread"] == pytest.approx(spread, abs=1e-9)
    assert tr["cost_slippage"] == pytest.approx(slippage, abs=1e-9)
    assert tr["cost_commission"] == pytest.approx(commission, abs=1e-9)
    assert tr["cost_swap"] == pytest.approx(cost_swap, abs=1e-9)
    assert tr["pnl_gross"] == pytest.approx(gross, abs=1e-9)
    assert tr["pnl"] == pytest.approx(pnl, abs=1e-9)
    assert tr["return_on_capital"] == pytest.approx(pnl / 100_000.0, abs=1e-15)
    assert tr["exit_reason"] == "z_exit"
    assert tr["timestamp_entry"] == pd.Timestamp("2024-01-09 22:00", tz="UTC")
    assert tr["timestamp_exit"] == pd.Timestamp("2024-01-12 03:00", tz="UTC")

    # --- equity marks at the closes (no cost until fill; swap at each rollover crossed)
    e0 = 100_000.0

    def mark(i: int, days: int) -> float:
        open_pnl = -lots_a * (close_a[i] - pa_in) + lots_b * (close_b[i] - pb_in)
        per_day = lots_a * pa_in * 3.0e-4 - lots_b * pb_in * 3.0e-4
        return e0 + open_pnl - commission_in + days * per_day

    expected = [e0, e0, e0, mark(3, 0), mark(4, 0), mark(5, 3), mark(6, 4), e0 + pnl, e0 + pnl]
    np.testing.assert_allclose(res.equity[:9], expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(res.position, [0, 0, 0, -1, -1, -1, -1, 0, 0, 0])


# ------------------------------------------------------------------------------------------------
# rounding and fill prices
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        (2013.374, 0.01, 2013.37),
        (2013.375, 0.01, 2013.38),  # half up
        (23.4504, 0.001, 23.450),
        (23.4506, 0.001, 23.451),
        (101.0, 0.25, 101.0),
        (101.13, 0.25, 101.25),
        (0.1 + 0.2, 0.1, 0.3),  # float noise stays on the grid
    ],
)
def test_round_to_tick(price: float, tick: float, expected: float) -> None:
    assert round_to_tick(price, tick) == pytest.approx(expected, abs=1e-12)


def test_round_to_tick_rejects_bad_tick() -> None:
    with pytest.raises(ValueError, match="tick must be a positive"):
        round_to_tick(1.0, 0.0)
    with pytest.raises(ValueError, match="price must be finite"):
        round_to_tick(float("nan"), 0.01)


def test_fill_price_adverse_rounding(metals: tuple[LegSpec, LegSpec, float]) -> None:
    leg_a, _, _ = metals
    c = LegCosts(spread_bps=6, slippage_bps=10, commission_bps=10)
    # buy: 2000 × (1 + 0.0003 + 0.0010) = 2002.6 exactly on the grid -> unchanged
    assert fill_price(2000.0, 1, leg_a, c) == pytest.approx(2002.6, abs=1e-12)
    # sell: 2000 × (1 − 0.0013) = 1997.4 exactly on the grid
    assert fill_price(2000.0, -1, leg_a, c) == pytest.approx(1997.4, abs=1e-12)
    # buy rounds up, sell rounds down: 2013.37 × 1.0013 = 2015.987381 / × 0.9987 = 2010.752619
    assert fill_price(2013.37, 1, leg_a, c) == pytest.approx(2015.99, abs=1e-12)
    assert fill_price(2013.37, -1, leg_a, c) == pytest.approx(2010.75, abs=1e-12)
    # time-of-day multiplier scales the slippage only: 2000 × (1 + 0.0003 + 0.0015) = 2003.6
    assert fill_price(2000.0, 1, leg_a, c, multiplier=1.5) == pytest.approx(2003.6, abs=1e-12)
    with pytest.raises(ValueError, match="side must be"):
        fill_price(2000.0, 0, leg_a, c)


# ------------------------------------------------------------------------------------------------
# cost table parsing, time-of-day multipliers, swap calendar
# ------------------------------------------------------------------------------------------------


def test_from_mapping_defaults_and_overrides(model: CostModel) -> None:
    assert model.leg("XAUUSD") == LegCosts(6.0, 10.0, 10.0, -4.0, 3.0)
    assert model.leg("XAGUSD") == LegCosts(8.0, 12.0, 10.0, -3.0, 2.5)
    assert model.leg("BTCUSDT") == LegCosts(5.0, 8.0, 10.0, 0.0, 0.0)  # defaults only
    assert model.rollover_weekday == 2  # WED
    assert model.swap_minute_utc == 21 * 60
    with pytest.raises(ValueError, match="no costs for symbol"):
        model.leg("EURUSD")


def test_from_mapping_rejects_bad_tables(cost_table: dict) -> None:
    bad = {**cost_table, "defaults": {**cost_table["defaults"], "comission_bps": 1}}
    with pytest.raises(ValueError, match="unknown keys"):
        CostModel.from_mapping(bad, ["XAUUSD"])
    bad = {**cost_table, "time_of_day_multipliers": {"22:00-02:00": 1.5, "01:00-07:00": 1.2}}
    with pytest.raises(ValueError, match="overlap"):
        CostModel.from_mapping(bad, ["XAUUSD"])
    bad = {**cost_table, "time_of_day_multipliers": {"25:00-02:00": 1.5}}
    with pytest.raises(ValueError, match="bad time"):
        CostModel.from_mapping(bad, ["XAUUSD"])
    bad = {**cost_table, "defaults": {**cost_table["defaults"], "swap": {"rollover_day": "SAT"}}}
    with pytest.raises(ValueError, match="weekday"):
        CostModel.from_mapping(bad, ["XAUUSD"])
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        LegCosts(spread_bps=-1, slippage_bps=0, commission_bps=0)


@pytest.mark.parametrize(
    ("hhmm", "mult"),
    [
        ("21:59", 1.0),
        ("22:00", 1.5),
        ("23:59", 1.5),
        ("00:00", 1.5),
        ("00:59", 1.5),
        ("01:00", 1.2),
        ("06:59", 1.2),
        ("07:00", 1.0),
        ("12:00", 1.0),
    ],
)
def test_time_of_day_windows_wrap_midnight(model: CostModel, hhmm: str, mult: float) -> None:
    assert model.slippage_multiplier([_ns(f"2024-03-05 {hhmm}")])[0] == mult


def test_swap_calendar_against_day_by_day_count(model: CostModel) -> None:
    """Cumulative weights vs walking the calendar: Mon–Fri 1, Wed 3, Sat/Sun 0 at 21:00 UTC."""
    rng = np.random.default_rng(7)
    base = _ns("2024-01-01 00:00")
    for _ in range(200):
        t0 = base + int(rng.integers(0, 60 * 24 * 60)) * 60_000_000_000
        t1 = t0 + int(rng.integers(0, 20 * 24 * 60)) * 60_000_000_000
        got = np.diff(model.swap_cumulative([t0, t1]))[0]
        start = pd.Timestamp(t0, tz="UTC")
        end = pd.Timestamp(t1, tz="UTC")
        expected = 0
        day = start.normalize() - pd.Timedelta(days=1)
        while day <= end:
            roll = day + pd.Timedelta(hours=21)
            if start < roll <= end:
                expected += {0: 1, 1: 1, 2: 3, 3: 1, 4: 1, 5: 0, 6: 0}[roll.weekday()]
            day += pd.Timedelta(days=1)
        assert got == expected, (start, end)
    # boundary: opened at exactly 21:00 pays nothing that day, closed at exactly 21:00 pays
    tue21 = _ns("2024-01-09 21:00")
    assert np.diff(model.swap_cumulative([tue21, tue21 + H]))[0] == 0
    assert np.diff(model.swap_cumulative([tue21 - H, tue21]))[0] == 1
    assert dt.date(2024, 1, 9).weekday() == 1  # Tuesday


# ------------------------------------------------------------------------------------------------
# sizing
# ------------------------------------------------------------------------------------------------


def test_size_pair_metals_default_capital(metals: tuple[LegSpec, LegSpec, float]) -> None:
    leg_a, leg_b, min_notional = metals
    la, lb = size_pair(100_000.0, 1.25, 2013.37, 23.456, leg_a, leg_b, min_notional)
    assert (la, lb) == (49.67, 5329.34)
    # notional A within half a lot of the target, ratio within 1%
    assert abs(la * 2013.37 - 100_000.0) <= 0.005 * 2013.37 + 1e-9
    assert abs((lb * 23.456) / (la * 2013.37) / 1.25 - 1) < 0.01
    # negative beta: only |beta| matters for the sizes
    assert size_pair(100_000.0, -1.25, 2013.37, 23.456, leg_a, leg_b, min_notional) == (la, lb)


def test_size_pair_min_lot_scale_up() -> None:
    a = LegSpec("A", 0.01, 1.0, 0.10, 0.10)
    b = LegSpec("B", 0.01, 1.0, 0.10, 0.10)
    # target 5 USD on A at price 100 = 0.05 lots < min lot 0.10; B at β = 0.25: 1.25 USD = 0.025 lots.
    # k = max(1, 0.10·100/5 = 2, 0.10·50/(0.25·5) = 4) = 4 -> N_A = 20 -> 0.2 lots of A,
    # B hedges the rounded A: 0.25 · 0.2 · 100 / 50 = 0.1 lots (= min lot, binding leg)
    la, lb = size_pair(5.0, 0.25, 100.0, 50.0, a, b)
    assert (la, lb) == pytest.approx((0.2, 0.1), abs=1e-12)
    # only A binding: β = 0.5 -> k = max(2, 0.10·50/2.5 = 2) = 2 -> 0.1 and 0.1
    assert size_pair(5.0, 0.5, 100.0, 50.0, a, b) == pytest.approx((0.1, 0.1), abs=1e-12)
    assert la >= a.min_lot
    assert lb >= b.min_lot


def test_size_pair_min_notional_scale_up(metals: tuple[LegSpec, LegSpec, float]) -> None:
    leg_a, leg_b, _ = metals
    # 10 USD of gold is below the 100 USD minimum: scale k = 100/10 (leg A), 100/12 (leg B)
    la, lb = size_pair(10.0, 1.2, 2013.37, 23.456, leg_a, leg_b, 100.0)
    # A: 100/2013.37 = 0.04967 -> 0.05 lots (100.67 USD >= 100)
    # B: 1.2 × 0.05 × 2013.37 / 23.456 = 5.1502 -> 5.15 lots (120.80 USD)
    assert (la, lb) == (0.05, 5.15)
    assert la * 2013.37 >= 100.0
    assert lb * 23.456 >= 100.0
    # nearest rounding would fall below the minimum notional -> ceil to the next lot
    la2, _ = size_pair(99.0, 1.0, 2013.37, 23.456, leg_a, leg_b, 99.0)
    assert la2 == 0.05  # 99/2013.37 = 0.0492 -> nearest 0.05 is fine; and never 0.04 (80.5 USD)
    la3, _ = size_pair(81.0, 1.0, 2013.37, 23.456, leg_a, leg_b, 81.0)
    # 81/2013.37 = 0.04023 -> nearest 0.04 = 80.53 USD < 81 -> ceil to 0.05
    assert la3 == 0.05


def test_size_pair_ratio_readjust_matches_brute_force() -> None:
    a = LegSpec("A", 0.01, 1.0, 1.0, 1.0)
    b = LegSpec("B", 0.01, 1.0, 1.0, 1.0)
    # base: A = 10 lots (1000 USD), B = round(1000/70 = 14.29) = 14 -> ratio 980/1000 (-2%)
    la, lb = size_pair(1000.0, 1.0, 100.0, 70.0, a, b)
    # brute force: smallest A >= 10 whose best B is within ±1%
    expected = None
    for qa in range(10, 21):
        qb = math.floor(qa * 100.0 / 70.0 + 0.5)
        if abs(qb * 70.0 / (qa * 100.0) - 1) <= 0.01:
            expected = (float(qa), float(qb))
            break
    assert expected == (12.0, 17.0)
    assert (la, lb) == expected
    # when the lot step cannot reach ±1% within max_upscale, the nearest sizes are kept
    assert size_pair(1000.0, 1.0, 100.0, 70.0, a, b, max_upscale=1.05) == (10.0, 14.0)


def test_size_pair_crypto_fine_steps() -> None:
    # the spec's Binance spot units: BTC step 1e-5, ETH step 1e-4, min notional 10 USD
    leg_a = LegSpec("BTCUSDT", 0.01, 1.0, 0.00001, 0.00001)
    leg_b = LegSpec("ETHUSDT", 0.01, 1.0, 0.0001, 0.0001)
    mn = 10.0
    la, lb = size_pair(100_000.0, 0.8, 97_123.45, 3_456.78, leg_a, leg_b, mn)
    # 100000 / 97123.45 = 1.029617... -> 1.02962 BTC (step 1e-5)
    assert la == pytest.approx(1.02962, abs=1e-12)
    # 0.8 × 1.02962 × 97123.45 / 3456.78 = 23.1427... -> step 1e-4
    assert lb == pytest.approx(round(0.8 * 1.02962 * 97123.45 / 3456.78, 4), abs=1e-12)


def test_size_pair_rejects_bad_inputs(metals: tuple[LegSpec, LegSpec, float]) -> None:
    leg_a, leg_b, _ = metals
    with pytest.raises(ValueError, match="beta must be finite and non-zero"):
        size_pair(1000.0, 0.0, 2000.0, 23.0, leg_a, leg_b)
    with pytest.raises(ValueError, match="price_b must be a positive"):
        size_pair(1000.0, 1.0, 2000.0, -1.0, leg_a, leg_b)
    with pytest.raises(ValueError, match="lot_step must be a positive"):
        LegSpec("X", 0.01, 1.0, 0.01, 0.0)
    with pytest.raises(ValueError, match="not found in universe"):
        legs_from_universe({"pairs": []}, "XAUUSD_XAGUSD")

"""PnL in the account currency: per-bar quote-to-account rates of the legs
(spec 004 §コストテーブル / ユニバース仕様 v1 通貨換算; docs/quant-contracts.md §Currency conversion).

Hand-worked cases: a JPY-quoted leg (rate = 1/USDJPY) and a USDXXX leg (rate = 1/close) against
a USD-quoted leg, with commission; rates of 1 change nothing; a rate changed after bar T changes
nothing before T; the one-pair portfolio equals ``run_backtest`` with rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pairdesk.quant.backtest import BacktestParams, BacktestResult, run_backtest
from pairdesk.quant.costs import CostModel, LegCosts, LegSpec
from pairdesk.quant.portfolio import PairInputs, PortfolioParams, run_portfolio

H = 3_600_000_000_000
E0 = 100_000.0
CS = 100_000.0
JPY = LegSpec("XXXJPY", 0.001, CS, 0.01, 0.01)
CHF = LegSpec("USDCHF", 0.00001, CS, 0.01, 0.01)
USD = LegSpec("YYYUSD", 0.00001, CS, 0.01, 0.01)
COMM_1BP = CostModel(legs={s: LegCosts(0.0, 0.0, 1.0) for s in ("XXXJPY", "USDCHF", "YYYUSD")})


def _base(n: int = 10) -> dict[str, Any]:
    start = pd.Timestamp("2024-01-08", tz="UTC").value
    z = np.zeros(n)
    z[2:5] = 2.5  # AI1 candidate at bar 2 (short spread) ...
    z[5:] = 0.3  # ... exit signal at bar 5 (|z| <= z_exit), filled at 6
    prob = np.full(n, np.nan)
    prob[2] = 0.8
    return {
        "ts": start + H * np.arange(n, dtype=np.int64),
        "z": z,
        "beta": np.ones(n),
        "return_prob": prob,
        "risk_score": np.full(n, 0.10),
        "tradable": np.ones(n, dtype=bool),
    }


def _run(sc: dict[str, Any], legs: tuple[LegSpec, LegSpec], **kw: Any) -> BacktestResult:
    return run_backtest(
        sc["ts"], sc["close_a"], sc["close_b"], sc["z"], sc["beta"], sc["return_prob"],
        sc["risk_score"], sc["tradable"], legs, COMM_1BP, BacktestParams(), bar_ns=H, **kw,
    )  # fmt: skip


def _jpy_case() -> dict[str, Any]:
    sc = _base()
    sc["close_a"] = np.array([80.0, 80.0, 80.0, 80.0, 79.0, 79.0, 78.0, 78.0, 78.0, 78.0])
    sc["close_b"] = np.array([1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.26, 1.26, 1.26, 1.26])
    # USDJPY 100 up to bar 4, then 125: USD per JPY = 0.01, then 0.008
    sc["rate_a"] = np.array([0.01] * 5 + [0.008] * 5)
    return sc


def test_jpy_quoted_leg_hand_worked() -> None:
    sc = _jpy_case()
    res = _run(sc, (JPY, USD), quote_to_account_a=sc["rate_a"])
    assert len(res.trades) == 1
    tr = res.trades.iloc[0]
    assert (tr["bar_signal_entry"], tr["bar_entry"], tr["bar_exit"]) == (2, 3, 6)
    # sized at the signal bar in USD: one lot of A = 1e5 × 80 JPY × 0.01 = 80 000 USD, target
    # 100 000 USD -> 1.25 lots; one lot of B = 125 000 USD, β = 1 -> 0.8 lots
    assert tr["qty_a"] == pytest.approx(-1.25, abs=1e-12)
    assert tr["qty_b"] == pytest.approx(0.8, abs=1e-12)
    # prices stay in the quote currency
    assert (tr["price_a_entry"], tr["price_a_exit"]) == (80.0, 78.0)
    # commission 1 bp of the USD notional: entry 100 000 + 100 000 USD -> 10 + 10; exit
    # 1.25 × 1e5 × 78 × 0.008 = 78 000 USD -> 7.8 and 0.8 × 1e5 × 1.26 = 100 800 -> 10.08
    assert tr["cost_commission"] == pytest.approx(20.0 + 7.8 + 10.08, abs=1e-9)
    # PnL of A: −1.25 lots × 1e5 × (78 − 80) JPY = 250 000 JPY at the exit rate 0.008 = 2000 USD;
    # B: 0.8 × 1e5 × 0.01 = 800 USD
    assert tr["pnl_gross"] == pytest.approx(2800.0, abs=1e-9)
    assert tr["pnl"] == pytest.approx(2800.0 - 37.88, abs=1e-9)
    # marks: bar 4 at 0.01 (1250 USD on A), bar 5 at 0.008 (1000 USD), minus entry commission
    np.testing.assert_allclose(
        res.equity[:7],
        [E0, E0, E0, E0 - 20.0, E0 + 1250.0 - 20.0, E0 + 1000.0 - 20.0, E0 + 2762.12],
        rtol=0,
        atol=1e-9,
    )


def test_usdxxx_leg_converts_at_one_over_close() -> None:
    sc = _base()
    sc["close_a"] = np.array([0.8] * 6 + [0.78] * 4)  # USDCHF
    sc["close_b"] = np.full(10, 1.25)
    rate_a = 1.0 / sc["close_a"]  # USD per CHF
    res = _run(sc, (CHF, USD), quote_to_account_a=rate_a)
    tr = res.trades.iloc[0]
    # one lot of USDCHF is 100 000 USD (1e5 × 0.8 CHF / 0.8) -> 1 lot; B 0.8 lots
    assert tr["qty_a"] == pytest.approx(-1.0, abs=1e-12)
    assert tr["qty_b"] == pytest.approx(0.8, abs=1e-12)
    # short 1 lot: +2000 CHF, worth 2000 / 0.78 USD at the exit bar
    pnl_a = 2000.0 / 0.78
    comm = (1e5 * 0.8 / 0.8 + 1e5) * 1e-4 + (1e5 * 0.78 / 0.78 + 1e5) * 1e-4  # 10 + 10 + 10 + 10
    assert tr["cost_commission"] == pytest.approx(comm, abs=1e-9)
    assert tr["pnl_gross"] == pytest.approx(pnl_a, abs=1e-7)
    assert tr["pnl"] == pytest.approx(pnl_a - comm, abs=1e-7)
    assert res.equity[-1] == pytest.approx(E0 + pnl_a - comm, abs=1e-7)


def test_rates_of_one_change_nothing() -> None:
    sc = _jpy_case()
    base = _run(sc, (JPY, USD))
    ones = _run(sc, (JPY, USD), quote_to_account_a=np.ones(10), quote_to_account_b=np.ones(10))
    np.testing.assert_array_equal(base.equity, ones.equity)
    pd.testing.assert_frame_equal(base.trades, ones.trades)
    # unconverted, sizing and PnL treat JPY as USD (the bug this conversion fixes)
    assert base.trades["qty_a"].iloc[0] != pytest.approx(-1.25)


def test_rate_after_t_changes_nothing_before_t() -> None:
    sc = _jpy_case()
    ref = _run(sc, (JPY, USD), quote_to_account_a=sc["rate_a"])
    for t in (3, 5, 6):
        r = sc["rate_a"].copy()
        r[t:] *= 1.37
        got = _run(sc, (JPY, USD), quote_to_account_a=r)
        np.testing.assert_array_equal(got.equity[:t], ref.equity[:t])
        assert not np.array_equal(got.equity[t:], ref.equity[t:])


def test_one_pair_portfolio_equals_run_backtest_with_rates() -> None:
    sc = _jpy_case()
    rb = _jpy_case()["close_b"] * 0 + 0.9  # a non-USD quote on B too
    res = _run(sc, (JPY, USD), quote_to_account_a=sc["rate_a"], quote_to_account_b=rb)
    pf = run_portfolio(
        [
            PairInputs(
                "XXXJPY_YYYUSD", sc["ts"], sc["close_a"], sc["close_b"], sc["z"], sc["beta"],
                sc["return_prob"], sc["risk_score"], sc["tradable"], JPY, USD,
                quote_to_account_a=sc["rate_a"], quote_to_account_b=rb,
            )
        ],
        COMM_1BP,
        BacktestParams(),
        PortfolioParams.unconstrained(),
        bar_ns=H,
    )  # fmt: skip
    np.testing.assert_array_equal(pf.equity, res.equity)
    np.testing.assert_array_equal(pf.trades["pnl"].to_numpy(), res.trades["pnl"].to_numpy())


def test_margin_on_usd_notional() -> None:
    sc = _jpy_case()
    args = (sc["ts"], sc["close_a"], sc["close_b"], sc["z"], sc["beta"], sc["return_prob"],
            sc["risk_score"], sc["tradable"], JPY, USD)  # fmt: skip
    pp = PortfolioParams.unconstrained()

    def trades(margin: float, rate: Any) -> int:
        pf = run_portfolio(
            [PairInputs("P", *args, margin_requirement=margin, quote_to_account_a=rate)],
            COMM_1BP, BacktestParams(), pp, bar_ns=H,
        )  # fmt: skip
        return len(pf.trades)

    # USD gross notional 200 000: margin 45 % = 90 000 <= equity 100 000; 55 % = 110 000 is not.
    # (Booked in JPY, leg A alone would be 1.25 × 1e5 × 80 = 10 000 000 and always refused.)
    assert trades(0.45, sc["rate_a"]) == 1
    assert trades(0.55, sc["rate_a"]) == 0
    bad = sc["rate_a"].copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match="quote_to_account_a must be finite and > 0"):
        trades(0.0, bad)

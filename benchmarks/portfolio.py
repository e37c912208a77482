"""Portfolio backtest throughput: 50 pairs × 48k bars in one compiled call.

Usage (from the repository root)::

    python3 -m uv run --frozen python benchmarks/portfolio.py [--pairs 50] [--bars 48000] [--repeats 5]

Inputs are synthetic and seeded: per pair, leg B a geometric random walk, the log spread an AR(1)
(OU, φ = 0.97), ``z`` its rolling 200-bar z-score, AI1 candidates where ``|z| >= 2`` with
``return_prob`` 0.9, ``risk_score`` 0.1, ``β = 1``, all bars tradable; hourly bars, pairs start
at staggered times (so the clock is a true union). Costs, legs and the account rules are the
defaults (5 % margin, caps and drawdown policy of ``config/backtest_policy.yaml`` /
``config/dd_policy.yaml`` defaults).

Figures (``time.perf_counter`` medians of ``--repeats`` runs after one untimed warm-up, so numba
is compiled or loaded from its cache):

* ``run_portfolio`` end to end — input checks and packing, clock merge, the kernel, the trades /
  events frames — in pair-bars per second (target ≥ 50 M/s), with the default account rules
  (margin, caps, drawdown policy) and with ``PortfolioParams.unconstrained()`` (the same work as
  separate single-pair runs);
* the same pairs as separate ``run_backtest`` calls (one pair each, no shared account), in
  pair-bars per second, and the speed ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from pairdesk.quant.backtest import BacktestParams, run_backtest
from pairdesk.quant.costs import CostModel, LegCosts, LegSpec
from pairdesk.quant.portfolio import PairInputs, PortfolioParams, run_portfolio
from scipy.signal import lfilter

H = 3_600_000_000_000
START = pd.Timestamp("2018-03-05", tz="UTC").value


def make_pairs(n_pairs: int, n_bars: int, seed: int = 42) -> tuple[list[PairInputs], CostModel]:
    rng = np.random.default_rng(seed)
    legs: dict[str, LegCosts] = {}
    pairs = []
    for k in range(n_pairs):
        a_sym, b_sym = f"A{k:02d}", f"B{k:02d}"
        legs[a_sym] = LegCosts(2.0, 1.0, 1.0, -2.0, -1.0)
        legs[b_sym] = LegCosts(3.0, 1.0, 1.0, -1.0, -2.0)
        lb = np.log(50.0) + np.cumsum(rng.normal(0, 0.002, n_bars))
        s = lfilter([1.0], [1.0, -0.97], rng.normal(0, 0.002, n_bars))
        a = np.round(100.0 * np.exp(s + lb - np.log(50.0)), 2)
        b = np.round(np.exp(lb), 2)
        spread = pd.Series(np.log(a) - np.log(b))
        z = ((spread - spread.rolling(200).mean()) / spread.rolling(200).std()).to_numpy()
        start = START + H * (k % 7)
        pairs.append(
            PairInputs(
                pair_id=f"{a_sym}_{b_sym}",
                ts=start + H * np.arange(n_bars, dtype=np.int64),
                close_a=a,
                close_b=b,
                z=z,
                beta=np.ones(n_bars),
                return_prob=np.where(np.abs(z) >= 2.0, 0.9, np.nan),
                risk_score=np.full(n_bars, 0.1),
                tradable=np.ones(n_bars, dtype=bool),
                leg_a=LegSpec(a_sym, 0.01, 1.0, 0.01, 0.01),
                leg_b=LegSpec(b_sym, 0.01, 1.0, 0.01, 0.01),
                min_notional_usd=100.0,
                margin_requirement=0.05,
            )
        )
    return pairs, CostModel(legs=legs)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up: JIT compile or cache load
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--bars", type=int, default=48_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    pairs, costs = make_pairs(args.pairs, args.bars)
    params = BacktestParams(theta1=0.7, theta2=0.3)
    pf = PortfolioParams()
    pair_bars = args.pairs * args.bars

    def portfolio() -> object:
        return run_portfolio(pairs, costs, params, pf)

    def portfolio_free() -> object:
        return run_portfolio(pairs, costs, params, PortfolioParams.unconstrained())

    def separate() -> object:
        return [
            run_backtest(
                p.ts, p.close_a, p.close_b, p.z, p.beta, p.return_prob, p.risk_score,
                p.tradable, (p.leg_a, p.leg_b), costs, params,
                min_notional_usd=p.min_notional_usd, bar_ns=H,
            )
            for p in pairs
        ]  # fmt: skip

    res = run_portfolio(pairs, costs, params, pf)
    med_p, min_p = timed(portfolio, args.repeats)
    med_f, min_f = timed(portfolio_free, args.repeats)
    med_s, min_s = timed(separate, args.repeats)
    k = res.kpis()
    print(f"portfolio backtest: {args.pairs} pairs × {args.bars:,} bars = {pair_bars:,} pair-bars")
    print(
        f"  clock {len(res.ts):,} steps, {len(res.trades):,} trades, "
        f"{len(res.dd_events)} DD transitions, refused {res.counters['PORTFOLIO'].refused}, "
        f"blocked {res.counters['PORTFOLIO'].blocked}, ruined {res.ruined}"
    )
    print(
        f"  portfolio Sharpe {k['sharpe']:.2f}, ann_return {k['ann_return']:.3f}, "
        f"max_dd {k['max_dd']:.3f}, trades/yr {k['trades_per_year']:.0f}"
    )
    rate_p = pair_bars / med_p
    rate_s = pair_bars / med_s
    target = "PASS" if rate_p >= 50e6 else "FAIL"
    print(
        f"run_portfolio end to end: median {med_p * 1e3:.1f} ms (min {min_p * 1e3:.1f} ms) = "
        f"{rate_p / 1e6:.1f} M pair-bars/s  [target >= 50 M/s: {target}]"
    )
    rate_f = pair_bars / med_f
    print(
        f"run_portfolio, unconstrained account: median {med_f * 1e3:.1f} ms "
        f"(min {min_f * 1e3:.1f} ms) = {rate_f / 1e6:.1f} M pair-bars/s"
    )
    print(
        f"{args.pairs} separate run_backtest calls: median {med_s * 1e3:.1f} ms "
        f"(min {min_s * 1e3:.1f} ms) = {rate_s / 1e6:.1f} M pair-bars/s"
    )
    print(
        f"ratio portfolio / separate (same run): {rate_p / rate_s:.2f}× with the account rules, "
        f"{rate_f / rate_s:.2f}× unconstrained"
    )


if __name__ == "__main__":
    main()

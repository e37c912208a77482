"""Portfolio ``bt train`` / ``bt run`` on a two-pair universe (metals + crypto, real data) and the
honesty guards: in-sample refusal, the AI2 false-positive term of the θ score, imputed bars never a
signal or a fill, look-ahead through a portfolio run (issue: research pipeline at universe scale)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pairdesk.quant.backtest import BacktestParams, grid_search, run_backtest
from pairdesk.quant.costs import CostModel
from pairdesk.quant.features import compute_features
from pairdesk.quant.labels import ai1_candidates
from pairdesk.quant.portfolio import PortfolioParams
from pairdesk.research.cli import app
from pairdesk.research.config import load_yaml
from pairdesk.research.inputs import PairInputs, drop_trailing_imputed, load_pair_inputs
from pairdesk.research.pipeline import run_ingest, training_guard
from pairdesk.research.provenance import parse_period
from pairdesk.research.settings import load_settings
from pairdesk.research.train import oos_theta_grid, theta_grid_values
from pairdesk.research.universe import load_universe
from typer.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[2]
COST = REPO / "config" / "cost_table.yaml"
TRAIN = "2024-09-15:2025-11-27"
RUN = "2025-12:2026-01"
# θ1 = 0 and θ2 = 1 so the two-month run has trades on both pairs (the short training slice
# gives an infeasible θ grid; the point here is the plumbing and the numbers, not the edge).
THETA = ("--theta1", "0.0", "--theta2", "1.0")
CUT = pd.Timestamp("2026-01-12", tz="UTC")
runner = CliRunner()


def invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def two_pair_universe(dest: Path) -> Path:
    a = load_yaml(REPO / "config" / "universe.yaml")
    b = load_yaml(REPO / "config" / "universe_crypto.yaml")
    # crypto traded on 20x margin like the metals CFDs, so both pairs can hold a position at once
    # under the shared capital (spot margin 1.0 leaves no room next to a metals position)
    b["pairs"][0]["constraints"]["margin_requirement"] = 0.05
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "universe.yaml"
    path.write_text(yaml.safe_dump({"pairs": a["pairs"] + b["pairs"]}, sort_keys=False))
    return path


def write_drop(dest: Path, perturb_after: pd.Timestamp | None = None, seed: int = 3) -> Path:
    """XAUUSD/XAGUSD and BTCUSDT/ETHUSDT 1h from data/, 2024-09-14 → 2026-02-01; prices of bars
    at or after ``perturb_after`` multiplied by U(0.97, 1.03) (seeded)."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for folder, syms in (("mt5_simom1_h1", ("XAUUSD", "XAGUSD")), ("binance_spot_1h", ("BTCUSDT", "ETHUSDT"))):
        for sym in syms:
            df = pd.read_csv(REPO / "data" / folder / f"{sym}_1h.csv.gz")
            ts = pd.to_datetime(df["ts_utc"], utc=True)
            df = df[(ts >= pd.Timestamp("2024-09-14", tz="UTC")) & (ts < pd.Timestamp("2026-02-01", tz="UTC"))]
            df = df.reset_index(drop=True)
            if perturb_after is not None:
                after = pd.to_datetime(df["ts_utc"], utc=True) >= perturb_after
                f = rng.uniform(0.97, 1.03, size=int(after.sum()))
                for c in ("open", "high", "low", "close"):
                    df.loc[after, c] = df.loc[after, c] * f
            df.to_csv(dest / f"{sym}_1h.csv", index=False)
    return dest


@pytest.fixture(scope="module")
def two_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("portfolio")
    universe = two_pair_universe(root / "scan_out")
    # what `bt scan` writes next to its universe.yaml (read by the report by file name only)
    pd.DataFrame({"pair_id": ["XAUUSD_XAGUSD", "BTCUSDT_ETHUSDT", "XAUUSD_BTCUSDT"],
                  "half_life_bars": [31.0, 22.0, 900.0], "selected": [True, True, False]}).to_csv(
        root / "scan_out" / "candidates.csv", index=False)
    store = root / "store"
    run_ingest(path=write_drop(root / "drop"), store=store, timeframe="1h", symbols=None, universe=universe)
    models = root / "models" / "p1"
    r = invoke("bt", "train", "--universe", universe, "--period", TRAIN, "--store", store, "--out", models)
    assert r.exit_code == 0, r.output
    out = root / "bt"
    r = invoke("bt", "run", "--universe", universe, "--period", RUN, "--model-dir", models, "--store", store,
               "--out", out, *THETA)
    assert r.exit_code == 0, r.output
    (root / "run_output.txt").write_text(r.output)
    return {"root": root, "universe": universe, "store": store, "models": models, "out": out,
            "output": root / "run_output.txt"}


# ------------------------------------------------------------------------------ end to end


def test_train_records_training_period_portfolio_grid_and_feasibility(two_pair: dict[str, Path]) -> None:
    params = yaml.safe_load((two_pair["models"] / "params.yaml").read_text())
    assert params["created_from"]["pairs"] == ["XAUUSD_XAGUSD", "BTCUSDT_ETHUSDT"]
    assert params["theta_scope"] == "portfolio"
    tp = params["training_period"]
    assert pd.Timestamp(tp["start"]) == pd.Timestamp("2024-09-15", tz="UTC")
    assert pd.Timestamp(tp["end"]) == pd.Timestamp("2025-11-28", tz="UTC")
    assert tp["guard_bars"] == 48
    grid = pd.read_csv(two_pair["models"] / "theta_grid.csv")
    assert {"fp_rate_ai2", "halt_rate", "score", "feasible"} <= set(grid.columns)
    # `feasible` in params.yaml is the grid's: true iff some cell met the hard constraints
    assert params["feasible"] is bool(grid["feasible"].any())
    assert params["theta"]["feasible"] is params["feasible"]


def test_portfolio_and_pair_rows_match_the_written_files(two_pair: dict[str, Path]) -> None:
    out = two_pair["out"]
    summary = pd.read_csv(out / "bt_summary.csv")
    trades = pd.read_csv(out / "bt_trades.csv")
    equity = pd.read_csv(out / "bt_daily_equity.csv")
    assert list(summary["pair_id"]) == ["PORTFOLIO", "XAUUSD_XAGUSD", "BTCUSDT_ETHUSDT"]
    assert list(summary["scope"]) == ["portfolio", "pair", "pair"]
    assert not summary["in_sample"].any()
    assert not trades["in_sample"].any()
    assert not equity["in_sample"].any()
    port = summary.iloc[0]
    pairs = summary.iloc[1:].set_index("pair_id")
    assert set(trades["pair_id"]) == set(pairs.index)
    for pid, row in pairs.iterrows():
        t = trades[trades["pair_id"] == pid]
        assert row["trades"] == len(t) > 0
        assert row["total_pnl"] == pytest.approx(t["pnl"].sum(), abs=1e-6)
    # portfolio KPIs recomputed from the trade file (pandas, not the engine)
    e0 = 100_000.0
    assert port["trades"] == len(trades)
    assert port["total_pnl"] == pytest.approx(trades["pnl"].sum(), abs=1e-6)
    assert port["win_rate"] == pytest.approx((trades["pnl"] > 0).mean(), abs=1e-12)
    assert port["e_per_trade"] == pytest.approx(trades["return_on_capital"].mean(), abs=1e-12)
    assert port["pnl_sigma"] == pytest.approx(trades["pnl"].std(ddof=1), rel=1e-9)
    for col in ("candidates", "passed_theta1", "vetoed_by_ai2", "entries"):
        assert port[col] == pairs[col].sum(), col
    # portfolio daily equity = E0 + Σ pairs' PnL, each pair carried forward over days it has no bar
    pe = equity[equity["scope"] == "portfolio"].set_index("date")["equity"]
    assert (equity.loc[equity["scope"] == "portfolio", "pair_id"] == "PORTFOLIO").all()
    summed = pd.Series(e0, index=pe.index)
    for pid in pairs.index:
        pq = equity[equity["pair_id"] == pid].set_index("date")["equity"]
        summed += (pq.reindex(pe.index.union(pq.index)).sort_index().ffill().fillna(e0) - e0).reindex(pe.index)
    np.testing.assert_allclose(pe.to_numpy(), summed.to_numpy(), atol=1e-6)
    assert pe.iloc[-1] == pytest.approx(e0 + trades["pnl"].sum(), abs=1e-6)
    dd = (np.maximum.accumulate(np.r_[e0, pe.to_numpy()])[1:] - pe) / e0  # units of E_0
    np.testing.assert_allclose(equity.loc[equity["scope"] == "portfolio", "dd"], dd, atol=1e-12)
    # CIs bracket nothing absurd and exist for the portfolio
    for kpi in ("ann_return", "sharpe", "max_dd", "win_rate"):
        lo, hi = port[f"{kpi}_ci_low"], port[f"{kpi}_ci_high"]
        assert np.isfinite(lo), kpi
        assert np.isfinite(hi), kpi
        assert lo <= hi, kpi
    # the printed portfolio table is the PORTFOLIO row
    output = two_pair["output"].read_text()
    printed = dict(re.findall(r"│ (\w+)\s+│\s+(-?[\d.]+|nan) │", output))
    for kpi in ("ann_return", "sharpe", "max_dd", "win_rate", "trades_per_year"):
        assert float(printed[kpi]) == pytest.approx(port[kpi], abs=5e-5), kpi
    assert "per pair" in output
    assert "adoption rule (spec 004 §採用判定) on the portfolio" in output
    assert "ruin: none" in output


def test_report_has_portfolio_sections_and_scan_table(two_pair: dict[str, Path]) -> None:
    html = (two_pair["out"] / "report.html").read_text()
    for text in ("Portfolio KPIs", "Adoption rule on the portfolio", "Portfolio equity", "Portfolio drawdown",
                 "PnL by pair", "id='pairs'", "id='dd-events'", "Pairs chosen by bt scan (2 of 3",
                 "half_life_bars"):
        assert text in html, text
    assert "XAUUSD_BTCUSDT" not in html  # a candidate the scan did not select
    assert html.count("data:image/png;base64,") == 3
    assert "IN-SAMPLE" not in html
    for pid in ("XAUUSD_XAGUSD", "BTCUSDT_ETHUSDT"):
        assert (two_pair["out"] / f"report_{pid}.html").is_file()


def test_in_sample_period_is_refused_unless_allowed(two_pair: dict[str, Path], tmp_path: Path) -> None:
    args = ("bt", "run", "--universe", two_pair["universe"], "--model-dir", two_pair["models"],
            "--store", two_pair["store"], *THETA)
    # the first M = 48 bars after the training end are still refused
    r = invoke(*args, "--period", "2025-11-29:2025-12-31", "--out", tmp_path / "a")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ")
    assert "\n" not in err
    assert "--allow-in-sample" in err
    assert "overlaps the model's training period" in err
    assert not (tmp_path / "a").exists()
    r = invoke(*args, "--period", "2025-11:2025-12", "--out", tmp_path / "b", "--allow-in-sample")
    assert r.exit_code == 0, r.output
    assert "IN-SAMPLE" in r.output
    for name in ("bt_summary", "bt_trades", "bt_daily_equity"):
        df = pd.read_csv(tmp_path / "b" / f"{name}.csv")
        assert df["in_sample"].astype(bool).all(), name
    html = (tmp_path / "b" / "report.html").read_text()
    assert "<title>IN-SAMPLE " in html
    assert "IN-SAMPLE: the period overlaps" in html


def test_training_guard_widens_by_m_bars() -> None:
    p = {"training_period": {"start": "2022-01-01T00:00:00+00:00", "end": "2024-01-01T00:00:00+00:00",
                             "guard_bars": 48, "bar_minutes": 60}}
    lo, hi = training_guard(p)  # type: ignore[misc]
    assert lo == pd.Timestamp("2021-12-30", tz="UTC")
    assert hi == pd.Timestamp("2024-01-03", tz="UTC")
    # an older bundle without training_period: created_from.period (end inclusive) and exit_rule.M
    old = {"created_from": {"period": "2022-01-01:2023-12-31", "timeframe": "4h"}, "exit_rule": {"M": 6}}
    assert training_guard(old) == (pd.Timestamp("2021-12-31", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC"))
    assert training_guard({}) is None


def test_portfolio_run_has_no_look_ahead(two_pair: dict[str, Path], tmp_path: Path) -> None:
    """Bars after T perturbed (both pairs) → every trade closed before T and the portfolio equity
    of the days before T are unchanged."""
    store2 = tmp_path / "store2"
    run_ingest(path=write_drop(tmp_path / "drop2", perturb_after=CUT), store=store2, timeframe="1h", symbols=None,
               universe=two_pair["universe"])
    out2 = tmp_path / "bt2"
    r = invoke("bt", "run", "--universe", two_pair["universe"], "--period", RUN, "--model-dir", two_pair["models"],
               "--store", store2, "--out", out2, *THETA)
    assert r.exit_code == 0, r.output
    ta, tb = pd.read_csv(two_pair["out"] / "bt_trades.csv"), pd.read_csv(out2 / "bt_trades.csv")
    drop = ["run_id", "data_hash"]
    before_a = ta[pd.to_datetime(ta["timestamp_exit"]) < CUT].drop(columns=drop).reset_index(drop=True)
    before_b = tb[pd.to_datetime(tb["timestamp_exit"]) < CUT].drop(columns=drop).reset_index(drop=True)
    assert len(before_a) > 0
    assert before_a["pair_id"].nunique() == 2
    pd.testing.assert_frame_equal(before_a, before_b)
    ea, eb = pd.read_csv(two_pair["out"] / "bt_daily_equity.csv"), pd.read_csv(out2 / "bt_daily_equity.csv")
    day = CUT.date().isoformat()
    pa = ea[(ea["pair_id"] == "PORTFOLIO") & (ea["date"] < day)].reset_index(drop=True)
    pb = eb[(eb["pair_id"] == "PORTFOLIO") & (eb["date"] < day)].reset_index(drop=True)
    assert len(pa) > 20
    pd.testing.assert_frame_equal(pa[["date", "equity", "dd"]], pb[["date", "equity", "dd"]])


# ------------------------------------------------------------------ synthetic: grid and masks


def synthetic_inputs(pair_id: str, n: int, seed: int, imputed: np.ndarray | None = None) -> PairInputs:
    """A cointegrated pair on a 24/7 clock (crypto legs/costs from config), features v1 and AI1
    candidates computed by the real code."""
    settings = load_settings("1h")
    pair = replace(load_universe(REPO / "config" / "universe_crypto.yaml")[0], pair_id=pair_id)
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC", name="ts_utc")
    lb = np.log(3000.0) + np.cumsum(rng.normal(0, 0.004, n))
    spread = np.zeros(n)
    for t in range(1, n):
        spread[t] = 0.995 * spread[t - 1] + rng.normal(0, 0.002)
    la = np.log(60000.0) - 1.2 * np.log(3000.0) + 1.2 * lb + spread

    def bars(logp: np.ndarray) -> pd.DataFrame:
        c = np.exp(logp)
        return pd.DataFrame({"open": c, "high": c * 1.001, "low": c * 0.999, "close": c, "volume": 1.0}, index=idx)

    a, b = bars(la), bars(lb)
    feats = compute_features(a, b, settings.features)
    imp = np.zeros(n, dtype=bool) if imputed is None else imputed
    return PairInputs(pair=pair, bars_a=a, bars_b=b, features=feats,
                      candidates=np.asarray(ai1_candidates(feats, settings.labels), dtype=bool),
                      tradable=np.ones(n, dtype=bool) & ~imp, imputed=imp,
                      costs=CostModel.from_mapping(load_yaml(COST), ["BTCUSDT", "ETHUSDT"]), data_hash="x")


def synthetic_oos(inp: PairInputs, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random walk-forward-like predictions and AI2 labels (about half negative) for ``inp``."""
    rng = np.random.default_rng(seed)
    n = len(inp.features)
    idx = inp.features.index
    oos = pd.DataFrame({"pair_id": inp.pair.pair_id, "fold": 0,
                        "return_prob": np.where(inp.candidates, rng.uniform(0, 1, n), np.nan),
                        "risk_score": rng.uniform(0, 1, n)}, index=idx)
    labelled = np.isfinite(inp.features["z"].to_numpy())
    labels = pd.DataFrame({"y": rng.integers(0, 2, n)}, index=idx).loc[labelled]
    return oos, labels


def independent_fp_count(inp: PairInputs, oos: pd.DataFrame, labels: pd.DataFrame, theta1: float,
                         theta2: float, bt_params: BacktestParams) -> tuple[int, int]:
    """(AI2 negatives, false positives) at the decision points of one pair, counted with numpy:
    decision bars are tradable AI1-candidate bars where the strategy is flat — not strictly
    between a trade's entry signal and its exit fill (trades from the engine)."""
    kw = inp.engine_inputs(return_prob=oos["return_prob"].to_numpy(), risk_score=oos["risk_score"].to_numpy())
    res = run_backtest(**kw, params=replace(bt_params, theta1=theta1, theta2=theta2))
    busy = np.zeros(len(inp.features), dtype=bool)
    for s, f in zip(res.trades["bar_signal_entry"], res.trades["bar_exit"], strict=True):
        busy[s + 1 : f] = True
    prob, risk = kw["return_prob"], kw["risk_score"]
    decision = kw["tradable"] & np.isfinite(prob) & ~busy
    passed = decision & (prob > theta1)
    y = labels["y"].reindex(inp.features.index).to_numpy(np.float64)
    negative = passed & (y == 0)
    fp = negative & ~(risk < theta2)
    return int(negative.sum()), int(fp.sum())


def test_theta_grid_ai2_false_positive_term_equals_an_independent_count() -> None:
    """Two pairs, no caps / DD policy (so each pair's path is its own backtest): the grid's
    fp_rate_ai2 is Σ false positives / Σ AI2 negatives counted independently with numpy, and the
    λ_stop term is in the score."""
    settings = load_settings("1h")
    settings = replace(settings, theta_range={"theta1": [0.0, 0.4], "theta2": [0.3, 0.9], "step": 0.2})
    inputs = [synthetic_inputs("P1", 3000, 1), synthetic_inputs("P2", 2500, 2)]
    parts = [synthetic_oos(p, 10 + i) for i, p in enumerate(inputs)]
    oos = pd.concat([o for o, _ in parts])
    labels = {p.pair.pair_id: lab for p, (_, lab) in zip(inputs, parts, strict=True)}
    free = PortfolioParams.unconstrained()
    grid = oos_theta_grid(inputs, oos, settings, load_yaml(COST), labels, portfolio=free)
    t1, t2 = theta_grid_values(settings)
    assert len(grid) == len(t1) * len(t2)
    checked = 0
    for _, cell in grid.iterrows():
        neg = fp = 0
        for p, (o, lab) in zip(inputs, parts, strict=True):
            n_, f_ = independent_fp_count(p, o, lab, cell["theta1"], cell["theta2"], settings.backtest)
            neg, fp = neg + n_, fp + f_
        if neg:
            assert cell["fp_rate_ai2"] == pytest.approx(fp / neg, abs=1e-12)
            checked += fp > 0
        else:
            assert np.isnan(cell["fp_rate_ai2"])
        ob = settings.theta_objective
        expect = (cell["ann_return"] - ob.lambda_dd * max(0.0, cell["max_dd"] - ob.dd_target)
                  - ob.lambda_trades * max(0.0, ob.trades_min - cell["trades_per_year"])
                  - (ob.lambda_stop * cell["fp_rate_ai2"] if np.isfinite(cell["fp_rate_ai2"]) else 0.0))
        assert cell["score"] == pytest.approx(expect, abs=1e-12)
    assert checked >= 3  # cells with real false positives were compared
    # without labels the term is absent (NaN), as in the quant grid search
    g = oos_theta_grid(inputs, oos, settings, load_yaml(COST), portfolio=free)
    assert g["fp_rate_ai2"].isna().all()


def test_one_pair_portfolio_grid_equals_the_quant_grid_search() -> None:
    settings = replace(load_settings("1h"), theta_range={"theta1": [0.0, 0.4], "theta2": [0.3, 0.9], "step": 0.2})
    inp = synthetic_inputs("P1", 3000, 5)
    oos, lab = synthetic_oos(inp, 6)
    grid = oos_theta_grid([inp], oos, settings, load_yaml(COST), {"P1": lab},
                          portfolio=PortfolioParams.unconstrained())
    t1, t2 = theta_grid_values(settings)
    ref = grid_search(**inp.engine_inputs(return_prob=oos["return_prob"].to_numpy(),
                                          risk_score=oos["risk_score"].to_numpy()),
                      params=settings.backtest, theta1_grid=t1, theta2_grid=t2,
                      risk_label=lab["y"].reindex(inp.features.index).to_numpy(np.float64),
                      objective=settings.theta_objective, kpi_params=settings.kpi_params_for(inp.features.index))
    ref_df = pd.DataFrame(ref.ravel())
    for col in ("trades", "ann_return", "max_dd", "sharpe", "fp_rate_ai2", "score", "feasible"):
        np.testing.assert_allclose(grid[col].to_numpy(np.float64), ref_df[col].to_numpy(np.float64),
                                   rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=col)


def test_imputed_bars_are_never_a_signal_or_a_fill() -> None:
    settings = load_settings("1h")
    n = 3000
    base = synthetic_inputs("P1", n, 21)
    oos, _ = synthetic_oos(base, 22)
    rp, rs = oos["return_prob"].to_numpy(), oos["risk_score"].to_numpy()
    prm = replace(settings.backtest, theta1=0.0, theta2=1.0)
    free = run_backtest(**base.engine_inputs(return_prob=rp, risk_score=rs), params=prm).trades
    assert len(free) > 5
    # mark as imputed the bars the unmasked run filled on or signalled an exit on, and every other
    # entry-signal bar (not the last bar)
    imp = np.zeros(n, dtype=bool)
    for col in ("bar_entry", "bar_signal_exit", "bar_exit"):
        imp[free[col].to_numpy()] = True
    imp[free["bar_signal_entry"].to_numpy()[::2]] = True
    imp[-1] = False
    masked = synthetic_inputs("P1", n, 21, imputed=imp)
    kw = masked.engine_inputs(return_prob=rp, risk_score=rs)
    assert not kw["tradable"][imp].any()
    assert np.isnan(kw["z"][imp]).all()
    assert np.isnan(kw["return_prob"][imp]).all()
    assert np.isnan(kw["risk_score"][imp]).all()
    trades = run_backtest(**kw, params=prm).trades
    assert len(trades) > 0
    for col in ("bar_signal_entry", "bar_entry", "bar_signal_exit", "bar_exit"):
        assert not imp[trades[col].to_numpy()].any(), col
    # a slice ending in imputed bars is cut back to the last real bar
    m = np.ones(6, dtype=bool)
    assert drop_trailing_imputed(m, np.array([0, 1, 0, 0, 1, 1], dtype=bool)).tolist() == [1, 1, 1, 1, 0, 0]


def test_imputed_store_bars_are_flagged_and_not_tradable(tmp_path: Path) -> None:
    """A one-bar hole inside a metals session is imputed by the ingest DQ; load_pair_inputs marks
    that bar imputed and not tradable."""
    drop = tmp_path / "drop"
    drop.mkdir()
    hole = pd.Timestamp("2024-03-13 14:00", tz="UTC")  # a Wednesday, mid-session
    for sym in ("XAUUSD", "XAGUSD"):
        df = pd.read_csv(REPO / "data" / "mt5_simom1_h1" / f"{sym}_1h.csv.gz")
        ts = pd.to_datetime(df["ts_utc"], utc=True)
        df = df[(ts >= pd.Timestamp("2024-01-01", tz="UTC")) & (ts < pd.Timestamp("2024-05-01", tz="UTC"))]
        if sym == "XAGUSD":
            df = df[pd.to_datetime(df["ts_utc"], utc=True) != hole]
        df.to_csv(drop / f"{sym}_1h.csv", index=False)
    store = tmp_path / "store"
    universe = REPO / "config" / "universe.yaml"
    run_ingest(path=drop, store=store, timeframe="1h", symbols=None, universe=universe)
    pair = load_universe(universe)[0]
    inp = load_pair_inputs(pair, store_dir=store, period=parse_period("2024-01:2024-04"), settings=load_settings("1h"),
                           cost_table=load_yaml(COST))
    i = inp.features.index.get_loc(hole)
    assert inp.imputed[i]
    assert not inp.tradable[i]
    assert inp.imputed.sum() >= 1
    assert not (inp.tradable & inp.imputed).any()

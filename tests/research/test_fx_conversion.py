"""Quote-currency conversion on the research side (spec 004 §コストテーブル / ユニバース仕様 v1
通貨換算; docs/quant-contracts.md §Currency conversion) and the default pair constraints.

A short real slice of data/mt5_andre_h1 (GBPUSD, GBPCHF, USDCHF, AUDJPY; 2017-01..2017-03) is
ingested into a temporary store: a CHF-quoted leg converts via 1 / USDCHF as-of each bar (checked
against ``pandas.merge_asof``), a JPY cross without USDJPY is a one-line error, ``bt scan`` marks
it, ``bt train`` stops with a one-line error, and pairs without ``constraints`` get the asset-class
defaults.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pairdesk.research.cli import app
from pairdesk.research.config import load_policy, load_yaml
from pairdesk.research.inputs import conversion_rates, load_pair_inputs, margin_requirements
from pairdesk.research.pipeline import run_ingest
from pairdesk.research.provenance import parse_period
from pairdesk.research.scan import run_scan
from pairdesk.research.settings import load_settings
from pairdesk.research.store import load_bars
from pairdesk.research.universe import load_universe
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
COST = REPO / "config" / "cost_table.yaml"
SYMS = ("GBPUSD", "GBPCHF", "USDCHF", "AUDJPY")
PERIOD = "2017-01:2017-04"


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fxconv")
    drop = root / "drop"
    drop.mkdir()
    lo, hi = pd.Timestamp("2017-01-01", tz="UTC"), pd.Timestamp("2017-04-01", tz="UTC")
    for sym in SYMS:
        df = pd.read_csv(REPO / "data" / "mt5_andre_h1" / f"{sym}_1h.csv.gz")
        ts = pd.to_datetime(df["ts_utc"], utc=True)
        df[(ts >= lo) & (ts < hi)].to_csv(drop / f"{sym}_1h.csv", index=False)
    raw = load_yaml(REPO / "config" / "universe_fx.yaml")
    raw["symbols"] = [s for s in raw["symbols"] if s["canonical_symbol"] in SYMS]
    raw["defaults"].pop("data_dir", None)
    raw["pairs"] = [
        {"pair_id": "GBPUSD_GBPCHF", "leg_A": "GBPUSD", "leg_B": "GBPCHF"},
        {"pair_id": "AUDJPY_GBPCHF", "leg_A": "AUDJPY", "leg_B": "GBPCHF"},
        {
            "pair_id": "GBPUSD_USDCHF",
            "leg_A": "GBPUSD",
            "leg_B": "USDCHF",
            "constraints": {"min_notional_usd": 5.0},
        },
    ]
    universe = root / "universe.yaml"
    universe.write_text(yaml.safe_dump(raw, sort_keys=False))
    store = root / "store"
    run_ingest(path=drop, store=store, timeframe="1h", symbols=None, universe=universe)
    return {"root": root, "store": store, "universe": universe}


def test_chf_leg_converts_via_usdchf_as_of(fx: dict[str, Path]) -> None:
    pair = load_universe(fx["universe"], ["GBPUSD_GBPCHF"])[0]
    inp = load_pair_inputs(
        pair, store_dir=fx["store"], period=parse_period(PERIOD), settings=load_settings("1h"),
        cost_table=load_yaml(COST),
    )  # fmt: skip
    assert inp.rate_a is None  # GBPUSD is quoted in USD
    assert inp.rate_b is not None
    # independent: latest USDCHF bar at or before each bar, USD per CHF = 1 / close
    usdchf = load_bars(fx["store"], "USDCHF", "1h").reset_index()
    left = pd.DataFrame({"ts_utc": inp.features.index})
    joined = pd.merge_asof(left, usdchf[["ts_utc", "close"]], on="ts_utc", direction="backward")
    np.testing.assert_allclose(inp.rate_b, 1.0 / joined["close"].to_numpy(), rtol=1e-15)
    # engine inputs carry the rates; a GBP/CHF cross is worth ~1.2-1.3 USD per CHF... per unit
    kw = inp.engine_inputs(return_prob=np.full(len(left), np.nan), risk_score=np.zeros(len(left)))
    assert kw["quote_to_account_b"] is inp.rate_b
    assert 0.9 < float(np.median(inp.rate_b)) < 1.1  # USDCHF ≈ 1.0 in early 2017
    # a slice keeps the rates aligned
    m = np.zeros(len(left), dtype=bool)
    m[100:200] = True
    np.testing.assert_array_equal(inp.slice(m).rate_b, inp.rate_b[100:200])


def test_stale_rate_holds_the_bar_and_carries_the_last_rate(fx: dict[str, Path]) -> None:
    usdchf = load_bars(fx["store"], "USDCHF", "1h")
    # bars 30 min after each USDCHF bar open, then one 5 h after the last bar
    t = pd.DatetimeIndex(usdchf.index)
    idx = pd.DatetimeIndex([*(t[10:20] + pd.Timedelta(minutes=30)), t[-1] + pd.Timedelta(hours=5)])
    rate, fresh = conversion_rates(fx["store"], "CHF", "USD", "1h", idx, 3, leg="GBPCHF")
    np.testing.assert_allclose(rate[:10], 1.0 / usdchf["close"].to_numpy()[10:20])
    assert fresh[:10].all()
    assert rate[10] == pytest.approx(1.0 / usdchf["close"].iloc[-1])  # carried
    assert not fresh[10]  # 5 bars old > 3
    _, fresh0 = conversion_rates(fx["store"], "CHF", "USD", "1h", idx, 0, leg="GBPCHF")
    assert not fresh0[:10].any()  # 30 min old > 0 bars
    # look-ahead: a rate bar after T changes nothing at or before T (as-of join backward)
    early = idx[:5]
    r_all, _ = conversion_rates(fx["store"], "CHF", "USD", "1h", early, 3)
    np.testing.assert_array_equal(r_all, rate[:5])


def test_jpy_cross_without_usdjpy_is_a_one_line_error(fx: dict[str, Path]) -> None:
    pair = load_universe(fx["universe"], ["AUDJPY_GBPCHF"])[0]
    msg = (
        "AUDJPY is quoted in JPY: no USDJPY or JPYUSD bars in the store for 1h; "
        "cannot convert PnL to USD"
    )
    with pytest.raises(ValueError, match=msg) as exc:
        load_pair_inputs(
            pair, store_dir=fx["store"], period=parse_period(PERIOD), settings=load_settings("1h"),
            cost_table=load_yaml(COST),
        )  # fmt: skip
    assert "\n" not in str(exc.value)


def test_default_constraints_applied_when_a_pair_gives_none(fx: dict[str, Path]) -> None:
    pairs = {p.pair_id: p for p in load_universe(fx["universe"])}
    allowed = load_policy(REPO / "config" / "pipeline_policy.yaml")["timeframe_allowed"]
    p = pairs["GBPUSD_GBPCHF"]
    assert (p.margin_requirement, p.min_notional_usd) == (0.05, 100.0)
    assert list(p.allowed_timeframes) == list(allowed)
    # a pair with its own constraints keeps them (no margin given -> no margin check)
    q = pairs["GBPUSD_USDCHF"]
    assert (q.margin_requirement, q.min_notional_usd) == (0.0, 5.0)
    assert margin_requirements(load_universe(fx["universe"])) == {"GBPUSD_GBPCHF": 0.05, "AUDJPY_GBPCHF": 0.05}


def test_scan_marks_pairs_without_conversion_and_writes_constraints(fx: dict[str, Path]) -> None:
    out = fx["root"] / "scan"
    res = run_scan(
        store=fx["store"], timeframe="1h", period=PERIOD, out=out, symbols=list(SYMS),
        overrides={"alpha": 0.999, "half_life_max_bars": 1e9, "cost_multiple": 0.0},
    )  # fmt: skip
    cand = res.candidates
    jpy = (cand["leg_A"] == "AUDJPY") | (cand["leg_B"] == "AUDJPY")
    assert jpy.sum() == 3
    assert not cand.loc[jpy, "selected"].any()
    assert cand.loc[jpy, "failed_filters"].str.contains("no conversion to USD").all()
    assert not cand.loc[~jpy, "failed_filters"].str.contains("no conversion").any()
    assert list(cand["rank"]) == list(range(1, len(cand) + 1))
    assert cand["selected"].to_numpy()[: int(cand["selected"].sum())].all()  # selected first
    doc = yaml.safe_load((out / "universe.yaml").read_text())
    assert doc["pairs"], "the CHF/USD pairs pass the relaxed filters"
    for p in doc["pairs"]:
        assert "AUDJPY" not in p["pair_id"]
        assert p["constraints"] == {
            "margin_requirement": 0.05,
            "min_notional_usd": 100.0,
            "allowed_timeframes": ["1h"],
        }


def test_bt_train_without_conversion_is_a_one_line_cli_error(fx: dict[str, Path]) -> None:
    out = fx["root"] / "models_jpy"
    r = CliRunner().invoke(
        app,
        [
            "bt", "train", "--universe", str(fx["universe"]), "--pairs", "AUDJPY_GBPCHF",
            "--period", PERIOD, "--store", str(fx["store"]), "--out", str(out),
        ],
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "AUDJPY is quoted in JPY: no USDJPY or JPYUSD bars in the store for 1h" in r.output
    assert not out.exists()


def test_scan_of_a_symbols_universe_writes_default_constraints(fx: dict[str, Path]) -> None:
    raw = load_yaml(fx["universe"])
    raw.pop("pairs")
    uni = fx["root"] / "symbols_only.yaml"
    uni.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = fx["root"] / "scan_u"
    run_scan(
        store=fx["store"], timeframe="1h", period=PERIOD, out=out, universe=uni,
        overrides={"alpha": 0.999, "half_life_max_bars": 1e9, "cost_multiple": 0.0},
    )  # fmt: skip
    pairs = load_universe(out / "universe.yaml")
    assert pairs
    for p in pairs:
        assert "AUDJPY" not in p.pair_id
        assert (p.margin_requirement, p.min_notional_usd) == (0.05, 100.0)
        assert p.allowed_timeframes == ("1h",)

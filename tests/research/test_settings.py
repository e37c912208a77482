"""Policy YAMLs → parameter objects carry spec 004's defaults; periods parse as documented."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pairdesk.quant.sessions import BarAnchor
from pairdesk.research.config import ConfigError
from pairdesk.research.provenance import PeriodError, parse_period
from pairdesk.research.settings import bars_per_day, load_settings
from pairdesk.research.universe import (
    default_leg_spec,
    load_universe,
    load_universe_symbols,
    universe_calendars,
)


def test_spec_defaults_reach_the_quant_layer() -> None:
    s = load_settings("1h")
    f = s.features
    assert (f.beta_window_bars, f.beta_ema_half_life, f.huber_mad_ratio) == (180, 72.0, 2.0)
    assert (f.z_window_bars, f.z_clip, f.z_ema_half_life, f.atr_period, f.slope_window_bars) == (180, 5.0, 12.0, 14, 20)
    assert (s.labels.z_entry, s.labels.z_exit, s.labels.M, s.labels.speed_k, s.labels.theta_speed) == (2.0, 0.5, 48, 6, 0.57)
    assert (s.risk.theta_corr_var, s.risk.theta_vol, s.risk.theta_speed, s.risk.theta_dd) == (0.025, 1.8, 0.49, 0.07)
    assert s.risk.dd_window_bars == 60 * 24  # 60 business days at 24 bars/day
    assert (s.cv.n_splits, s.cv.purge_bars, s.cv.embargo_bars, s.cv.min_block_len_bars) == (5, 24, 24, 240)
    assert (s.wf_step_days, s.wf_min_train_days) == (30.0, 360.0)
    assert (s.lgbm.early_stopping_rounds, s.lgbm.seed, s.lgbm.class_weight_max_ratio) == (50, 42, 5.0)
    assert s.lgbm_for("ai1").min_data_in_leaf == 10
    assert s.lgbm_for("ai2").min_data_in_leaf == s.lgbm.min_data_in_leaf
    b = s.backtest
    assert (b.theta1, b.theta2, b.z_exit, b.M, b.theta_stop, b.latency_bars) == (0.70, 0.30, 0.5, 48, 0.45, 1)
    assert (s.dq.spike_k, s.dq.outlier_sigma, s.dq.missing_fill_max_run) == (12.0, 8.0, 2)
    assert (s.dq.missing_rate_max, s.dq.outlier_rate_max) == (0.05, 0.08)
    o = s.theta_objective
    assert (o.dd_target, o.trades_min, o.lambda_dd, o.lambda_trades, o.lambda_stop) == (0.12, 150, 2.0, 0.05, 0.10)


def test_timeframes() -> None:
    assert bars_per_day("15m") == 96
    assert bars_per_day("4h") == 6
    assert bars_per_day("1d") == 1
    assert load_settings("4h").risk.dd_window_bars == 360
    d = load_settings("1d")
    assert d.risk.dd_window_bars == 60  # 60 business days at one bar a day
    assert d.dq.outlier_window_bars == 180  # DQ windows are in bars at every timeframe
    with pytest.raises(ConfigError, match="2h"):
        load_settings("2h")


def test_universe() -> None:
    (pair,) = load_universe("config/universe.yaml")
    assert pair.pair_id == "XAUUSD_XAGUSD"
    assert (pair.leg_a.spec.tick_size, pair.leg_b.spec.tick_size) == (0.01, 0.001)
    assert pair.min_notional_usd == 100.0
    with pytest.raises(ConfigError, match="unknown pair"):
        load_universe("config/universe.yaml", ["NOPE"])
    with pytest.raises(ConfigError, match="not found"):
        load_universe("config/missing.yaml")


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2022-01:2024-06", "2022-01-01", "2024-07-01"),
        ("2024-02-10:2024-02-10", "2024-02-10", "2024-02-11"),
        ("2023-12:2023-12", "2023-12-01", "2024-01-01"),
    ],
)
def test_parse_period(text: str, start: str, end: str) -> None:
    p = parse_period(text)
    assert p.start == pd.Timestamp(start, tz="UTC")
    assert p.end == pd.Timestamp(end, tz="UTC")


@pytest.mark.parametrize("text", ["2024-06:2024-01", "2024-13:2025-01", "2024", "20240101:20240201", "a:b"])
def test_parse_period_errors(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_period(text)


# ---------------------------------------------------------------- universe forms and defaults
ANDRE = ["EURUSD", "GBPUSD", "AUDUSD", "USDCAD", "USDCHF", "AUDNZD", "AUDCHF", "AUDJPY", "CHFJPY", "EURCHF", "EURNZD", "GBPCAD", "GBPCHF", "GBPNZD", "XAGUSD"]


@pytest.mark.parametrize(
    ("symbol", "cls", "tick", "precision", "min_lot", "base"),
    [
        ("EURUSD", "fx", 0.00001, 5, 0.01, "USD"),
        ("USDJPY", "fx", 0.001, 3, 0.01, "JPY"),
        ("XAUUSD", "metal", 0.01, 2, 0.01, "USD"),
        ("XAGUSD", "metal", 0.001, 3, 0.01, "USD"),
        ("UKOIL", "energy", 0.01, 2, 0.01, "USD"),
        ("BTCUSDT", "crypto", 0.01, 2, 0.00001, "USD"),
        ("^GSPC", "index", 0.01, 2, 0.01, "USD"),
        ("KO", "equity", 0.01, 2, 1.0, "USD"),
    ],
)
def test_default_leg_spec(symbol: str, cls: str, tick: float, precision: int, min_lot: float, base: str) -> None:
    d = default_leg_spec(symbol)
    assert d["canonical_symbol"] == symbol
    assert d["asset_class"] == cls
    assert (d["tick_size"], d["price_precision"], d["min_lot"], d["base_ccy"]) == (tick, precision, min_lot, base)
    assert d["contract_size"] == 1.0
    assert d["lot_step"] == d["min_lot"]


def test_default_leg_spec_tick_from_the_data(tmp_path: Path) -> None:
    d = default_leg_spec("PAXGUSDT", price_sample=[2650.12, 2651.5, 2649.99])
    assert (d["tick_size"], d["price_precision"]) == (0.01, 2)
    d = default_leg_spec("NEWCOIN", asset_class="crypto", price_sample=[0.123456, 0.1234])
    assert (d["tick_size"], d["price_precision"]) == (0.000001, 6)
    assert d["trading_hours"] == {"timezone": "UTC", "always_open": True}
    # a universe written from default_leg_spec loads back as is (what `bt scan` writes)
    u = {"pairs": [{"pair_id": "A_B", "leg_A": default_leg_spec("EURUSD"), "leg_B": default_leg_spec("KO")}]}
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(u))
    (pair,) = load_universe(tmp_path / "u.yaml")
    assert pair.leg_a.calendar.holidays_calendar == "fx"
    assert pair.leg_b.calendar.holidays_calendar == "XNYS"
    # a declared class that is no session class (a product kind like "CFD") -> inferred
    assert default_leg_spec("EURUSD", asset_class="CFD")["asset_class"] == "fx"
    with pytest.raises(ValueError, match="empty symbol"):
        default_leg_spec(" ")


def test_legs_with_only_a_symbol_and_the_symbols_list(tmp_path: Path) -> None:
    text = """
defaults:
  bar_anchor: { timezone: America/New_York, offset: "+7h" }
symbols:
  - EURUSD
  - { canonical_symbol: XAGUSD, data_dir: data/mt5_andre_h1 }
pairs:
  - pair_id: EURUSD_GBPUSD
    leg_A: { canonical_symbol: EURUSD }
    leg_B: { canonical_symbol: GBPUSD, asset_class: fx, data_dir: data/mt5_andre_h1, tick_size: 0.0001 }
"""
    (tmp_path / "u.yaml").write_text(text)
    (pair,) = load_universe(tmp_path / "u.yaml")
    assert pair.leg_a.spec.tick_size == 0.00001
    assert pair.leg_b.spec.tick_size == 0.0001  # the leg's own key wins
    assert pair.leg_a.calendar.bar_anchor == BarAnchor("America/New_York", 420)
    assert pair.leg_b.data_dir == "data/mt5_andre_h1"
    syms = load_universe_symbols(tmp_path / "u.yaml")
    assert list(syms) == ["EURUSD", "XAGUSD", "GBPUSD"]
    assert syms["XAGUSD"].asset_class == "metal"
    assert syms["XAGUSD"].calendar.holidays_calendar == "metals_us"
    # a symbols-only file has no pairs to train on
    (tmp_path / "s.yaml").write_text("symbols: [EURUSD, GBPUSD]\n")
    with pytest.raises(ConfigError, match="only symbols"):
        load_universe(tmp_path / "s.yaml")
    assert set(universe_calendars(tmp_path / "s.yaml")) == {"EURUSD", "GBPUSD"}
    (tmp_path / "bad.yaml").write_text("pairs:\n  - pair_id: X\n    leg_A: {canonical_symbol: eurusd}\n    leg_B: GBPUSD\n")
    with pytest.raises(ConfigError, match="upper-case"):
        load_universe(tmp_path / "bad.yaml")


def test_spec_form_universe_loads(tmp_path: Path) -> None:
    """The spec 004 §コストテーブル / ユニバース仕様 v1 example, verbatim."""
    leg = {
        "broker_symbol": "X", "asset_class": "CFD", "contract_size": 1.0, "min_lot": 0.01,
        "lot_step": 0.01, "base_ccy": "USD", "timezone": "UTC",
        "trading_hours": {"sessions": [{"start": "00:05", "end": "23:55"}], "holidays_calendar": "US"},
    }  # fmt: skip
    u = {
        "pairs": [
            {
                "pair_id": "XAUUSD_XAGUSD",
                "group": "metals",
                "leg_A": {**leg, "canonical_symbol": "XAUUSD", "tick_size": 0.01, "price_precision": 2},
                "leg_B": {**leg, "canonical_symbol": "XAGUSD", "tick_size": 0.001, "price_precision": 3},
                "constraints": {"margin_requirement": 0.05, "min_notional_usd": 100.0, "allowed_timeframes": ["15m", "1h", "4h"]},
            }
        ]
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(u, allow_unicode=True))
    (pair,) = load_universe(tmp_path / "spec.yaml")
    cal = pair.leg_a.calendar
    assert cal.timezone == "UTC"
    assert cal.holidays_calendar == "US"
    assert pair.leg_a.asset_class == "metal"  # "CFD" is a product kind: the symbol decides
    assert cal.week_open == (6, 18 * 60)  # metals week, New York
    exp = cal.expected_bar_opens("2016-11-24", "2016-11-25", "1h")
    assert len(exp) == 0  # Thanksgiving: US exchange holiday


def test_universe_fx_covers_the_shipped_andre_files() -> None:
    syms = load_universe_symbols("config/universe_fx.yaml")
    assert list(syms) == ANDRE
    manifest = {e["file"]: e for e in json.loads(Path("data/manifest.json").read_text())}
    for sym, leg in syms.items():
        assert leg.data_dir == "data/mt5_andre_h1"
        assert leg.calendar.bar_anchor == BarAnchor("America/New_York", 420)
        rel = f"mt5_andre_h1/{sym}_1h.csv.gz"
        data = (Path("data") / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest[rel]["sha256"], rel
    assert syms["AUDJPY"].spec.tick_size == 0.001
    assert syms["XAGUSD"].calendar.holidays_calendar == "metals_us+fx"

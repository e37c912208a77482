"""Policy YAMLs → parameter objects carry spec 004's defaults; periods parse as documented."""

from __future__ import annotations

import pandas as pd
import pytest
from pairdesk.research.config import ConfigError
from pairdesk.research.provenance import PeriodError, parse_period
from pairdesk.research.settings import bars_per_day, load_settings
from pairdesk.research.universe import load_universe


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
    assert load_settings("4h").risk.dd_window_bars == 360
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

"""DQ rules (spec 004 §data-assets-pipeline DQ ルール, §ラベリング データ品質, §監視・運用 隔離).

Hand-worked cases on synthetic bars placed on the real metals calendar, an independent plain-Python
re-implementation of the outlier rule, brute-force rolling medians, and per-month figures on the
shipped files.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pairdesk.quant.dq import CANONICAL_COLUMNS, DQParams, apply_dq, partition_dq
from pairdesk.quant.sessions import BarAnchor, SessionCalendar, default_calendar

REPO = Path(__file__).resolve().parents[2]
METALS = SessionCalendar.from_mapping(
    {
        "timezone": "America/New_York",
        "week_open": {"day": "SUN", "time": "18:00"},
        "week_close": {"day": "FRI", "time": "17:00"},
        "daily_breaks": [{"start": "17:00", "end": "18:00"}],
        "holidays_calendar": "metals_us",
    }
)
CRYPTO = SessionCalendar.from_mapping({"timezone": "UTC", "always_open": True})


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def make_bars(index: pd.DatetimeIndex, closes: np.ndarray) -> pd.DataFrame:
    """Consistent OHLC: open = previous close, high/low 0.01 outside the body, volume 1."""
    closes = np.asarray(closes, dtype=float)
    opens = np.concatenate(([closes[0]], closes[:-1]))
    return pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, closes) + 0.01,
            "low": np.minimum(opens, closes) - 0.01,
            "close": closes,
            "volume": 1.0,
        },
        index=pd.DatetimeIndex(index, name="ts_utc").as_unit("us"),
    )


def set_close(df: pd.DataFrame, t: pd.Timestamp, c: float) -> None:
    o = df.at[t, "open"]
    df.loc[t, ["close", "high", "low"]] = [c, max(o, c) + 0.01, min(o, c) - 0.01]


@pytest.fixture(scope="module")
def metals_week_bars() -> pd.DataFrame:
    """575 expected 1h bars 2024-01-07 .. 2024-02-10 on the metals calendar, random walk sigma 0.2%."""
    idx = METALS.expected_bar_opens("2024-01-07", "2024-02-10", "1h")
    rng = np.random.default_rng(11)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, len(idx))))
    return make_bars(idx, closes)


# ---------------------------------------------------------------- missing bars
def test_two_bar_hole_inside_session_is_interpolated(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    left, h1, h2, right = (ts(f"2024-01-10 {h}:00") for h in (13, 14, 15, 16))  # 08:00-11:00 EST
    set_close(df, left, 100.0)
    set_close(df, right, 100.3)
    df = df.drop([h1, h2])
    res = apply_dq(df, METALS, "1h")
    got = res.bars.loc[[h1, h2]]
    # close_j = 100 + 0.3 j/3 ; open_j = close_{j-1}; high/low = max/min(open, close); volume NaN
    np.testing.assert_allclose(got["close"], [100.1, 100.2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["open"], [100.0, 100.1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["high"], [100.1, 100.2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["low"], [100.0, 100.1], rtol=0, atol=1e-12)
    assert got["volume"].isna().all()
    assert list(got["quality_flag"]) == ["missing", "missing"]
    assert got["imputed"].all()
    assert not got["spike"].any()
    assert res.counters.imputed == 2
    assert res.counters.missing == 0
    assert res.counters.absent == 2
    assert list(res.bars.columns) == list(CANONICAL_COLUMNS)
    assert len(res.bars) == len(metals_week_bars)


def test_one_bar_hole_is_midpoint(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    t = ts("2024-01-11 15:00")
    cl, cr = df.at[t - pd.Timedelta("1h"), "close"], df.at[t + pd.Timedelta("1h"), "close"]
    res = apply_dq(df.drop([t]), METALS, "1h")
    assert res.bars.at[t, "close"] == pytest.approx((cl + cr) / 2, abs=1e-12)
    assert res.bars.at[t, "open"] == cl


def test_three_bar_hole_is_excluded(metals_week_bars: pd.DataFrame) -> None:
    holes = [ts(f"2024-01-10 {h}:00") for h in (14, 15, 16)]
    res = apply_dq(metals_week_bars.drop(holes), METALS, "1h")
    assert list(res.missing) == holes
    assert not set(holes) & set(res.bars.index)
    assert (res.counters.missing, res.counters.imputed, res.counters.absent) == (3, 0, 3)


def test_holes_at_daily_break_and_weekend_are_not_filled(metals_week_bars: pd.DataFrame) -> None:
    # Wed 16:00 EST (21:00Z, last bar before the break) and 18:00 EST (23:00Z, first after it):
    # only 3 grid hours apart, but in two sessions -> never interpolated across the break
    brk = [ts("2024-01-10 21:00"), ts("2024-01-10 23:00")]
    # Fri 16:00 EST (last bar of the week) and Sun 18:00 EST (first bar of the next week)
    wknd = [ts("2024-01-12 21:00"), ts("2024-01-14 23:00")]
    res = apply_dq(metals_week_bars.drop(brk + wknd), METALS, "1h")
    assert list(res.missing) == brk + wknd
    assert res.counters.imputed == 0
    assert not res.bars["imputed"].any()


def test_hole_next_to_outlier_is_not_filled(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    bad = ts("2024-01-30 15:00")
    set_close(df, bad, df.at[bad - pd.Timedelta("1h"), "close"] * math.exp(0.1))
    hole = ts("2024-01-30 16:00")
    res = apply_dq(df.drop([hole]), METALS, "1h")
    assert res.bars.at[bad, "quality_flag"] == "outlier"
    assert list(res.missing) == [hole]


# ---------------------------------------------------------------- outliers
def test_injected_outlier_flags_exactly_one_bar(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    i = 400
    t = df.index[i]
    set_close(df, t, df["close"].iloc[i - 1] * math.exp(0.05))  # one bad print, next bar reverts
    res = apply_dq(df, METALS, "1h")
    flagged = res.detail.index[res.detail["return_outlier"]]
    assert list(flagged) == [t]
    assert res.bars.at[t, "quality_flag"] == "outlier"
    r = np.diff(np.log(df["close"].to_numpy()))  # r[k] = return of bar k+1
    # sigma at bar i: std of the previous 180 returns (bars i-180..i-1), ddof=1
    assert res.detail["sigma"].iloc[i] == pytest.approx(
        np.std(r[i - 181 : i - 1], ddof=1), rel=1e-12
    )
    assert abs(r[i - 1]) > 8 * res.detail["sigma"].iloc[i]
    # the bad return is not accepted: bar i+1 sees the same window; bar i+2 sees ln(c_{i+1}/c_{i-1})
    assert res.detail["sigma"].iloc[i + 1] == res.detail["sigma"].iloc[i]
    c = df["close"].to_numpy()
    win = np.concatenate((r[i - 180 : i - 1], [math.log(c[i + 1] / c[i - 1])]))
    assert res.detail["sigma"].iloc[i + 2] == pytest.approx(np.std(win, ddof=1), rel=1e-12)
    assert res.counters.return_outliers == 1


def test_level_shift_flags_only_the_jump(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    i = 300
    closes = df["close"].to_numpy().copy()
    closes[i:] *= math.exp(0.05)  # genuine permanent jump
    df = make_bars(df.index, closes)
    res = apply_dq(df, METALS, "1h")
    assert list(res.detail.index[res.detail["return_outlier"]]) == [df.index[i]]


def _outliers_reference(close: np.ndarray, k: float, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python statement of rule 3 (independent of the numba kernel)."""
    flags = np.zeros(len(close), bool)
    sig = np.full(len(close), np.nan)
    accepted: list[float] = []
    ref = close[0]
    for t in range(1, len(close)):
        r_ref, r_prev = math.log(close[t] / ref), math.log(close[t] / close[t - 1])
        if len(accepted) >= w:
            s = float(np.std(accepted[-w:], ddof=1))
            sig[t] = s
            if s > 0 and abs(r_ref) > k * s and abs(r_prev) > k * s:
                flags[t] = True
                continue
        accepted.append(r_ref)
        ref = close[t]
    return flags, sig


def test_outlier_rule_matches_reference_and_literal_rule_before_first_flag() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    idx = pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC")
    closes = 50 * np.exp(np.cumsum(0.002 * rng.standard_t(2.5, n)))  # fat tails -> real flags
    res = apply_dq(make_bars(idx, closes), CRYPTO, "1h")
    ref_flags, ref_sig = _outliers_reference(closes, 8.0, 180)
    assert ref_flags.sum() >= 3
    np.testing.assert_array_equal(res.detail["return_outlier"].to_numpy(), ref_flags)
    np.testing.assert_allclose(res.detail["sigma"].to_numpy(), ref_sig, rtol=1e-10, equal_nan=True)
    # literal textbook rule (pandas) agrees until the first flag
    lr = pd.Series(np.log(closes)).diff()
    lit_sig = lr.rolling(180).std().shift(1).to_numpy()
    first = int(np.flatnonzero(ref_flags)[0])
    np.testing.assert_allclose(
        res.detail["sigma"].to_numpy()[: first + 1],
        lit_sig[: first + 1],
        rtol=1e-10,
        equal_nan=True,
    )
    lit_flags = np.abs(lr.to_numpy()) > 8 * lit_sig
    np.testing.assert_array_equal(ref_flags[: first + 1], lit_flags[: first + 1])


# ---------------------------------------------------------------- spikes
def test_spike_hand_worked() -> None:
    n = 300
    d = np.where(np.arange(n) % 2 == 0, 0.01, -0.01)
    big = np.arange(9, 181, 9)  # 20 moves of +-0.5 in the first 180 steps (median stays 0.01)
    d[big] = np.where(np.arange(big.size) % 2 == 0, 0.5, -0.5)
    d[250] = 0.2  # 0.2 > 12 x 0.01, |r| ~ 0.002 << 8 sigma
    d[0] = 0.0
    closes = 100 + np.cumsum(d)
    idx = pd.date_range("2025-02-01", periods=n, freq="h", tz="UTC")
    res = apply_dq(make_bars(idx, closes), CRYPTO, "1h")
    spikes = np.flatnonzero(res.bars["spike"].to_numpy())
    assert list(spikes) == [250]
    assert res.detail["spike_median"].iloc[250] == pytest.approx(0.01, abs=1e-9)
    assert res.bars["quality_flag"].iloc[250] == "ok"  # kept
    assert res.counters.spikes == 1


def test_spike_matches_brute_force_median(crypto_2025: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    eth = crypto_2025[1].iloc[:1500]
    res = apply_dq(eth, CRYPTO, "1h", DQParams(spike_k=4.0))
    c = eth["close"].to_numpy()
    d = np.abs(np.diff(c))  # d[k] = |Δclose| of bar k+1
    want = np.zeros(len(c), bool)
    med = np.full(len(c), np.nan)
    for t in range(181, len(c)):
        med[t] = np.median(d[t - 181 : t - 1])
        want[t] = d[t - 1] > 4.0 * med[t]
    assert want.sum() > 0
    np.testing.assert_allclose(res.detail["spike_median"].to_numpy(), med, equal_nan=True)
    np.testing.assert_array_equal(res.bars["spike"].to_numpy(), want)


# ---------------------------------------------------------------- prices
def test_nonpositive_prices_dropped_and_counted(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    z, neg = ts("2024-01-16 15:00"), ts("2024-01-17 15:00")
    df.loc[z, "low"] = 0.0
    df.loc[neg, "close"] = -1.0
    res = apply_dq(df, METALS, "1h")
    assert res.counters.dropped_nonpositive == 2
    assert list(res.dropped.index) == [z, neg]
    assert res.dropped.at[z, "low"] == 0.0
    # each becomes a 1-bar hole inside a session between ok bars -> imputed
    assert res.bars.loc[[z, neg], "imputed"].all()
    c = metals_week_bars["close"]
    assert res.bars.at[z, "close"] == pytest.approx(
        (c[z - pd.Timedelta("1h")] + c[z + pd.Timedelta("1h")]) / 2, abs=1e-12
    )
    assert res.counters.rows_kept == len(df) - 2


def test_ohlc_inconsistency_flagged(metals_week_bars: pd.DataFrame) -> None:
    df = metals_week_bars.copy()
    a, b, c = ts("2024-01-18 14:00"), ts("2024-01-18 16:00"), ts("2024-01-18 18:00")
    df.loc[a, "high"] = df.at[a, "close"] - 0.05  # high < max(open, close)
    df.loc[b, "low"] = df.at[b, "open"] + 0.05  # low > min(open, close)
    df.loc[c, ["high", "low"]] = [df.at[c, "low"], df.at[c, "high"]]  # high < low
    res = apply_dq(df, METALS, "1h")
    assert list(res.detail.index[res.detail["ohlc_inconsistent"]]) == [a, b, c]
    assert (res.bars.loc[[a, b, c], "quality_flag"] == "outlier").all()
    assert res.counters.ohlc_inconsistent == 3
    assert res.counters.outliers == 3
    assert res.counters.return_outliers == 0


# ---------------------------------------------------------------- look-ahead
def test_no_lookahead(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    xau = metals_2024[0].loc["2024-05-01":"2024-08-31"]
    T = ts("2024-07-02 12:00")
    assert T in xau.index
    assert T - pd.Timedelta("1h") in xau.index
    base = apply_dq(xau, METALS, "1h")
    rng = np.random.default_rng(5)
    pert = xau.copy()
    after = pert.index >= T
    f = np.exp(rng.normal(0, 0.05, after.sum()))
    pert.loc[after, ["open", "high", "low", "close"]] = pert.loc[
        after, ["open", "high", "low", "close"]
    ].mul(f, axis=0)
    pert = pert.drop(pert.index[after][rng.choice(after.sum(), 40, replace=False)])
    other = apply_dq(pert, METALS, "1h")
    pd.testing.assert_frame_equal(
        base.bars.loc[base.bars.index < T], other.bars.loc[other.bars.index < T]
    )
    pd.testing.assert_frame_equal(
        base.detail.loc[base.detail.index < T], other.detail.loc[other.detail.index < T]
    )
    assert other.detail.loc[
        other.detail.index >= T, "return_outlier"
    ].any()  # the perturbation bites


# ---------------------------------------------------------------- partitions / quarantine
def _april_bars() -> pd.DataFrame:
    idx = pd.date_range("2025-03-31 12:00", "2025-05-01 11:00", freq="h", tz="UTC")
    rng = np.random.default_rng(2)
    return make_bars(idx, 100 * np.exp(np.cumsum(rng.normal(0, 0.002, len(idx)))))


@pytest.mark.parametrize(("n_holes", "quarantined"), [(36, False), (37, True)])
def test_missing_rate_threshold_is_strict(n_holes: int, quarantined: bool) -> None:
    df = _april_bars()
    april = df.index[(df.index >= "2025-04-02") & (df.index < "2025-04-30")]
    drop = [april[4 * k + j] for k in range(n_holes // 3) for j in range(3)]  # runs of 3: excluded
    drop += list(april[-(n_holes % 3) :]) if n_holes % 3 else []
    res = apply_dq(df.drop(drop), CRYPTO, "1h")
    pt = partition_dq(res)
    row = pt.loc["2025-04"]
    assert row["expected"] == 720
    assert row["absent"] == n_holes
    assert row["missing_rate"] == n_holes / 720
    assert bool(row["quarantined"]) is quarantined
    assert row["reason"] == (f"missing_rate {n_holes / 720:.4f} > 0.05" if quarantined else "")
    assert row["start"] == ts("2025-04-01")
    assert row["end"] == ts("2025-05-01")
    # first / last month clipped to the covered range
    assert pt.loc["2025-03", "start"] == ts("2025-03-31 12:00")
    assert pt.loc["2025-05", "end"] == ts("2025-05-01 12:00")
    assert pt.loc["2025-05", "expected"] == 12


@pytest.mark.parametrize(("n_bad", "quarantined"), [(57, False), (58, True)])
def test_outlier_rate_threshold(n_bad: int, quarantined: bool) -> None:
    df = _april_bars()
    april = df.index[(df.index >= "2025-04-01") & (df.index < "2025-05-01")]
    bad = april[5 : 5 + 10 * n_bad : 10]
    df.loc[bad, "high"] = df.loc[bad, "low"] - 0.01
    pt = partition_dq(apply_dq(df, CRYPTO, "1h"))
    assert pt.loc["2025-04", "outliers"] == n_bad
    assert pt.loc["2025-04", "outlier_rate"] == n_bad / 720
    assert bool(pt.loc["2025-04", "quarantined"]) is quarantined


def test_partition_counts_sum_to_counters(metals_2024: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    df = metals_2024[1].copy()
    df = df.drop(df.index[[1000, 1001, 2000, 3000, 3001, 3002]])
    df.iloc[4000, df.columns.get_loc("close")] = 0.0
    res = apply_dq(df, METALS, "1h")
    pt = partition_dq(res)
    c = res.counters.as_dict()
    for col in (
        "expected",
        "absent",
        "imputed",
        "missing",
        "outliers",
        "spikes",
        "dropped_nonpositive",
        "off_session",
    ):
        assert pt[col].sum() == c[col], col
    assert pt["rows"].sum() == len(res.bars)
    assert list(pt.index) == [f"2024-{m:02d}" for m in range(1, 13)]


# ---------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def metals_full() -> dict[str, pd.DataFrame]:
    manifest = {e["file"]: e for e in json.loads((REPO / "data" / "manifest.json").read_text())}
    out = {}
    for sym in ("XAUUSD", "XAGUSD"):
        rel = f"mt5_simom1_h1/{sym}_1h.csv.gz"
        path = REPO / "data" / rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[rel]["sha256"]
        df = pd.read_csv(path)
        df["ts_utc"] = pd.to_datetime(df["ts_utc"], utc=True)
        out[sym] = df.set_index("ts_utc")[["open", "high", "low", "close", "volume"]]
    return out


def test_real_metals_per_month_rates(metals_full: dict[str, pd.DataFrame]) -> None:
    """Full shipped files: no month is quarantined. Figures (2018-03 .. 2026-05, 99 months):
    XAUUSD 3 missing bars (CME outage 2025-11-28, missing_rate 3/454 = 0.66%), 28 return outliers
    (max 3 in a month, 0.59%), 138 spikes; XAGUSD 1 missing (2022-04-13 22:00Z = 18:00 EDT, the first bar of a session, so
    not imputed), 26 outliers."""
    want = {
        "XAUUSD": {
            "missing": 3,
            "imputed": 0,
            "outliers": 28,
            "spikes": 138,
            "off_session": 62,
            "expected": 48191,
        },
        "XAGUSD": {
            "missing": 1,
            "imputed": 0,
            "outliers": 26,
            "spikes": 117,
            "off_session": 59,
            "expected": 48191,
        },
    }
    for sym, df in metals_full.items():
        res = apply_dq(df, METALS, "1h")
        pt = partition_dq(res)
        c = res.counters.as_dict()
        assert {k: c[k] for k in want[sym]} == want[sym], sym
        assert len(pt) == 99
        assert not pt["quarantined"].any()
        assert pt["missing_rate"].max() < 0.007
        assert pt["outlier_rate"].max() < 0.006
        assert c["dropped_nonpositive"] == 0
        assert c["ohlc_inconsistent"] == 0
    xau = partition_dq(apply_dq(metals_full["XAUUSD"], METALS, "1h"))
    assert xau.loc["2025-11", "absent"] == 3
    assert xau.loc["2025-11", "missing_rate"] == 3 / 454


def test_real_crypto_gap_free(crypto_2025: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for df in crypto_2025:
        res = apply_dq(df, CRYPTO, "1h")
        pt = partition_dq(res)
        assert res.counters.absent == 0
        assert res.counters.expected == len(df)
        assert not pt["quarantined"].any()
        assert list(pt["expected"]) == [744, 672, 744, 720, 744, 720]


# ---------------------------------------------------------------- input validation
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.iloc[::-1], "strictly increasing"),
        (lambda d: pd.concat([d, d.iloc[[5]]]).sort_index(), "strictly increasing"),
        (
            lambda d: d.assign(close=np.where(np.arange(len(d)) == 3, np.nan, d["close"])),
            "NaN prices",
        ),
        (lambda d: d.drop(columns=["low"]), r"lack column\(s\) \['low'\]"),
        (lambda d: d.set_axis(d.index + pd.Timedelta("30min")), "not on the 1h grid"),
    ],
)
def test_input_errors(metals_week_bars: pd.DataFrame, mutate, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply_dq(mutate(metals_week_bars.iloc[:50]), METALS, "1h")


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="fractions"):
        DQParams(missing_rate_max=5.0)
    with pytest.raises(ValueError, match="outlier_window_bars"):
        DQParams(outlier_window_bars=1)
    assert DQParams().as_dict()["spike_k"] == 12.0


# ---------------------------------------------------------------- grids, DST, daily bars
def test_fx_4h_on_the_ny7_grid_fills_inside_the_week_only() -> None:
    """FX 4h bars on the New York + 7h grid across the US DST end (2024-11-03): only expected
    bars count, a 1-bar hole inside the week is the midpoint, the week edges are never filled."""
    cal = default_calendar("EURUSD", bar_anchor=BarAnchor("America/New_York", 420))
    idx = cal.expected_bar_opens("2024-10-27", "2024-11-09", "4h")
    # hand check of the grid: Friday 1 Nov last bar 13:00 EDT = 17:00Z, Sunday 3 Nov first bar
    # 17:00 EST = 22:00Z (DST ended that morning)
    assert ts("2024-11-01 17:00") in idx
    assert ts("2024-11-03 22:00") in idx
    assert ts("2024-11-01 21:00") not in idx
    closes = 1.0 + 0.001 * np.arange(len(idx))
    bars = make_bars(idx, closes)
    full = apply_dq(bars, cal, "4h")
    assert full.counters.expected == len(idx)
    assert full.counters.missing == 0
    # a one-bar hole mid-week -> midpoint of its neighbours
    hole = ts("2024-11-06 06:00")
    i = idx.get_loc(hole)
    res = apply_dq(bars.drop(index=[hole]), cal, "4h")
    assert res.counters.imputed == 1
    assert res.bars.loc[hole, "close"] == pytest.approx((closes[i - 1] + closes[i + 1]) / 2)
    # the last bar before the weekend and the first after it: edges, never filled
    edges = [ts("2024-11-01 17:00"), ts("2024-11-03 22:00")]
    res = apply_dq(bars.drop(index=edges), cal, "4h")
    assert res.counters.imputed == 0
    assert list(res.missing) == edges


def test_equity_daily_holes_and_holidays() -> None:
    """XNYS daily bars dated by trading day: Thanksgiving is no hole; a missing Tuesday is filled
    from Monday and Wednesday (the overnight gaps are shorter than a daily bar)."""
    cal = default_calendar("KO", daily=True)
    idx = cal.expected_bar_opens("2016-11-14", "2016-12-03", "1d")
    days = [t.strftime("%m-%d") for t in idx]
    assert "11-24" not in days  # Thanksgiving
    assert "11-25" in days  # early close, still a session
    closes = np.linspace(40.0, 42.0, len(idx))
    bars = make_bars(idx, closes)
    assert apply_dq(bars, cal, "1d").counters.missing == 0
    hole = ts("2016-11-22")
    i = idx.get_loc(hole)
    res = apply_dq(bars.drop(index=[hole]), cal, "1d")
    assert res.counters.imputed == 1
    assert res.bars.loc[hole, "close"] == pytest.approx((closes[i - 1] + closes[i + 1]) / 2)
    # Friday and the next Monday are different sessions (the weekend is longer than a day)
    res = apply_dq(bars.drop(index=[ts("2016-11-18")]), cal, "1d")
    assert res.counters.imputed == 0
    assert list(res.missing) == [ts("2016-11-18")]


def test_off_grid_timestamp_names_the_anchor() -> None:
    cal = default_calendar("EURUSD", bar_anchor=BarAnchor("America/New_York", 420))
    bars = make_bars(pd.DatetimeIndex([ts("2024-11-04 00:00")]), np.array([1.0]))
    with pytest.raises(
        ValueError, match=r"not on the 4h grid \(bar anchor America/New_York \+7h\)"
    ):
        apply_dq(bars, cal, "4h")

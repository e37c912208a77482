"""Session calendars and bar grids (spec 004 §ユニバース仕様 v1 trading_hours): DST, daily break,
holidays, 24/7, bar anchors, asset-class defaults, the spec's universe form.

Independent checks: a brute-force minute-level session test written with ``zoneinfo``, the
holiday dates read off the shipped MT5 files by hand, the former hand-written pandas holiday
rules (kept here as the reference for the library-built ``metals_us``), and the other holiday
library (``holidays`` vs ``exchange_calendars``) for XNYS.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml
from dateutil.relativedelta import TH
from pairdesk.quant.sessions import (
    BarAnchor,
    SessionCalendar,
    default_calendar,
    default_trading_hours,
    holiday_schedule,
    infer_asset_class,
    infer_bar_anchor,
    timeframe_to_timedelta,
)
from pandas.tseries.holiday import (
    GoodFriday,
    Holiday,
    USLaborDay,
    USMartinLutherKingJr,
    USMemorialDay,
    USPresidentsDay,
    USThanksgivingDay,
    nearest_workday,
    sunday_to_monday,
)
from pandas.tseries.offsets import DateOffset, Day

REPO = Path(__file__).resolve().parents[2]
NY = ZoneInfo("America/New_York")
METALS = {
    "timezone": "America/New_York",
    "week_open": {"day": "SUN", "time": "18:00"},
    "week_close": {"day": "FRI", "time": "17:00"},
    "daily_breaks": [{"start": "17:00", "end": "18:00"}],
    "holidays_calendar": "metals_us",
}
METALS_NO_HOL = {k: v for k, v in METALS.items() if k != "holidays_calendar"}

# Read by hand off data/mt5_simom1_h1 (XAUUSD/XAGUSD 2018-03 .. 2026-05): trading dates with no bar
CLOSED_OBSERVED = {
    "2018-03-30", "2018-12-25", "2019-01-01", "2019-04-19", "2019-12-25", "2020-01-01",
    "2020-04-10", "2020-12-25", "2021-01-01", "2021-04-02", "2021-12-24", "2022-04-15",
    "2022-12-26", "2023-01-02", "2023-04-07", "2023-12-25", "2024-01-01", "2024-03-29",
    "2024-12-25", "2025-01-01", "2025-04-18", "2025-12-25", "2026-01-01", "2026-04-03",
}  # fmt: skip
# ... and trading dates whose last bars before 17:00 New York are absent (early closes)
EARLY_OBSERVED = {
    "2018-05-28", "2018-07-04", "2018-09-03", "2018-11-22", "2018-11-23", "2018-12-24",
    "2019-01-21", "2019-02-18", "2019-05-27", "2019-07-04", "2019-09-02", "2019-11-28",
    "2019-11-29", "2019-12-24", "2020-01-20", "2020-02-17", "2020-05-25", "2020-07-03",
    "2020-09-07", "2020-11-26", "2020-11-27", "2020-12-24", "2021-01-18", "2021-02-15",
    "2021-05-31", "2021-07-05", "2021-09-06", "2021-11-25", "2021-11-26", "2022-01-17",
    "2022-02-21", "2022-05-30", "2022-06-20", "2022-07-04", "2022-09-05", "2022-11-24",
    "2022-11-25", "2023-01-16", "2023-02-20", "2023-05-29", "2023-06-19", "2023-07-04",
    "2023-09-04", "2023-11-23", "2023-11-24", "2024-01-15", "2024-02-19", "2024-05-27",
    "2024-06-19", "2024-07-04", "2024-09-02", "2024-11-28", "2024-11-29", "2024-12-24",
    "2025-01-20", "2025-02-17", "2025-05-26", "2025-06-19", "2025-07-04", "2025-09-01",
    "2025-11-27", "2025-11-28", "2025-12-24", "2026-01-19", "2026-02-16",
}  # fmt: skip


@pytest.fixture(scope="module")
def metals_cal() -> SessionCalendar:
    return SessionCalendar.from_mapping(METALS)


@pytest.fixture(scope="module")
def metals_full() -> dict[str, pd.DatetimeIndex]:
    """Bar-open times of the full shipped XAUUSD/XAGUSD 1h files (sha256-checked)."""
    manifest = {e["file"]: e for e in json.loads((REPO / "data" / "manifest.json").read_text())}
    out = {}
    for sym in ("XAUUSD", "XAGUSD"):
        rel = f"mt5_simom1_h1/{sym}_1h.csv.gz"
        path = REPO / "data" / rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[rel]["sha256"]
        ts = pd.read_csv(path, usecols=["ts_utc"])["ts_utc"]
        out[sym] = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).as_unit("us")
        assert len(out[sym]) == manifest[rel]["rows"]
    return out


# ---------------------------------------------------------------- brute force
def _open_at(x: datetime, closed: set[date], early: dict[date, int]) -> bool:
    """Is the metals market open at UTC instant x? (zoneinfo, minute arithmetic, no pandas)."""
    loc = x.astimezone(NY)
    wd, mins = loc.weekday(), loc.hour * 60 + loc.minute
    if wd == 5 or (wd == 6 and mins < 18 * 60) or (wd == 4 and mins >= 17 * 60):
        return False
    if 17 * 60 <= mins < 18 * 60:
        return False
    trading_date = (loc + timedelta(hours=6)).date()
    if trading_date in closed:
        return False
    return not (
        trading_date in early and loc.date() == trading_date and mins >= early[trading_date]
    )


def _brute_expected(
    start: str, end: str, tf_minutes: int, closed=frozenset(), early=None
) -> pd.DatetimeIndex:
    early = early or {}
    t = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo("UTC"))
    stop = datetime.fromisoformat(end).replace(tzinfo=ZoneInfo("UTC"))
    out = []
    while t < stop:
        # a bar is expected iff the market is open at some time inside it (every pause shorter
        # than a 4h bar is the 1h daily break, which cannot hold a whole 4h bar)
        subs = [t + timedelta(minutes=15 * k) for k in range(tf_minutes // 15)]
        if any(_open_at(s, set(closed), early) for s in subs):
            out.append(t)
        t += timedelta(minutes=tf_minutes)
    return pd.DatetimeIndex(out).as_unit("us")


HOL_2024_CLOSED = {date(2024, 1, 1), date(2024, 3, 29), date(2024, 12, 25)}
HOL_2024_EARLY = {
    **{date.fromisoformat(d): 13 * 60 for d in (
        "2024-01-15", "2024-02-19", "2024-05-27", "2024-06-19", "2024-07-04", "2024-09-02", "2024-11-28",
    )},
    date(2024, 11, 29): 14 * 60,
    date(2024, 12, 24): 14 * 60,
}  # fmt: skip


# ---------------------------------------------------------------- construction
def test_from_mapping_matches_universe_yaml() -> None:
    u = yaml.safe_load((REPO / "config" / "universe.yaml").read_text())
    legs = [p[k] for p in u["pairs"] for k in ("leg_A", "leg_B")]
    xau = next(leg for leg in legs if leg["canonical_symbol"] == "XAUUSD")
    cal = SessionCalendar.from_mapping(xau["trading_hours"])
    assert cal == SessionCalendar.from_mapping(METALS)
    assert cal.week_open == (6, 18 * 60)
    assert cal.week_close == (4, 17 * 60)
    assert cal.daily_breaks == ((17 * 60, 18 * 60),)
    assert cal.describe()["week_open"] == {"day": "SUN", "time": "18:00"}


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({**METALS, "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({**METALS, "week_open": {"day": "XYZ", "time": "18:00"}}, "is not MON..SUN"),
        ({**METALS, "week_open": {"day": "SUN", "time": "25:00"}}, "out of range"),
        ({**METALS, "daily_breaks": [{"start": "5pm", "end": "18:00"}]}, "is not HH:MM"),
        ({**METALS, "holidays_calendar": "lunar"}, "unknown holidays_calendar 'lunar'"),
        ({k: v for k, v in METALS.items() if k != "week_close"}, "must be given together"),
        ({**METALS, "daily_breaks": [{"start": "17:00"}]}, r"daily_breaks\[0\] must be"),
    ],
)
def test_from_mapping_errors(mapping: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SessionCalendar.from_mapping(mapping)


@pytest.mark.parametrize(
    ("tf", "minutes"), [("15m", 15), ("1h", 60), ("4h", 240), ("90m", 90), ("1d", 1440)]
)
def test_timeframe_parse(tf: str, minutes: int) -> None:
    assert timeframe_to_timedelta(tf) == pd.Timedelta(minutes=minutes)


@pytest.mark.parametrize("tf", ["7h", "1x", "0h", "h1", "", "1H ", "2d", "25h"])
def test_timeframe_parse_errors(tf: str) -> None:
    with pytest.raises(ValueError, match="invalid timeframe"):
        timeframe_to_timedelta(tf)


# ---------------------------------------------------------------- DST, break, weekend
def test_dst_week_open_and_daily_break_move_with_new_york(metals_cal: SessionCalendar) -> None:
    """US DST 2024-03-10 / EU 2024-03-31; EU end 2024-10-27 / US end 2024-11-03."""
    exp = metals_cal.expected_bar_opens("2024-03-01", "2024-04-06", "1h")
    has = set(exp)

    def ts(s: str) -> pd.Timestamp:
        return pd.Timestamp(s, tz="UTC")

    # winter (EST = UTC-5): week opens Sun 23:00Z, break 22:00Z
    assert ts("2024-03-03 22:00") not in has
    assert ts("2024-03-03 23:00") in has
    assert ts("2024-03-04 21:00") in has
    assert ts("2024-03-04 22:00") not in has
    assert ts("2024-03-04 23:00") in has
    # first US summer week while Europe is still on winter time: open 22:00Z, break 21:00Z
    assert ts("2024-03-10 21:00") not in has
    assert ts("2024-03-10 22:00") in has
    assert ts("2024-03-11 20:00") in has
    assert ts("2024-03-11 21:00") not in has
    assert ts("2024-03-11 22:00") in has
    # Friday close 17:00 New York: last bar 16:00 EDT = 20:00Z
    assert ts("2024-03-15 20:00") in has
    assert ts("2024-03-15 21:00") not in has
    # autumn: Europe back to winter time on 2024-10-27, New York still EDT until 2024-11-03
    exp2 = set(metals_cal.expected_bar_opens("2024-10-25", "2024-11-09", "1h"))
    assert ts("2024-10-27 22:00") in exp2
    assert ts("2024-10-28 21:00") not in exp2
    assert ts("2024-11-03 22:00") not in exp2
    assert ts("2024-11-03 23:00") in exp2
    assert ts("2024-11-04 22:00") not in exp2
    assert ts("2024-11-04 21:00") in exp2


def test_normal_week_bar_counts(metals_cal: SessionCalendar) -> None:
    # 5 trading days x 23 one-hour bars; x 92 quarter-hours
    w = ("2024-01-07", "2024-01-13")
    assert len(metals_cal.expected_bar_opens(*w, "1h")) == 5 * 23
    assert len(metals_cal.expected_bar_opens(*w, "15m")) == 5 * 92
    # 4h UTC grid in EST: the 1h break is shorter than a bar, so the week is one 4h session and
    # every bar overlapping it is expected: Sun 20Z (15:00-19:00 NY, open at 18:00) + 5 x 6
    assert len(metals_cal.expected_bar_opens(*w, "4h")) == 1 + 5 * 6


@pytest.mark.parametrize("tf_minutes", [15, 60, 240])
def test_matches_brute_force_across_dst_and_holidays(
    metals_cal: SessionCalendar, tf_minutes: int
) -> None:
    tf = {15: "15m", 60: "1h", 240: "4h"}[tf_minutes]
    for start, end in [("2024-02-25", "2024-04-08"), ("2024-10-20", "2024-12-31")]:
        got = metals_cal.expected_bar_opens(start, end, tf)
        want = _brute_expected(start, end, tf_minutes, HOL_2024_CLOSED, HOL_2024_EARLY)
        pd.testing.assert_index_equal(got.tz_convert(None), want.tz_convert(None))


def test_no_holiday_calendar_matches_brute_force() -> None:
    cal = SessionCalendar.from_mapping(METALS_NO_HOL)
    got = cal.expected_bar_opens("2024-12-20", "2025-01-05", "1h")
    want = _brute_expected("2024-12-20", "2025-01-05", 60)
    pd.testing.assert_index_equal(got.tz_convert(None), want.tz_convert(None))


def test_is_tradable_and_session_id(metals_cal: SessionCalendar) -> None:
    rng = np.random.default_rng(7)
    grid = pd.date_range("2024-01-01", "2024-12-31", freq="1h", tz="UTC")
    sample = pd.DatetimeIndex(rng.choice(grid, 500, replace=False))  # unsorted on purpose
    expected = set(metals_cal.expected_bar_opens("2024-01-01", "2025-01-01", "1h"))
    np.testing.assert_array_equal(
        metals_cal.is_tradable(sample, "1h"), [t in expected for t in sample]
    )
    # same session <=> no closure in between
    ids = metals_cal.session_id(
        pd.DatetimeIndex(["2024-01-08 23:00", "2024-01-09 21:00", "2024-01-09 23:00"], tz="UTC"),
        "1h",
    )
    assert ids[0] == ids[1] > 0
    assert ids[2] != ids[1]
    assert metals_cal.session_id(pd.DatetimeIndex(["2024-01-09 22:00"], tz="UTC"), "1h")[0] == -1
    # naive input is read as UTC
    assert metals_cal.is_tradable(pd.DatetimeIndex(["2024-01-09 21:00"]), "1h")[0]


def test_break_crossing_midnight() -> None:
    cal = SessionCalendar.from_mapping(
        {"timezone": "UTC", "daily_breaks": [{"start": "23:30", "end": "00:30"}]}
    )
    got = cal.expected_bar_opens("2024-05-01 22:00", "2024-05-02 02:00", "15m")
    want = pd.date_range("2024-05-01 22:00", "2024-05-02 01:45", freq="15min", tz="UTC")
    want = want[(want < "2024-05-01 23:30") | (want >= "2024-05-02 00:30")]
    pd.testing.assert_index_equal(got, want.as_unit("us"), check_freq=False)


# ---------------------------------------------------------------- holidays
def test_metals_us_rules_match_dates_observed_in_the_data() -> None:
    sch = holiday_schedule("metals_us", 2018, 2026)
    lo, hi = date(2018, 3, 19), date(2026, 5, 15)
    closed = {d for d in sch.closed if lo <= d <= hi}
    early = {d: m for d, m in sch.early_close.items() if lo <= d <= hi}
    assert {d.isoformat() for d in closed} == CLOSED_OBSERVED
    assert {d.isoformat() for d in early} == EARLY_OBSERVED
    assert early[date(2024, 12, 24)] == 14 * 60
    assert early[date(2024, 11, 28)] == 13 * 60
    # a Saturday New Year (2022-01-01) is not observed on Friday 2021-12-31
    assert date(2021, 12, 31) not in closed
    assert date(2021, 12, 31) not in early
    # NYSE's one-off closures are not metals closures (the metals market traded)
    assert date(2018, 12, 5) not in sch.closed
    assert date(2018, 12, 5) not in sch.early_close
    assert date(2025, 1, 9) not in holiday_schedule("metals_us", 2025, 2025).closed


def _former_metals_rules() -> tuple[list[Holiday], list[tuple[Holiday, int]]]:
    """The hand-written pandas rules ``metals_us`` used before the library (the reference)."""
    weekdays = (0, 1, 2, 3, 4)
    closed = [
        Holiday("New Year", month=1, day=1, observance=sunday_to_monday, days_of_week=weekdays),
        GoodFriday,
        Holiday("Christmas", month=12, day=25, observance=nearest_workday),
    ]
    early = [
        (USMartinLutherKingJr, 780),
        (USPresidentsDay, 780),
        (USMemorialDay, 780),
        (
            Holiday(
                "Juneteenth",
                month=6,
                day=19,
                start_date=datetime(2022, 1, 1),
                observance=nearest_workday,
            ),
            780,
        ),
        (Holiday("July 4", month=7, day=4, observance=nearest_workday), 780),
        (USLaborDay, 780),
        (USThanksgivingDay, 780),
        (Holiday("Black Friday", month=11, day=1, offset=[DateOffset(weekday=TH(4)), Day(1)]), 840),
        (Holiday("Christmas Eve", month=12, day=24, days_of_week=(0, 1, 2, 3)), 840),
    ]
    return closed, early


def test_metals_us_from_the_library_equals_the_former_hand_written_rules() -> None:
    closed_rules, early_rules = _former_metals_rules()
    s, e = pd.Timestamp("2000-01-01"), pd.Timestamp("2030-12-31")
    want_closed = {d.date() for r in closed_rules for d in r.dates(s, e)}
    want_early: dict[date, int] = {}
    for r, m in early_rules:
        for d in r.dates(s, e):
            if d.date() not in want_closed:
                want_early[d.date()] = min(m, want_early.get(d.date(), m))
    sch = holiday_schedule("metals_us", 2000, 2030)
    assert set(sch.closed) == want_closed
    assert dict(sch.early_close) == want_early


def test_xnys_calendar_agrees_with_both_holiday_libraries() -> None:
    import exchange_calendars as xcals
    import holidays

    cal = SessionCalendar.from_mapping(default_trading_hours("equity"), asset_class="equity")
    got = cal.expected_bar_opens("1999-01-04", "2019-01-01", "1d")
    xnys = xcals.get_calendar("XNYS", start="1999-01-04", end="2018-12-31")
    want = pd.DatetimeIndex(xnys.sessions_in_range("1999-01-04", "2018-12-31")).tz_localize("UTC")
    pd.testing.assert_index_equal(got, want.as_unit("us"), check_names=False, check_freq=False)
    # the other library: every NYSE holiday on a weekday is a day without a bar
    nyse = holidays.financial_holidays("NYSE", years=range(1999, 2019))
    days = {t.date() for t in got}
    assert all(d not in days for d in nyse if d.weekday() < 5)
    for closed in ("2016-11-24", "2016-07-04", "2018-03-30", "2018-12-05", "2012-10-29"):
        assert date.fromisoformat(closed) not in days  # Thanksgiving, July 4, Good Friday, ...
    for open_ in ("2016-11-25", "2016-11-23", "2018-07-03"):  # early closes still trade
        assert date.fromisoformat(open_) in days
    sch = holiday_schedule("US", 2016, 2016)
    assert sch.early_close[date(2016, 11, 25)] == 13 * 60


def test_good_friday_and_july_4_for_metals(metals_cal: SessionCalendar) -> None:
    # Good Friday 2024-03-29 closed: trading day Thu 18:00 -> Fri 17:00 NY has no bar
    has = metals_cal.expected_bar_opens("2024-03-28 22:00", "2024-03-31 22:00", "1h")
    assert len(has) == 0
    # Independence Day 2024 (Thu) closes 13:00 NY: last bar 12:00 EDT = 16:00Z
    day = set(metals_cal.expected_bar_opens("2024-07-04", "2024-07-05", "1h"))
    assert pd.Timestamp("2024-07-04 16:00", tz="UTC") in day
    assert pd.Timestamp("2024-07-04 17:00", tz="UTC") not in day


def test_holiday_closure_and_early_close_bars(metals_cal: SessionCalendar) -> None:
    has = set(metals_cal.expected_bar_opens("2024-12-20", "2024-12-31", "1h"))
    ts = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    # Christmas Eve (Tue) early close 14:00 EST: last bar 13:00 EST = 18:00Z
    assert ts("2024-12-24 18:00") in has
    assert ts("2024-12-24 19:00") not in has
    # Christmas closed (trading day Wed 12-25: Tue 18:00 -> Wed 17:00 EST); reopens Wed 18:00 EST
    assert not any(ts("2024-12-24 19:00") <= t < ts("2024-12-25 23:00") for t in has)
    assert ts("2024-12-25 23:00") in has


def test_always_open_grid_and_crypto_data(crypto_2025: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    cal = SessionCalendar.from_mapping({"timezone": "UTC", "always_open": True})
    got = cal.expected_bar_opens("2025-03-30 00:10", "2025-03-31", "1h")  # EU DST day: irrelevant
    pd.testing.assert_index_equal(
        got,
        pd.date_range("2025-03-30 01:00", "2025-03-30 23:00", freq="h", tz="UTC").as_unit("us"),
        check_freq=False,
    )
    btc, eth = crypto_2025
    for df in (btc, eth):
        exp = cal.expected_bar_opens(df.index[0], df.index[-1] + pd.Timedelta("1h"), "1h")
        pd.testing.assert_index_equal(
            exp, pd.DatetimeIndex(df.index).as_unit("us"), check_names=False
        )
    assert cal.is_tradable(btc.index, "1h").all()


# ---------------------------------------------------------------- real data
def test_metals_2024_every_expected_bar_present(metals_cal: SessionCalendar, metals_2024) -> None:
    for df, n_rows, n_off in zip(metals_2024, (5936, 5935), (13, 12), strict=True):
        assert len(df) == n_rows
        idx = pd.DatetimeIndex(df.index).as_unit("us")
        exp = metals_cal.expected_bar_opens(idx[0], idx[-1] + pd.Timedelta("1h"), "1h")
        assert len(exp.difference(idx)) == 0
        # the only printed bars the calendar does not expect are after holiday early closes
        extra = idx.difference(exp).tz_convert("America/New_York")
        assert {d.date().isoformat() for d in extra} <= EARLY_OBSERVED
        assert len(extra) == n_off


def test_missing_counts_per_holiday_rule(metals_full: dict[str, pd.DatetimeIndex]) -> None:
    """Measured on the full files: expected bars each closure rule calls missing."""
    cal_rules = SessionCalendar.from_mapping(METALS)
    cal_none = SessionCalendar.from_mapping(METALS_NO_HOL)
    want = {"XAUUSD": (3, 740, 188, 62), "XAGUSD": (1, 741, 189, 59)}
    for sym, idx in metals_full.items():
        lo, hi = idx[0], idx[-1] + pd.Timedelta("1h")
        exp_rules = cal_rules.expected_bar_opens(lo, hi, "1h")
        exp_none = cal_none.expected_bar_opens(lo, hi, "1h")
        miss_rules = exp_rules.difference(idx)
        miss_none = exp_none.difference(idx)
        # data-driven alternative: a trading day (session) without any bar is a closure
        sid = cal_none.session_id(exp_none, "1h")
        present = pd.Series(exp_none.isin(idx)).groupby(sid).transform("sum").to_numpy()
        miss_absent_day = int(((~exp_none.isin(idx)) & (present > 0)).sum())
        off = len(idx.difference(exp_rules))
        assert (len(miss_rules), len(miss_none), miss_absent_day, off) == want[sym]
    # the 3 XAUUSD bars are the CME outage of 2025-11-28 (05:00-07:00 New York), a real hole
    xau = metals_full["XAUUSD"]
    miss = cal_rules.expected_bar_opens(xau[0], xau[-1] + pd.Timedelta("1h"), "1h").difference(xau)
    assert list(miss) == list(pd.date_range("2025-11-28 10:00", periods=3, freq="h", tz="UTC"))


# ---------------------------------------------------------------- bar grids
NY7 = BarAnchor("America/New_York", 7 * 60)


def test_ny7_grid_moves_with_us_dst() -> None:
    """4h bars of a New York + 7h server: 21:00Z in summer, 22:00Z in winter (hand-computed)."""
    got = NY7.grid("2024-03-08", "2024-03-12", "4h")
    utc_hours = {(t.day, t.hour) for t in got}
    assert (8, 22) in utc_hours  # Fri 8 March, EST: server midnight = 22:00Z
    assert (8, 21) not in utc_hours
    assert (11, 21) in utc_hours  # Mon 11 March, EDT (US DST began 10 March): 21:00Z
    assert (11, 22) not in utc_hours
    # every grid bar opens at server 00/04/08/12/16/20: NY wall + 7h is a multiple of 4h
    server = got.tz_convert("America/New_York").tz_localize(None) + pd.Timedelta(hours=7)
    assert set(server.hour) <= {0, 4, 8, 12, 16, 20}
    assert all(server.minute == 0)
    # daily bars open at New York 17:00 all year
    days = NY7.grid("2024-01-01", "2024-12-31", "1d").tz_convert("America/New_York")
    assert set(days.hour) == {17}
    assert len(days) == 365  # one per day, 2024-12-31 17:00 NY falls after the end


def test_fx_4h_calendar_on_the_ny7_grid_both_sides_of_dst() -> None:
    cal = default_calendar("EURUSD", bar_anchor=NY7)
    # week of the US DST start 2024-03-10: Fri 8 Mar closes 17:00 EST (last bar 13:00 EST)
    exp = cal.expected_bar_opens("2024-03-07", "2024-03-13", "4h")
    ny = exp.tz_convert("America/New_York")
    fri = ny[ny.day == 8]
    assert list(fri.hour) == [1, 5, 9, 13]
    assert fri[-1].tz_convert("UTC").hour == 18  # 13:00 EST
    sun = ny[ny.day == 10]
    assert list(sun.hour) == [17, 21]  # week opens Sun 17:00 EDT = 21:00Z
    assert sun[0].tz_convert("UTC").hour == 21


@pytest.mark.parametrize(
    ("stamps", "tf", "want"),
    [
        (["2024-07-01 21:00", "2024-12-02 22:00", "2024-12-03 02:00"], "4h", NY7),
        (["2024-07-01 21:00", "2024-12-02 22:00"], "1d", NY7),
        (["2013-02-08", "2013-02-11"], "1d", BarAnchor()),
        (["2024-07-01 21:00", "2024-12-02 22:00"], "1h", BarAnchor()),
        (["2024-07-01 21:00", "2024-12-02 22:15"], "15m", BarAnchor()),
    ],
)
def test_infer_bar_anchor(stamps: list[str], tf: str, want: BarAnchor) -> None:
    assert infer_bar_anchor(pd.DatetimeIndex(stamps, tz="UTC"), tf) == want


def test_infer_bar_anchor_errors() -> None:
    with pytest.raises(ValueError, match="no known 4h bar grid"):
        infer_bar_anchor(pd.DatetimeIndex(["2024-01-02 00:00", "2024-01-02 01:00"]), "4h")
    with pytest.raises(ValueError, match="no timestamps"):
        infer_bar_anchor(pd.DatetimeIndex([]), "1h")


@pytest.mark.parametrize(
    ("mapping", "minutes"),
    [
        ({"timezone": "America/New_York", "offset": "+7h"}, 420),
        ({"timezone": "UTC", "offset": "-30m"}, -30),
        ({"timezone": "UTC", "offset": 90}, 90),
        ({"timezone": "UTC"}, 0),
    ],
)
def test_bar_anchor_from_mapping(mapping: dict, minutes: int) -> None:
    a = BarAnchor.from_mapping(mapping)
    assert a.offset_minutes == minutes
    assert BarAnchor.from_mapping(a.describe()) == a


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"timezone": "UTC", "offset": "7 hours"}, "is not like"),
        ({"timezone": "Mars/Base", "offset": "+7h"}, "unknown timezone"),
        ({"timezone": "UTC", "offset": "+25h"}, "exceeds one day"),
    ],
)
def test_bar_anchor_errors(mapping: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BarAnchor.from_mapping(mapping)


# ---------------------------------------------------------------- asset classes and spec form
@pytest.mark.parametrize(
    ("symbol", "cls"),
    [
        ("EURUSD", "fx"),
        ("USDJPY", "fx"),
        ("GBPNZD", "fx"),
        ("XAUUSD", "metal"),
        ("XAGUSD", "metal"),
        ("UKOIL", "energy"),
        ("USOIL", "energy"),
        ("BTCUSDT", "crypto"),
        ("PAXGUSDT", "crypto"),
        ("BTCUSD", "crypto"),
        ("^GSPC", "index"),
        ("SP500", "index"),
        ("NASDAQ", "index"),
        ("KO", "equity"),
        ("CL", "equity"),  # Colgate, not crude oil
        ("GOOGL", "equity"),
        ("ABCDEF", "equity"),  # six letters but not two ISO currencies
    ],
)
def test_infer_asset_class(symbol: str, cls: str) -> None:
    assert infer_asset_class(symbol) == cls


def test_default_calendars() -> None:
    fx = default_calendar("EURUSD")
    assert fx.describe()["week_open"] == {"day": "SUN", "time": "17:00"}
    assert fx.daily_breaks == ()
    xau = default_calendar("XAUUSD")
    assert xau.daily_breaks == ((17 * 60, 18 * 60),)
    assert xau.holidays_calendar == "metals_us"
    assert default_calendar("BTCUSDT").always_open
    ko = default_calendar("KO", daily=True)
    assert ko.holidays_calendar == "XNYS"
    # Brent's pause (22:00-01:00 London) is not expected data (17:00-20:00 New York in June)
    brent = default_calendar("UKOIL")
    exp = brent.expected_bar_opens("2024-06-10", "2024-06-11", "1h").tz_convert("Europe/London")
    assert sorted(set(range(24)) - set(exp.hour)) == [0, 22, 23]
    # FX Christmas: trading day 2024-12-25 closed, 24 Dec ends 13:00 NY, 26 Dec from 01:00 NY
    fxe = fx.expected_bar_opens("2024-12-24", "2024-12-27", "1h").tz_convert("America/New_York")
    assert fxe[fxe.day == 24].hour.max() == 12
    assert not any(fxe.day == 25)
    assert fxe[fxe.day == 26].hour.min() == 1


def test_spec_universe_form_loads() -> None:
    """spec 004 §コストテーブル / ユニバース仕様 v1: timezone on the leg, sessions + "US"."""
    spec_th = {"sessions": [{"start": "00:05", "end": "23:55"}], "holidays_calendar": "US"}
    cal = SessionCalendar.from_mapping(spec_th, timezone="UTC", asset_class="metal")
    assert cal.timezone == "UTC"
    assert cal.daily_breaks == ((23 * 60 + 55, 5),)
    assert cal.week_timezone == "America/New_York"
    assert cal.week_open == (6, 18 * 60)
    # XNYS holidays: Thanksgiving 2016 (a Thursday) has no bar; the 10-minute pause is shorter
    # than one 1h bar, so Wednesday's 23:00Z bar is expected
    exp = set(cal.expected_bar_opens("2016-11-23", "2016-11-26", "1h"))
    assert pd.Timestamp("2016-11-23 23:00", tz="UTC") in exp
    assert not any(
        pd.Timestamp("2016-11-24", tz="UTC") <= t < pd.Timestamp("2016-11-25", tz="UTC")
        for t in exp
    )
    # equities in the spec form = XNYS sessions
    eq = SessionCalendar.from_mapping(
        {"sessions": [{"start": "09:30", "end": "16:00"}], "holidays_calendar": "US"},
        timezone="America/New_York",
        asset_class="equity",
    )
    days = eq.expected_bar_opens("2016-11-21", "2016-11-28", "1d")
    assert [t.day for t in days] == [21, 22, 23, 25]
    with pytest.raises(ValueError, match="either sessions or daily_breaks"):
        SessionCalendar.from_mapping(
            {**spec_th, "daily_breaks": [{"start": "1:00", "end": "2:00"}]}
        )
    with pytest.raises(ValueError, match="sessions overlap"):
        SessionCalendar.from_mapping(
            {"sessions": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]}
        )

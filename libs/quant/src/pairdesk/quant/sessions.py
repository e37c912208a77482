"""Trading-session calendars: which bars a market is *expected* to print (spec 004 §ユニバース仕様 v1
``trading_hours``, §ラベリング 共通前提/データ品質, §data-assets-pipeline 仕様 v1).

A :class:`SessionCalendar` is built from one ``trading_hours`` mapping of ``config/universe.yaml``
and answers two questions for a timeframe:

* :meth:`SessionCalendar.expected_bar_opens` -- the UTC bar-open times in ``[start, end)`` whose
  whole bar ``[open, open + timeframe)`` lies inside one trading session;
* :meth:`SessionCalendar.is_tradable` -- the same test for arbitrary bar-open times.

Conventions (documented choices where the spec is silent)
---------------------------------------------------------
* **Bar grid.** Bars open on the UTC grid anchored at the Unix epoch with step = timeframe
  (``15m`` -> :00/:15/:30/:45, ``1h`` -> every hour, ``4h`` -> 00/04/08/12/16/20Z). Timeframes
  must divide one day. For sessions whose boundaries fall on whole hours of a whole-hour-offset
  zone (the shipped metals: New York) every ``15m``/``1h`` bar is either fully inside or fully
  outside a session; a ``4h`` bar that straddles the daily break is *not* expected.
* **Session wall clock.** Session times are local wall-clock times in ``timezone`` and are
  converted to UTC per day, so the sessions move with daylight-saving time: the metals week
  opens Sunday 18:00 New York = 22:00Z in summer (EDT) and 23:00Z in winter (EST), and the daily
  break 17:00-18:00 New York is 21:00-22:00Z in summer and 22:00-23:00Z in winter. US and EU DST
  changes fall on different dates in March and October/November; only the calendar's own zone
  matters.
* **Trading day.** With a daily break, trading day *D* runs from the end of the break on *D - 1*
  to the start of the break on *D* (CME convention: a session carries the date on which it
  closes), so the metals session Sunday 18:00 -> Monday 17:00 New York is trading day Monday.
  Without a daily break a trading day is the local calendar day. The weekly window
  ``week_open -> week_close`` is intersected with the trading days.
* **Holidays** (``holidays_calendar``). Only named rule sets computed with
  :mod:`pandas.tseries.holiday` are supported; ``"metals_us"`` is the schedule observed in the
  shipped MT5 metals data 2018-2026 (``data/mt5_simom1_h1``):

  - *closed* (the whole trading day is removed): New Year's Day (Sunday -> Monday; a Saturday
    New Year is not observed), Good Friday, Christmas Day (Saturday -> Friday, Sunday -> Monday);
  - *early close 13:00 New York* (the trading day ends at 13:00 instead of 17:00): Martin Luther
    King Jr. Day, Presidents' Day, Memorial Day, Juneteenth (from 2022), Independence Day
    (Saturday -> Friday, Sunday -> Monday), Labor Day, Thanksgiving;
  - *early close 14:00 New York*: the day after Thanksgiving, Christmas Eve when it falls on
    Monday-Thursday.

  The early-close hour varies by year in the data (13:00-16:00); the calendar takes the earliest
  observed hour so a bar the broker did not print is never called missing. Bars the broker did
  print after the calendar's early close are simply *not expected* (DQ keeps them and counts them
  as off-session). Closure wins over an early close on the same day. ``None``/``"none"`` means
  no holidays.

  Measured on the shipped files (tests/quant/test_sessions.py), 1h bars 2018-03-18 -> 2026-05-15,
  expected bars the data lacks: XAUUSD 3 / XAGUSD 1 with this rule set (XAUUSD: the CME outage
  of 2025-11-28 05:00-07:00 New York; XAGUSD: 2022-04-13 22:00Z), against 740 / 741 with no
  holiday rules and 188 / 189 with the purely data-driven alternative "a trading day with no bar
  at all is a closure" (which still calls every early close missing and would interpolate the
  2-bar ones). The price of the earliest-hour early close: 62 / 59 printed bars (13:00-16:00 New
  York on holidays, mostly 2022+) are off-session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd
from dateutil.relativedelta import TH
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

__all__ = [
    "HolidayRules",
    "SessionCalendar",
    "holiday_rules",
    "timeframe_to_timedelta",
]

_DAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}
_TF_RE = re.compile(r"^([1-9][0-9]*)(m|h|d)$")
_UNIT: Final = "us"  # resolution of every DatetimeIndex this module returns
_MIN = 60_000_000  # microseconds per minute
_DAY_MIN = 24 * 60


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """Parse a bar timeframe string (``"15m"``, ``"1h"``, ``"4h"``, ``"1d"``).

    Parameters
    ----------
    timeframe : str
        ``<n>m``, ``<n>h`` or ``<n>d`` with ``n >= 1``; the length must divide one day so bars
        sit on a UTC grid anchored at the Unix epoch.

    Returns
    -------
    pandas.Timedelta
        The bar length.

    Raises
    ------
    ValueError
        Malformed string or a length that does not divide 24 h (e.g. ``"7h"``).
    """
    m = _TF_RE.match(timeframe) if isinstance(timeframe, str) else None
    if m is None:
        raise ValueError(
            f"invalid timeframe {timeframe!r}: expected <n>m, <n>h or <n>d such as '15m', '1h', '4h'"
        )
    n, unit = int(m.group(1)), m.group(2)
    minutes = n * {"m": 1, "h": 60, "d": _DAY_MIN}[unit]
    if minutes > _DAY_MIN or _DAY_MIN % minutes:
        raise ValueError(f"invalid timeframe {timeframe!r}: the bar length must divide one day")
    return pd.Timedelta(minutes=minutes)


def _parse_hhmm(text: Any, what: str) -> int:
    """``"HH:MM"`` -> minutes after midnight (``"24:00"`` allowed for an end of day)."""
    m = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", str(text).strip())
    if m is None:
        raise ValueError(f"{what}: time {text!r} is not HH:MM")
    h, mi = int(m.group(1)), int(m.group(2))
    if mi > 59 or h > 24 or (h == 24 and mi):
        raise ValueError(f"{what}: time {text!r} is out of range")
    return h * 60 + mi


def _fmt_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class HolidayRules:
    """A named holiday schedule: whole-day closures and early closes, as pandas holiday rules.

    Attributes
    ----------
    name : str
        Schedule name used in ``trading_hours.holidays_calendar``.
    closed : tuple of pandas.tseries.holiday.Holiday
        Trading days removed entirely.
    early_close : tuple of (Holiday, int)
        Trading days that end early, with the local close time in minutes after midnight.
    """

    name: str
    closed: tuple[Holiday, ...]
    early_close: tuple[tuple[Holiday, int], ...]

    def closures(self, start: date, end: date) -> tuple[set[date], dict[date, int]]:
        """Closed trading dates and early-close minutes (local) for trading dates in ``[start, end]``.

        A date that is both closed and early-closing is reported closed only; when two early
        closes fall on one date the earlier time wins.
        """
        s, e = pd.Timestamp(start), pd.Timestamp(end)
        closed: set[date] = set()
        for rule in self.closed:
            closed.update(d.date() for d in rule.dates(s, e))
        early: dict[date, int] = {}
        for rule, minute in self.early_close:
            for d in rule.dates(s, e):
                key = d.date()
                if key not in closed:
                    early[key] = min(minute, early.get(key, minute))
        return closed, early


@lru_cache(maxsize=64)
def _closures_for_years(
    name: str, y0: int, y1: int
) -> tuple[frozenset[date], tuple[tuple[date, int], ...]]:
    """Closures of schedule ``name`` for whole years ``y0..y1`` (cached: the rules are pure)."""
    closed, early = holiday_rules(name).closures(date(y0, 1, 1), date(y1, 12, 31))
    return frozenset(closed), tuple(sorted(early.items()))


def _metals_us() -> HolidayRules:
    """The ``metals_us`` schedule (see the module docstring for the evidence)."""
    weekdays = (0, 1, 2, 3, 4)
    return HolidayRules(
        name="metals_us",
        closed=(
            Holiday(
                "New Year's Day", month=1, day=1, observance=sunday_to_monday, days_of_week=weekdays
            ),
            GoodFriday,
            Holiday("Christmas Day", month=12, day=25, observance=nearest_workday),
        ),
        early_close=(
            (USMartinLutherKingJr, 13 * 60),
            (USPresidentsDay, 13 * 60),
            (USMemorialDay, 13 * 60),
            (
                Holiday(
                    "Juneteenth",
                    month=6,
                    day=19,
                    start_date=datetime(2022, 1, 1),
                    observance=nearest_workday,
                ),
                13 * 60,
            ),
            (Holiday("Independence Day", month=7, day=4, observance=nearest_workday), 13 * 60),
            (USLaborDay, 13 * 60),
            (USThanksgivingDay, 13 * 60),
            (
                Holiday(
                    "Day after Thanksgiving",
                    month=11,
                    day=1,
                    offset=[DateOffset(weekday=TH(4)), Day(1)],
                ),
                14 * 60,
            ),
            (Holiday("Christmas Eve", month=12, day=24, days_of_week=(0, 1, 2, 3)), 14 * 60),
        ),
    )


_HOLIDAY_SCHEDULES: Mapping[str, Callable[[], HolidayRules]] = {"metals_us": _metals_us}


def holiday_rules(name: str) -> HolidayRules:
    """Return the named holiday schedule.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    """
    try:
        return _HOLIDAY_SCHEDULES[name]()
    except KeyError:
        raise ValueError(
            f"unknown holidays_calendar {name!r}; known: {sorted(_HOLIDAY_SCHEDULES)}"
        ) from None


@dataclass(frozen=True)
class SessionCalendar:
    """Weekly trading sessions in a local time zone, with daily breaks and holidays.

    Build it with :meth:`from_mapping` from a ``universe.yaml`` ``trading_hours`` mapping.

    Attributes
    ----------
    timezone : str
        IANA zone of the session wall clock (``"America/New_York"``).
    always_open : bool
        24/7 market (crypto): every grid bar is expected; the other fields are ignored.
    week_open, week_close : tuple (weekday, minutes) or None
        Weekday (0 = Monday ... 6 = Sunday) and local minutes after midnight of the weekly open
        and close. Both ``None`` = no weekly closure.
    daily_breaks : tuple of (start_minutes, end_minutes)
        Local daily pauses ``[start, end)``; ``end <= start`` means the pause crosses midnight.
    holidays_calendar : str or None
        Name of a :class:`HolidayRules` schedule (:func:`holiday_rules`), or ``None``.
    """

    timezone: str = "UTC"
    always_open: bool = False
    week_open: tuple[int, int] | None = None
    week_close: tuple[int, int] | None = None
    daily_breaks: tuple[tuple[int, int], ...] = ()
    holidays_calendar: str | None = None

    def __post_init__(self) -> None:
        try:
            pd.Timestamp("2020-01-01").tz_localize(self.timezone)
        except Exception as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        if (self.week_open is None) != (self.week_close is None):
            raise ValueError("week_open and week_close must be given together")
        if self.holidays_calendar is not None:
            holiday_rules(self.holidays_calendar)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> SessionCalendar:
        """Build from a ``trading_hours`` mapping of ``config/universe.yaml``.

        Parameters
        ----------
        d : mapping
            Either ``{timezone, always_open: true}`` or ``{timezone, week_open: {day, time},
            week_close: {day, time}, daily_breaks: [{start, end}, ...], holidays_calendar}``
            with days ``MON``..``SUN`` and times ``"HH:MM"`` local to ``timezone``.

        Raises
        ------
        ValueError
            Unknown zone/day/holiday schedule, malformed time, or only one of week_open/close.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"trading_hours must be a mapping, got {type(d).__name__}")
        tz = str(d.get("timezone", "UTC"))
        if bool(d.get("always_open", False)):
            return cls(timezone=tz, always_open=True)

        def weekly(key: str) -> tuple[int, int] | None:
            node = d.get(key)
            if node is None:
                return None
            if not isinstance(node, Mapping) or "day" not in node or "time" not in node:
                raise ValueError(f"trading_hours.{key} must be {{day, time}}")
            day = str(node["day"]).strip().upper()[:3]
            if day not in _DAYS:
                raise ValueError(f"trading_hours.{key}.day {node['day']!r} is not MON..SUN")
            return _DAYS[day], _parse_hhmm(node["time"], f"trading_hours.{key}")

        breaks: list[tuple[int, int]] = []
        for i, b in enumerate(d.get("daily_breaks") or []):
            if not isinstance(b, Mapping) or "start" not in b or "end" not in b:
                raise ValueError(f"trading_hours.daily_breaks[{i}] must be {{start, end}}")
            breaks.append(
                (
                    _parse_hhmm(b["start"], f"daily_breaks[{i}].start") % _DAY_MIN,
                    _parse_hhmm(b["end"], f"daily_breaks[{i}].end") % _DAY_MIN,
                )
            )
        hol = d.get("holidays_calendar")
        hol_name = None if hol is None or str(hol).strip().lower() in {"", "none"} else str(hol)
        return cls(
            timezone=tz,
            always_open=False,
            week_open=weekly("week_open"),
            week_close=weekly("week_close"),
            daily_breaks=tuple(sorted(breaks)),
            holidays_calendar=hol_name,
        )

    # ------------------------------------------------------------------ sessions
    def _roll_minutes(self) -> int:
        """Local time at which a new trading day starts (end of the latest-ending daily break)."""
        if not self.daily_breaks:
            return 0
        return max(end for _, end in self.daily_breaks)

    def session_intervals(self, start: Any, end: Any) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
        """Trading sessions overlapping ``[start, end)`` as UTC ``[open, close)`` intervals.

        Parameters
        ----------
        start, end : timestamp-like
            UTC bounds (naive values are read as UTC).

        Returns
        -------
        (opens, closes) : pair of DatetimeIndex, tz UTC, equal length
            Sorted, disjoint; touching intervals are merged, so a closure always separates two
            intervals. An always-open calendar returns the single interval ``[start, end)``.
        """
        s, e = _utc(start), _utc(end)
        if self.always_open:
            return _dti([s]), _dti([e])
        tz = self.timezone
        d0 = s.tz_convert(tz).date() - timedelta(days=2)
        d1 = e.tz_convert(tz).date() + timedelta(days=2)
        roll = self._roll_minutes()
        closed: set[date] = set()
        early: dict[date, int] = {}
        if self.holidays_calendar is not None:
            cl, ea = _closures_for_years(self.holidays_calendar, d0.year, d1.year)
            closed, early = set(cl), dict(ea)

        # local wall-clock intervals in minutes since d0 00:00 (integers, exact)
        ndays = (d1 - d0).days + 1
        pieces: list[tuple[int, int]] = []
        for k in range(1, ndays):
            day = d0 + timedelta(days=k)
            if day in closed:
                continue
            if roll:
                lo, hi = (k - 1) * _DAY_MIN + roll, k * _DAY_MIN + roll
            else:
                lo, hi = k * _DAY_MIN, (k + 1) * _DAY_MIN
            if day in early:
                hi = min(hi, k * _DAY_MIN + early[day])
            if hi > lo:
                pieces.append((lo, hi))
        pieces = _subtract(pieces, self._break_intervals(ndays))
        if self.week_open is not None and self.week_close is not None:
            pieces = _intersect(pieces, self._week_intervals(d0, ndays))
        pieces = _merge(pieces)
        if not pieces:
            empty = _dti([])
            return empty, empty
        base = pd.Timestamp(d0)
        arr = np.asarray(pieces, dtype=np.int64)
        opens = _localize(base + pd.to_timedelta(arr[:, 0], unit="m"), tz)
        closes = _localize(base + pd.to_timedelta(arr[:, 1], unit="m"), tz)
        keep = (closes > s) & (opens < e)
        return opens[keep], closes[keep]

    def _break_intervals(self, ndays: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for k in range(-1, ndays + 1):
            for bs, be in self.daily_breaks:
                lo = k * _DAY_MIN + bs
                hi = k * _DAY_MIN + be + (_DAY_MIN if be <= bs else 0)
                out.append((lo, hi))
        return sorted(out)

    def _week_intervals(self, d0: date, ndays: int) -> list[tuple[int, int]]:
        assert self.week_open is not None
        assert self.week_close is not None
        (od, ot), (cd, ct) = self.week_open, self.week_close
        span = (cd - od) % 7
        if span == 0 and ct <= ot:
            span = 7
        out: list[tuple[int, int]] = []
        for k in range(-7, ndays + 1):
            if (d0 + timedelta(days=k)).weekday() == od:
                out.append((k * _DAY_MIN + ot, (k + span) * _DAY_MIN + ct))
        return out

    # ------------------------------------------------------------------ bars
    def expected_bar_opens(self, start: Any, end: Any, timeframe: str) -> pd.DatetimeIndex:
        """UTC open times in ``[start, end)`` of the bars that lie wholly inside a session.

        Parameters
        ----------
        start, end : timestamp-like
            UTC bounds; ``start`` inclusive, ``end`` exclusive (naive values are read as UTC).
        timeframe : str
            Bar length (:func:`timeframe_to_timedelta`); bars sit on the epoch-anchored UTC grid.

        Returns
        -------
        pandas.DatetimeIndex
            Sorted bar-open times, tz UTC, unit ``us``. A bar ``[o, o + tf)`` is expected iff it
            is contained in one interval of :meth:`session_intervals`.

        Raises
        ------
        ValueError
            Bad timeframe.
        """
        tf = timeframe_to_timedelta(timeframe)
        s, e = _utc(start), _utc(end)
        step = _us(tf)
        first = -(-_us_ts(s) // step) * step
        last = _us_ts(e)
        grid = np.arange(first, last, step, dtype=np.int64)
        if self.always_open or grid.size == 0:
            return _from_us(grid)
        return _from_us(grid[self._session_pos(grid, step) >= 0])

    def is_tradable(self, ts_index: Any, timeframe: str) -> np.ndarray:
        """Whether each bar ``[t, t + timeframe)`` lies wholly inside a session.

        Parameters
        ----------
        ts_index : DatetimeIndex or array-like of timestamps, shape (n,)
            Bar-open times (naive values are read as UTC); need not be on the grid or sorted.
        timeframe : str
            Bar length.

        Returns
        -------
        numpy.ndarray of bool, shape (n,)
        """
        return self.session_id(ts_index, timeframe) >= 0

    def session_id(self, ts_index: Any, timeframe: str) -> np.ndarray:
        """Identifier of the session containing each bar, ``-1`` when the bar is not inside one.

        The id is the session's UTC open time in microseconds since the epoch (``0`` for an
        always-open calendar), so two bars are in the same session -- no closure, break or
        holiday between them -- iff their ids are equal and non-negative.

        Parameters
        ----------
        ts_index : DatetimeIndex or array-like of timestamps, shape (n,)
        timeframe : str

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
        """
        tf = timeframe_to_timedelta(timeframe)
        idx = pd.DatetimeIndex(ts_index)
        idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
        t = idx.as_unit(_UNIT).asi8
        if t.size == 0:
            return np.empty(0, dtype=np.int64)
        if self.always_open:
            return np.zeros(t.size, dtype=np.int64)
        return self._session_pos(t, _us(tf))

    def _session_pos(self, t: np.ndarray, step: int) -> np.ndarray:
        lo = _from_us(np.array([t.min()])) - pd.Timedelta(days=1)
        hi = _from_us(np.array([t.max() + step])) + pd.Timedelta(days=1)
        opens, closes = self.session_intervals(lo[0], hi[0])
        o, c = opens.as_unit(_UNIT).asi8, closes.as_unit(_UNIT).asi8
        out = np.full(t.size, -1, dtype=np.int64)
        if o.size == 0:
            return out
        j = np.searchsorted(o, t, side="right") - 1
        jj = np.clip(j, 0, None)
        inside = (j >= 0) & (t + step <= c[jj])
        out[inside] = o[jj[inside]]
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (for ``__meta.json``)."""
        if self.always_open:
            return {"timezone": self.timezone, "always_open": True}
        inv = {v: k for k, v in _DAYS.items()}
        out: dict[str, Any] = {"timezone": self.timezone, "always_open": False}
        if self.week_open is not None and self.week_close is not None:
            out["week_open"] = {"day": inv[self.week_open[0]], "time": _fmt_hhmm(self.week_open[1])}
            out["week_close"] = {
                "day": inv[self.week_close[0]],
                "time": _fmt_hhmm(self.week_close[1]),
            }
        out["daily_breaks"] = [
            {"start": _fmt_hhmm(a), "end": _fmt_hhmm(b)} for a, b in self.daily_breaks
        ]
        out["holidays_calendar"] = self.holidays_calendar
        return out


# ---------------------------------------------------------------------- helpers
def _utc(x: Any) -> pd.Timestamp:
    ts = pd.Timestamp(x)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _us(td: pd.Timedelta) -> int:
    return int(td.value // 1000)


def _us_ts(ts: pd.Timestamp) -> int:
    return int(ts.as_unit("ns").value // 1000)


def _from_us(a: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(a, dtype="datetime64[us]")).tz_localize("UTC")


def _dti(values: Sequence[pd.Timestamp]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(values), dtype="datetime64[us, UTC]")


def _localize(local: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Local wall times -> UTC. A non-existent time (spring-forward gap) moves forward; an
    ambiguous one (autumn fold) takes the first (daylight-saving) occurrence."""
    amb = np.ones(len(local), dtype=bool)
    out = pd.DatetimeIndex(local).tz_localize(tz, ambiguous=amb, nonexistent="shift_forward")
    return out.tz_convert("UTC").as_unit(_UNIT)


def _merge(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(iv):
        if hi <= lo:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``a`` minus the union of ``b`` (both lists of half-open integer intervals), linear time."""
    bm = _merge(b)
    out: list[tuple[int, int]] = []
    j = 0
    for lo, hi in _merge(a):
        while j < len(bm) and bm[j][1] <= lo:
            j += 1
        cur, k = lo, j
        while k < len(bm) and bm[k][0] < hi:
            if bm[k][0] > cur:
                out.append((cur, bm[k][0]))
            cur = max(cur, bm[k][1])
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    am, bm = _merge(a), _merge(b)
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(am) and j < len(bm):
        lo, hi = max(am[i][0], bm[j][0]), min(am[i][1], bm[j][1])
        if lo < hi:
            out.append((lo, hi))
        if am[i][1] < bm[j][1]:
            i += 1
        else:
            j += 1
    return out

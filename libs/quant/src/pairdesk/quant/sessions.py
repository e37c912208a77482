"""Trading-session calendars and bar grids: which bars a market is *expected* to print (spec 004
§ユニバース仕様 v1 ``trading_hours``, §ラベリング 共通前提/データ品質, §data-assets-pipeline 仕様 v1).

A :class:`SessionCalendar` is built from one ``trading_hours`` mapping of a universe file (or from
the asset-class defaults, :func:`default_calendar`) and answers, for a timeframe:

* :meth:`SessionCalendar.expected_bar_opens` -- the UTC bar-open times in ``[start, end)`` that sit
  on the feed's bar grid and whose bar ``[open, open + timeframe)`` overlaps a trading session;
* :meth:`SessionCalendar.is_tradable` / :meth:`SessionCalendar.session_id` -- the same test for
  arbitrary bar-open times, and which session each bar belongs to.

Conventions (documented choices where the spec is silent; docs/quant-contracts.md §Bars)
----------------------------------------------------------------------------------------
* **Bar grid** (:class:`BarAnchor`). A feed's bars open where its *own clock* reads a multiple of
  the timeframe. The clock is ``wall time in anchor.timezone + anchor.offset``; the default
  ``(UTC, +0)`` is the Unix-epoch UTC grid (Binance, daily equity files dated by exchange
  date). MetaTrader 5 "New York close" servers run on ``America/New_York + 7h``, so their 4h bars
  open at 21:00Z/01:00Z/... in summer and 22:00Z/02:00Z/... in winter and their daily bars at New
  York 17:00 -- the grid moves with US daylight-saving time. For ``15m``/``1h`` bars every
  whole-hour-offset anchor gives the same grid. :func:`infer_bar_anchor` picks the anchor from
  the data when a universe does not declare ``bar_anchor``.
* **Session wall clock.** Session times are wall-clock times in ``timezone`` converted to UTC per
  day, so sessions move with daylight-saving time (metals: week opens Sunday 18:00 New York =
  22:00Z in summer, 23:00Z in winter). The weekly window may use its own zone
  (``week_timezone``), e.g. Brent's daily pause is set in London time but its week in New York.
* **Trading day.** Trading day *D* is the session that *closes* on local date *D* (CME
  convention): with a daily break 17:00-18:00 New York, Sunday 18:00 -> Monday 17:00 is Monday;
  with a break that crosses midnight (equities: 16:00 -> 09:30) the 09:30-16:00 session of *D*
  is *D*. Without a break the trading day rolls at ``day_roll`` (FX: 17:00 New York; default
  midnight). Closures, early closes and late opens apply to trading days.
* **Which bars are expected (per timeframe).** Two sessions separated by a pause *shorter than
  one bar* are one session at that timeframe (a 1h pause is invisible in a 4h or daily bar), and
  a bar on the grid is expected iff it overlaps such a merged session. For bars no longer than
  the pauses (the shipped 15m/1h metals) this is the old containment rule: a bar is expected iff
  it lies wholly inside a session; for 4h/1d bars it keeps the bar that straddles a daily break
  and the daily bar of an exchange-dated equity file (``[D 00:00Z, D+1 00:00Z)`` overlaps the
  XNYS session of *D*). Bars of one merged session share :meth:`SessionCalendar.session_id`.
* **Holidays** (``holidays_calendar``, :func:`holiday_schedule`), from maintained libraries where
  they give the answer:

  - an ``exchange_calendars`` code (``"XNYS"``, ``"XLON"``, ...; aliases ``"US"`` and ``"NYSE"``
    = ``XNYS``): non-session weekdays are closed, the library's early closes and late opens apply
    (local exchange times);
  - ``"country:XX"`` / ``"financial:XXXX"``: whole-day closures from the ``holidays`` package
    (``holidays.country_holidays("XX")``, ``holidays.financial_holidays("XXXX")``);
  - ``"metals_us"``: the CME-style metals schedule seen in the shipped MT5 metals data
    2018-2026, built from ``holidays.financial_holidays("NYSE")``: *closed* on New Year's Day,
    Good Friday and Christmas Day (NYSE observance: Sunday -> Monday, Saturday Christmas ->
    Friday, a Saturday New Year is not observed); *early close 13:00 New York* on the other
    regular NYSE holidays (MLK Day, Presidents' Day, Memorial Day, Juneteenth from 2022,
    Independence Day, Labor Day, Thanksgiving); NYSE's one-off closures (days of mourning,
    hurricane) are ignored -- the metals market traded. The library has no early closes, so
    the broker's *14:00* early closes on the day after Thanksgiving and on Christmas Eve
    (Monday-Thursday) are derived from the library's Thanksgiving/Christmas dates. The early-
    close hour varies by year in the data (13:00-16:00); the calendar takes the earliest so a
    bar the broker did not print is never called missing, and bars printed later are
    off-session. Tested equal to the former hand-written pandas rules 2000-2030.
  - ``"fx"``: the FX brokers' year-end schedule seen in the shipped MT5 FX files (no library
    covers OTC FX): trading days Christmas Day and New Year's Day (and the Monday after when
    they fall on a Sunday) closed, Christmas Eve and New Year's Eve close at 13:00 New York,
    and the sessions right after the two holidays are expected from 01:00 New York only (the
    brokers reopened between 17:00 and 01:00 depending on the year; bars printed earlier are
    off-session).
  - ``None``/``"none"``: no holidays;
  - a list (or ``"a+b"``): the union -- closed if any schedule closes, the earliest early close
    and the latest late open (schedules in one zone).

* **Asset-class defaults** (:func:`default_trading_hours`, :func:`infer_asset_class`): a symbol
  needs no universe entry -- FX 24/5 (Sunday 17:00 -> Friday 17:00 New York, ``fx`` holidays),
  metals (same week opening 18:00, daily break 17:00-18:00 New York, ``metals_us``), energy
  (as metals; Brent (``UKOIL``) pauses 22:00-01:00 London since 2023, which is taken as its
  break, so the bars the broker printed there before 2023 are off-session, never missing),
  crypto 24/7, US equities and indices = XNYS sessions (09:30-16:00 New York, XNYS holidays).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd

__all__ = [
    "ASSET_CLASSES",
    "BarAnchor",
    "HolidaySchedule",
    "SessionCalendar",
    "default_calendar",
    "default_trading_hours",
    "holiday_schedule",
    "infer_asset_class",
    "infer_bar_anchor",
    "session_class",
    "timeframe_to_timedelta",
]

_DAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}
_TF_RE = re.compile(r"^([1-9][0-9]*)(m|h|d)$")
_UNIT: Final = "us"  # resolution of every DatetimeIndex this module returns
_MIN = 60_000_000  # microseconds per minute
_DAY_MIN = 24 * 60
_NY: Final = "America/New_York"

#: Session classes understood by :func:`default_trading_hours` / :func:`infer_asset_class`.
ASSET_CLASSES: tuple[str, ...] = ("fx", "metal", "energy", "crypto", "index", "equity")


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """Parse a bar timeframe string (``"15m"``, ``"1h"``, ``"4h"``, ``"1d"``).

    Parameters
    ----------
    timeframe : str
        ``<n>m``, ``<n>h`` or ``<n>d`` with ``n >= 1``; the length must divide one day (``1d``
        is the longest).

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


def _check_tz(tz: str) -> None:
    try:
        pd.Timestamp("2020-01-01").tz_localize(tz)
    except Exception as exc:
        raise ValueError(f"unknown timezone {tz!r}") from exc


# ---------------------------------------------------------------------- bar grid
_OFFSET_RE = re.compile(r"^([+-])?\s*([0-9]+)\s*(h|m)?$")


@dataclass(frozen=True)
class BarAnchor:
    """The clock a feed's bars are aligned to: ``wall time in timezone + offset_minutes``.

    A bar of length ``tf`` opens at UTC instant ``t`` iff that clock, read at ``t``, is a whole
    multiple of ``tf`` since 1970-01-01 00:00 (so the grid moves with the zone's daylight-saving
    changes). ``BarAnchor()`` = the Unix-epoch UTC grid.

    Attributes
    ----------
    timezone : str
        IANA zone, e.g. ``"America/New_York"``.
    offset_minutes : int
        Minutes added to the zone's wall time (MetaTrader "New York close" servers: ``+420``).
    """

    timezone: str = "UTC"
    offset_minutes: int = 0

    def __post_init__(self) -> None:
        _check_tz(self.timezone)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> BarAnchor:
        """Build from ``{timezone: "America/New_York", offset: "+7h"}`` (offset ``"+7h"``,
        ``"-30m"``, ``"+0"`` or an integer number of minutes; default 0).

        Raises
        ------
        ValueError
            Not a mapping, unknown zone or malformed offset.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"bar_anchor must be a mapping, got {type(d).__name__}")
        raw = d.get("offset", 0)
        if isinstance(raw, bool):
            raise ValueError(f"bar_anchor.offset {raw!r} is not like '+7h'")
        if isinstance(raw, int):
            minutes = raw
        else:
            m = _OFFSET_RE.match(str(raw).strip())
            if m is None:
                raise ValueError(f"bar_anchor.offset {raw!r} is not like '+7h' or '-30m'")
            minutes = int(m.group(2)) * (60 if m.group(3) in (None, "h") else 1)
            minutes = -minutes if m.group(1) == "-" else minutes
        if abs(minutes) > _DAY_MIN:
            raise ValueError(f"bar_anchor.offset {raw!r} exceeds one day")
        return cls(timezone=str(d.get("timezone", "UTC")), offset_minutes=minutes)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly form (the ``from_mapping`` input)."""
        sign = "-" if self.offset_minutes < 0 else "+"
        a = abs(self.offset_minutes)
        off = f"{sign}{a // 60}h" if a % 60 == 0 else f"{sign}{a}m"
        return {"timezone": self.timezone, "offset": off}

    def _clock_us(self, t_us: np.ndarray) -> np.ndarray:
        """Anchor clock (naive wall time + offset, us since 1970) at UTC instants ``t_us``."""
        t = np.asarray(t_us, dtype=np.int64)
        if self.timezone == "UTC":
            return t + self.offset_minutes * _MIN
        idx = pd.DatetimeIndex(t.astype("datetime64[us]")).tz_localize("UTC")
        wall = idx.tz_convert(self.timezone).tz_localize(None).as_unit(_UNIT).asi8
        return wall + self.offset_minutes * _MIN

    def on_grid(self, ts: Any, timeframe: str) -> np.ndarray:
        """Whether each UTC time in ``ts`` (shape (n,)) is a bar open of ``timeframe`` on this
        grid; returns bool array of shape (n,)."""
        return self._on_grid_us(_to_us(ts), _us(timeframe_to_timedelta(timeframe)))

    def _on_grid_us(self, t_us: np.ndarray, step: int) -> np.ndarray:
        return np.asarray(self._clock_us(t_us) % step == 0, dtype=bool)

    def grid(self, start: Any, end: Any, timeframe: str) -> pd.DatetimeIndex:
        """Bar-open times of ``timeframe`` on this grid in ``[start, end)`` (UTC, unit us)."""
        step = _us(timeframe_to_timedelta(timeframe))
        s, e = _us_ts(_utc(start)), _us_ts(_utc(end))
        if self.timezone == "UTC":
            off = self.offset_minutes * _MIN
            first = -(-(s + off) // step) * step - off
            return _from_us(np.arange(first, e, step, dtype=np.int64))
        # candidates on a fine UTC grid (every zone offset is a multiple of 15 minutes)
        fine = math.gcd(step, 15 * _MIN, abs(self.offset_minutes) * _MIN or step)
        first = -(-s // fine) * fine
        cand = np.arange(first, e, fine, dtype=np.int64)
        if cand.size == 0:
            return _from_us(cand)
        return _from_us(cand[self._clock_us(cand) % step == 0])


#: Anchors :func:`infer_bar_anchor` tries, in order of preference.
_ANCHOR_CANDIDATES: tuple[BarAnchor, ...] = (
    BarAnchor(),
    BarAnchor(_NY, 7 * 60),  # MetaTrader "New York close" servers (NY + 7h)
    BarAnchor("Europe/Athens", 0),  # MetaTrader EET servers (UTC+2/+3 with EU DST)
    BarAnchor("Europe/London", 0),
    BarAnchor(_NY, 0),
    *(BarAnchor("UTC", h * 60) for h in range(1, 24)),
)


def infer_bar_anchor(ts: Any, timeframe: str) -> BarAnchor:
    """The bar grid of a series of bar-open times.

    The first of these anchors on whose grid *every* timestamp lies wins: UTC epoch;
    ``America/New_York +7h`` (MetaTrader "New York close" servers: 4h bars at 21:00Z in summer
    and 22:00Z in winter, daily bars at New York 17:00); ``Europe/Athens`` (EET servers);
    ``Europe/London``; ``America/New_York``; then fixed UTC offsets of 1..23 h.

    Parameters
    ----------
    ts : array-like of timestamps, shape (n,)
        Bar-open times (naive = UTC).
    timeframe : str

    Returns
    -------
    BarAnchor

    Raises
    ------
    ValueError
        Bad timeframe, no timestamps, or no candidate grid fits (the message names the first
        timestamp off the UTC grid).
    """
    t = _to_us(ts)
    if t.size == 0:
        raise ValueError("cannot infer a bar grid from no timestamps")
    step = _us(timeframe_to_timedelta(timeframe))
    for anchor in _ANCHOR_CANDIDATES:
        if anchor._on_grid_us(t, step).all():
            return anchor
    bad = int(np.flatnonzero(~BarAnchor()._on_grid_us(t, step))[0])
    raise ValueError(
        f"timestamps are on no known {timeframe} bar grid (e.g. {_from_us(t[bad : bad + 1])[0]}); "
        "declare bar_anchor {timezone, offset} or check the timeframe"
    )


# ---------------------------------------------------------------------- holidays
@dataclass(frozen=True, eq=False)
class HolidaySchedule:
    """Holiday effects on trading days (local dates of the calendar's ``timezone``).

    Attributes
    ----------
    name : str
        ``holidays_calendar`` value it was built from.
    closed : frozenset of date
        Trading days removed entirely.
    early_close : mapping date -> int
        Trading days that end early: local close time, minutes after midnight of that date.
    late_open : mapping date -> int
        Trading days that start late: local open time in minutes after midnight of that date
        (negative = on the evening before, e.g. ``-60`` = 23:00 the day before).
    tz : str or None
        Zone of the early-close/late-open clock times (``None`` = the calendar's own zone);
        a calendar in another zone converts them per date.
    """

    name: str
    closed: frozenset[date] = frozenset()
    early_close: Mapping[date, int] = field(default_factory=dict)
    late_open: Mapping[date, int] = field(default_factory=dict)
    tz: str | None = None

    def in_zone(self, tz: str) -> tuple[dict[date, int], dict[date, int]]:
        """Early closes and late opens as minutes after midnight of the date in zone ``tz``."""
        if self.tz is None or self.tz == tz:
            return dict(self.early_close), dict(self.late_open)

        def conv(m: Mapping[date, int]) -> dict[date, int]:
            out: dict[date, int] = {}
            for day, minutes in m.items():
                wall = pd.Timestamp(day) + pd.Timedelta(minutes=minutes)
                assert self.tz is not None
                there = _localize(pd.DatetimeIndex([wall]), self.tz).tz_convert(tz)[0]
                out[day] = int((there.tz_localize(None) - pd.Timestamp(day)) / pd.Timedelta("1min"))
            return out

        return conv(self.early_close), conv(self.late_open)


_XCAL_ALIASES = {"US": "XNYS", "NYSE": "XNYS", "NASDAQ": "XNAS"}

_METALS_CLOSED = ("New Year's Day", "Good Friday", "Christmas Day")
_METALS_EARLY = (
    "Martin Luther King Jr. Day",
    "Washington's Birthday",
    "Memorial Day",
    "Juneteenth National Independence Day",
    "Independence Day",
    "Labor Day",
    "Thanksgiving Day",
)


def _xcal_code(name: str) -> str | None:
    import exchange_calendars as xcals

    code = _XCAL_ALIASES.get(name.upper(), name.upper())
    return code if code in xcals.get_calendar_names(include_aliases=True) else None


def _known(name: str) -> bool:
    if "+" in name:
        return all(_known(n.strip()) for n in name.split("+"))
    if name in ("metals_us", "fx"):
        return True
    if name.startswith(("country:", "financial:")):
        return True
    return _xcal_code(name) is not None


def _strip_observed(n: str) -> str:
    return n.replace(" (observed)", "").strip()


@lru_cache(maxsize=128)
def holiday_schedule(name: str, first_year: int, last_year: int) -> HolidaySchedule:
    """Closures, early closes and late opens of schedule ``name`` for trading days in the whole
    years ``first_year..last_year`` (see the module docstring for every schedule and source).

    Parameters
    ----------
    name : str
        ``"metals_us"``, ``"fx"``, an ``exchange_calendars`` code (``"XNYS"``; ``"US"`` and
        ``"NYSE"`` mean ``XNYS``), ``"country:XX"``, ``"financial:XXXX"``, or several joined
        with ``"+"`` (union).
    first_year, last_year : int

    Returns
    -------
    HolidaySchedule

    Raises
    ------
    ValueError
        Unknown name, or a country/market the ``holidays`` package does not know.
    """
    import holidays as hol

    if "+" in name:
        parts = [holiday_schedule(n.strip(), first_year, last_year) for n in name.split("+")]
        zones = {p.tz for p in parts if p.tz is not None}
        if len(zones) > 1:
            raise ValueError(f"holidays_calendar {name!r} combines schedules of different zones")
        closed_all = frozenset().union(*(p.closed for p in parts))
        early_all: dict[date, int] = {}
        late_all: dict[date, int] = {}
        for sch in parts:
            for d, m in sch.early_close.items():
                early_all[d] = min(m, early_all.get(d, m))
            for d, m in sch.late_open.items():
                late_all[d] = max(m, late_all.get(d, m))
        return HolidaySchedule(
            name,
            closed_all,
            {d: m for d, m in early_all.items() if d not in closed_all},
            {d: m for d, m in late_all.items() if d not in closed_all},
            tz=next(iter(zones), None),
        )
    years = range(first_year, last_year + 1)
    if name == "metals_us":
        nyse = hol.financial_holidays("NYSE", years=years)
        closed: set[date] = set()
        early: dict[date, int] = {}
        for d, label in nyse.items():
            for part in str(label).split(";"):
                n = _strip_observed(part)
                if n in _METALS_CLOSED:
                    closed.add(d)
                elif n in _METALS_EARLY:
                    early[d] = 13 * 60
                if n == "Thanksgiving Day":
                    early.setdefault(d + timedelta(days=1), 14 * 60)
        for y in years:
            eve = date(y, 12, 24)
            if eve.weekday() <= 3:
                early.setdefault(eve, 14 * 60)
        return HolidaySchedule(
            name,
            frozenset(closed),
            {d: m for d, m in early.items() if d not in closed},
            tz=_NY,
        )
    if name == "fx":
        closed = set()
        early = {}
        late: dict[date, int] = {}
        for y in years:
            for month, day in ((12, 25), (1, 1)):
                d = date(y, month, day)
                eve = d - timedelta(days=1)
                if d.weekday() == 5:  # Saturday holiday: nothing to close (weekend)
                    continue
                closed.add(d)
                if d.weekday() == 6:  # Sunday: the broker also keeps Monday closed
                    closed.add(d + timedelta(days=1))
                    continue
                if eve.weekday() <= 4:
                    early[eve] = 13 * 60
                nxt = d + timedelta(days=1)
                if nxt.weekday() <= 4:
                    late[nxt] = 60
        return HolidaySchedule(
            name,
            frozenset(closed),
            {d: m for d, m in early.items() if d not in closed},
            {d: m for d, m in late.items() if d not in closed},
            tz=_NY,
        )
    if name.startswith("country:") or name.startswith("financial:"):
        kind, code = name.split(":", 1)
        try:
            lib = (
                hol.country_holidays(code, years=years)
                if kind == "country"
                else hol.financial_holidays(code, years=years)
            )
        except NotImplementedError:
            raise ValueError(
                f"unknown holidays_calendar {name!r}: the holidays package has no {code!r}"
            ) from None
        return HolidaySchedule(name, frozenset(d for d in lib if d.weekday() <= 4))
    xcode = _xcal_code(name)
    if xcode is None:
        raise ValueError(
            f"unknown holidays_calendar {name!r}; known: 'metals_us', 'fx', 'US'/'NYSE', an "
            "exchange_calendars code such as 'XNYS', 'country:XX' or 'financial:XXXX'"
        )
    return _xcal_schedule(name, xcode, first_year, last_year)


def _xcal_schedule(name: str, code: str, y0: int, y1: int) -> HolidaySchedule:
    cal = _xcal(code)
    lo = max(pd.Timestamp(date(y0, 1, 1)), cal.first_session)
    hi = min(pd.Timestamp(date(y1, 12, 31)), cal.last_session)
    if lo > hi:
        return HolidaySchedule(name)
    sessions = cal.sessions_in_range(lo, hi)
    weekdays = pd.bdate_range(lo, hi)
    closed = frozenset(d.date() for d in weekdays.difference(sessions))
    tz = str(cal.tz)

    def local_minutes(series: pd.Series) -> dict[date, int]:
        out: dict[date, int] = {}
        local = pd.DatetimeIndex(series.dt.tz_convert(tz).array)
        for sess, loc in zip(series.index, local, strict=True):
            day = pd.Timestamp(sess).date()
            out[day] = (loc.normalize().tz_localize(None) - pd.Timestamp(day)).days * _DAY_MIN + (
                loc.hour * 60 + loc.minute
            )
        return out

    ec = cal.early_closes
    ec = ec[(ec >= lo) & (ec <= hi)]
    lo_ = cal.late_opens
    lo_ = lo_[(lo_ >= lo) & (lo_ <= hi)]
    return HolidaySchedule(
        name,
        closed,
        local_minutes(cal.closes[ec]),
        local_minutes(cal.opens[lo_]),
        tz=tz,
    )


@lru_cache(maxsize=256)
def _schedule_in_zone(sch: HolidaySchedule, tz: str) -> tuple[dict[date, int], dict[date, int]]:
    return sch.in_zone(tz)


@lru_cache(maxsize=16)
def _xcal(code: str) -> Any:
    import exchange_calendars as xcals

    with warnings.catch_warnings():
        # the library's own use of a pandas API pandas 3 deprecates; nothing we can change
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(code, start="1990-01-01", end="2035-12-31")


# ---------------------------------------------------------------------- asset classes
_ISO_CCY = frozenset(
    [
        "USD",
        "EUR",
        "JPY",
        "GBP",
        "CHF",
        "AUD",
        "NZD",
        "CAD",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "TRY",
        "ZAR",
        "MXN",
        "SGD",
        "HKD",
        "CNH",
        "CNY",
        "ILS",
        "RUB",
        "INR",
        "KRW",
        "THB",
        "BRL",
        "CLP",
        "COP",
        "IDR",
        "MYR",
        "PHP",
        "TWD",
        "RON",
        "ISK",
    ]
)
_CRYPTO_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "TUSD")
_CRYPTO_BASES = frozenset(
    [
        "BTC",
        "ETH",
        "XRP",
        "LTC",
        "BCH",
        "SOL",
        "ADA",
        "DOGE",
        "DOT",
        "BNB",
        "LINK",
        "XLM",
        "TRX",
        "AVAX",
    ]
)
_METALS = frozenset(["XAU", "XAG", "XPT", "XPD"])
_ENERGY = frozenset(
    [
        "UKOIL",
        "USOIL",
        "WTI",
        "BRENT",
        "XTIUSD",
        "XBRUSD",
        "XNGUSD",
        "NGAS",
        "UKOUSD",
        "USOUSD",
        "NATGAS",
    ]
)
_BRENT = frozenset(["UKOIL", "BRENT", "XBRUSD", "UKOUSD"])
_INDICES = frozenset(
    [
        "SP500",
        "SPX",
        "US500",
        "NASDAQ",
        "NDX",
        "NAS100",
        "USTEC",
        "DJI",
        "US30",
        "DJIA",
        "RUT",
        "US2000",
        "IXIC",
        "GSPC",
        "VIX",
    ]
)


def infer_asset_class(symbol: str, *, daily: bool = False) -> str:
    """Session class of a symbol from its name (used when a universe does not declare one).

    Rules, first match wins (upper-cased symbol):

    1. ends with ``USDT``/``USDC``/``BUSD``/``FDUSD``/``TUSD``, or is a known crypto base
       (``BTC``, ``ETH``, ...) quoted in an ISO currency (``BTCUSD``) -> ``"crypto"``;
    2. starts with ``XAU``/``XAG``/``XPT``/``XPD`` -> ``"metal"``;
    3. a known energy CFD (``UKOIL``, ``USOIL``, ``WTI``, ``BRENT``, ``XTIUSD``, ...) ->
       ``"energy"``;
    4. six letters made of two ISO-4217 currency codes (``EURUSD``) -> ``"fx"``;
    5. starts with ``^`` (Yahoo index ticker, ``^GSPC``) or is a known index name (``SP500``,
       ``NASDAQ``, ``US500``, ``NAS100``, ``DJI``, ...) -> ``"index"``;
    6. anything else -> ``"equity"`` (US stock on XNYS hours). For intraday data this is a
       guess the caller should confirm; ``daily`` is accepted for symmetry and does not change
       the answer.

    Parameters
    ----------
    symbol : str
    daily : bool, optional

    Returns
    -------
    str
        One of :data:`ASSET_CLASSES`.

    Raises
    ------
    ValueError
        Empty symbol.
    """
    s = str(symbol).strip().upper()
    if not s:
        raise ValueError("empty symbol")
    if s.endswith(_CRYPTO_QUOTES) and len(s) > 4:
        return "crypto"
    if any(s.startswith(b) and s[len(b) :] in _ISO_CCY for b in _CRYPTO_BASES):
        return "crypto"
    if s[:3] in _METALS:
        return "metal"
    if s in _ENERGY:
        return "energy"
    if len(s) == 6 and s.isalpha() and s[:3] in _ISO_CCY and s[3:] in _ISO_CCY:
        return "fx"
    if s.startswith("^") or s.lstrip("^") in _INDICES:
        return "index"
    del daily
    return "equity"


def default_trading_hours(asset_class: str, symbol: str | None = None) -> dict[str, Any]:
    """The ``trading_hours`` mapping of an asset class (see the module docstring).

    Parameters
    ----------
    asset_class : str
        One of :data:`ASSET_CLASSES` (case-insensitive; ``"metals"``, ``"commodity"``,
        ``"stock"``, ``"etf"``, ``"cfd_index"`` and ``"forex"`` are accepted aliases).
    symbol : str, optional
        Refines energy: Brent (``UKOIL``...) gets its London-time pause.

    Returns
    -------
    dict
        A fresh mapping accepted by :meth:`SessionCalendar.from_mapping`.

    Raises
    ------
    ValueError
        Unknown asset class.
    """
    ac = _normalise_class(asset_class)
    week_fx = {"week_open": {"day": "SUN", "time": "17:00"}}
    fri = {"week_close": {"day": "FRI", "time": "17:00"}}
    if ac == "crypto":
        return {"timezone": "UTC", "always_open": True}
    if ac == "fx":
        return {"timezone": _NY, **week_fx, **fri, "day_roll": "17:00", "holidays_calendar": "fx"}
    metal = {
        "timezone": _NY,
        "week_open": {"day": "SUN", "time": "18:00"},
        **fri,
        "daily_breaks": [{"start": "17:00", "end": "18:00"}],
        "holidays_calendar": "metals_us",
    }
    if ac == "metal":
        return metal
    if ac == "energy":
        if symbol is not None and symbol.strip().upper() in _BRENT:
            return {
                **metal,
                "timezone": "Europe/London",
                "week_timezone": _NY,
                "daily_breaks": [{"start": "22:00", "end": "01:00"}],
            }
        return metal
    # equity / index: XNYS regular hours
    return {
        "timezone": _NY,
        "sessions": [{"start": "09:30", "end": "16:00"}],
        "week_open": {"day": "MON", "time": "00:00"},
        "week_close": {"day": "SAT", "time": "00:00"},
        "holidays_calendar": "XNYS",
    }


_CLASS_ALIASES = {
    "metals": "metal",
    "commodity": "energy",
    "commodities": "energy",
    "oil": "energy",
    "stock": "equity",
    "stocks": "equity",
    "etf": "equity",
    "indices": "index",
    "cfd_index": "index",
    "forex": "fx",
}


def _normalise_class(asset_class: str) -> str:
    ac = str(asset_class).strip().lower()
    ac = _CLASS_ALIASES.get(ac, ac)
    if ac not in ASSET_CLASSES:
        raise ValueError(f"unknown asset_class {asset_class!r}; known: {list(ASSET_CLASSES)}")
    return ac


def session_class(asset_class: str | None, symbol: str, *, daily: bool = False) -> str:
    """:data:`ASSET_CLASSES` member for a declared ``asset_class`` (which may be a product
    kind such as ``"CFD"``/``"SPOT"``, then the symbol decides) or :func:`infer_asset_class`."""
    if asset_class is not None:
        ac = str(asset_class).strip().lower()
        ac = _CLASS_ALIASES.get(ac, ac)
        if ac in ASSET_CLASSES:
            return ac
    return infer_asset_class(symbol, daily=daily)


def default_calendar(
    symbol: str,
    asset_class: str | None = None,
    *,
    bar_anchor: BarAnchor | None = None,
    daily: bool = False,
) -> SessionCalendar:
    """Session calendar of ``symbol`` from the asset-class defaults.

    Parameters
    ----------
    symbol : str
    asset_class : str, optional
        Declared class (:data:`ASSET_CLASSES` or an alias); ``None`` or a product kind such as
        ``"CFD"`` -> :func:`infer_asset_class`.
    bar_anchor : BarAnchor, optional
        Bar grid (default ``None``: undeclared, ingest infers it from the data).
    daily : bool, optional
        Passed to :func:`infer_asset_class`.

    Returns
    -------
    SessionCalendar
    """
    ac = session_class(asset_class, symbol, daily=daily)
    cal = SessionCalendar.from_mapping(default_trading_hours(ac, symbol), asset_class=ac)
    return cal if bar_anchor is None else replace(cal, bar_anchor=bar_anchor)


# ---------------------------------------------------------------------- calendar
@dataclass(frozen=True)
class SessionCalendar:
    """Weekly trading sessions in a local time zone, with daily breaks, holidays and a bar grid.

    Build it with :meth:`from_mapping` from a universe ``trading_hours`` mapping or with
    :func:`default_calendar`.

    Attributes
    ----------
    timezone : str
        IANA zone of the daily session wall clock (``"America/New_York"``).
    always_open : bool
        24/7 market (crypto): every grid bar is expected; the session fields are ignored.
    week_open, week_close : tuple (weekday, minutes) or None
        Weekday (0 = Monday ... 6 = Sunday) and local minutes after midnight of the weekly open
        and close. Both ``None`` = no weekly closure.
    daily_breaks : tuple of (start_minutes, end_minutes)
        Local daily pauses ``[start, end)``; ``end <= start`` means the pause crosses midnight.
    holidays_calendar : str or None
        :func:`holiday_schedule` name, or ``None``.
    week_timezone : str or None
        Zone of ``week_open``/``week_close`` (``None`` = ``timezone``).
    day_roll : int
        Local minutes at which a trading day starts when there is no daily break (FX: 17:00).
    bar_anchor : BarAnchor or None
        The feed's bar grid; ``None`` = not declared (the UTC epoch grid is used, and ingest
        infers the grid from the data, :func:`infer_bar_anchor`). See :attr:`grid`.
    asset_class : str or None
        Informational (recorded in :meth:`describe`).
    """

    timezone: str = "UTC"
    always_open: bool = False
    week_open: tuple[int, int] | None = None
    week_close: tuple[int, int] | None = None
    daily_breaks: tuple[tuple[int, int], ...] = ()
    holidays_calendar: str | None = None
    week_timezone: str | None = None
    day_roll: int = 0
    bar_anchor: BarAnchor | None = None
    asset_class: str | None = None

    @property
    def grid(self) -> BarAnchor:
        """The bar grid in use: :attr:`bar_anchor`, or the UTC epoch grid when undeclared."""
        return self.bar_anchor if self.bar_anchor is not None else BarAnchor()

    def __post_init__(self) -> None:
        _check_tz(self.timezone)
        if self.week_timezone is not None:
            _check_tz(self.week_timezone)
        if (self.week_open is None) != (self.week_close is None):
            raise ValueError("week_open and week_close must be given together")
        if self.holidays_calendar is not None and not _known(self.holidays_calendar):
            holiday_schedule(self.holidays_calendar, 2020, 2020)  # raises with the known names
        if not 0 <= self.day_roll < _DAY_MIN:
            raise ValueError("day_roll must be within one day")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(
        cls,
        d: Mapping[str, Any],
        *,
        asset_class: str | None = None,
        timezone: str | None = None,
        bar_anchor: BarAnchor | None = None,
    ) -> SessionCalendar:
        """Build from a ``trading_hours`` mapping.

        Two forms are accepted (days ``MON``..``SUN``, times ``"HH:MM"`` local to the zone):

        * repo form: ``{timezone, week_open: {day, time}, week_close: {day, time},
          daily_breaks: [{start, end}, ...], holidays_calendar, week_timezone, day_roll}`` or
          ``{timezone, always_open: true}``;
        * spec 004 form: ``{sessions: [{start, end}, ...], holidays_calendar}`` with the zone in
          the leg (``timezone`` argument). ``sessions`` are the daily trading hours (their
          complement on the 24 h clock becomes ``daily_breaks``; a session may cross midnight);
          the trading week comes from ``asset_class`` (:func:`default_trading_hours`, in its
          own zone) unless ``week_open``/``week_close`` are given; ``holidays_calendar: "US"``
          = XNYS holidays (exchange_calendars).

        Parameters
        ----------
        d : mapping
        asset_class : str, optional
            Session class for the spec form's week (``None``: no weekly closure) and for
            :meth:`describe`.
        timezone : str, optional
            Zone used when ``d`` has none (the spec puts ``timezone`` on the leg).
        bar_anchor : BarAnchor, optional
            Bar grid; ``d["bar_anchor"]`` is used when this is ``None``.

        Raises
        ------
        ValueError
            Unknown zone/day/holiday schedule/asset class, malformed time, overlapping sessions
            or only one of week_open/close.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"trading_hours must be a mapping, got {type(d).__name__}")
        tz = str(d.get("timezone") or timezone or "UTC")
        if bar_anchor is None and d.get("bar_anchor") is not None:
            bar_anchor = BarAnchor.from_mapping(d["bar_anchor"])
        anchor = bar_anchor
        ac = _normalise_class(asset_class) if asset_class is not None else None
        if bool(d.get("always_open", False)):
            return cls(timezone=tz, always_open=True, bar_anchor=anchor, asset_class=ac)

        def weekly(node: Any, key: str) -> tuple[int, int] | None:
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
        week_node_open, week_node_close = d.get("week_open"), d.get("week_close")
        week_tz = d.get("week_timezone")
        if d.get("sessions") is not None:
            if breaks:
                raise ValueError("trading_hours: give either sessions or daily_breaks, not both")
            breaks = _sessions_to_breaks(d["sessions"])
            if week_node_open is None and week_node_close is None and ac is not None:
                dflt = default_trading_hours(ac)
                if not dflt.get("always_open"):
                    week_node_open, week_node_close = dflt["week_open"], dflt["week_close"]
                    week_tz = dflt.get("week_timezone") or dflt["timezone"]
        hol = d.get("holidays_calendar")
        if isinstance(hol, list | tuple):
            hol = "+".join(str(h).strip() for h in hol) if hol else None
        hol_name = None if hol is None or str(hol).strip().lower() in {"", "none"} else str(hol)
        roll = d.get("day_roll")
        return cls(
            timezone=tz,
            always_open=False,
            week_open=weekly(week_node_open, "week_open"),
            week_close=weekly(week_node_close, "week_close"),
            daily_breaks=tuple(sorted(breaks)),
            holidays_calendar=hol_name,
            week_timezone=None if week_tz is None or str(week_tz) == tz else str(week_tz),
            day_roll=0 if roll is None else _parse_hhmm(roll, "trading_hours.day_roll") % _DAY_MIN,
            bar_anchor=anchor,
            asset_class=ac,
        )

    # ------------------------------------------------------------------ sessions
    def _roll(self) -> tuple[int, int]:
        """(local minute at which a trading-day window starts, length of the break before it)."""
        if not self.daily_breaks:
            return self.day_roll, 0
        bs, be = max(self.daily_breaks, key=lambda b: b[1])
        return be, (be - bs) % _DAY_MIN

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
        o, c = self._sessions_us(_us_ts(s), _us_ts(e))
        keep = (c > _us_ts(s)) & (o < _us_ts(e))
        return _from_us(o[keep]), _from_us(c[keep])

    def _sessions_us(self, s_us: int, e_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Sessions (UTC us, merged) covering at least ``[s_us, e_us)`` plus two days each side."""
        tz = self.timezone
        s, e = _from_us(np.array([s_us]))[0], _from_us(np.array([e_us]))[0]
        d0 = s.tz_convert(tz).date() - timedelta(days=3)
        d1 = e.tz_convert(tz).date() + timedelta(days=3)
        roll, brk_len = self._roll()
        closed: frozenset[date] = frozenset()
        early: Mapping[date, int] = {}
        late: Mapping[date, int] = {}
        if self.holidays_calendar is not None:
            sch = holiday_schedule(self.holidays_calendar, d0.year - 1, d1.year + 1)
            closed = sch.closed
            early, late = _schedule_in_zone(sch, tz)

        # trading-day windows in local wall minutes since d0 00:00 (integers, exact)
        ndays = (d1 - d0).days + 1
        pieces: list[tuple[int, int]] = []
        for j in range(-1, ndays):
            lo, hi = j * _DAY_MIN + roll, (j + 1) * _DAY_MIN + roll
            k = (hi - brk_len - 1) // _DAY_MIN  # label: the local date on which it closes
            day = d0 + timedelta(days=k)
            if day in closed:
                continue
            if day in early:
                hi = min(hi, k * _DAY_MIN + early[day])
            if day in late:
                lo = max(lo, k * _DAY_MIN + late[day])
            if hi > lo:
                pieces.append((lo, hi))
        pieces = _subtract(pieces, self._break_intervals(ndays))
        if not pieces:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        base = pd.Timestamp(d0)
        arr = np.asarray(pieces, dtype=np.int64)
        opens = _localize(base + pd.to_timedelta(arr[:, 0], unit="m"), tz).asi8
        closes = _localize(base + pd.to_timedelta(arr[:, 1], unit="m"), tz).asi8
        iv = list(zip(opens.tolist(), closes.tolist(), strict=True))
        if self.week_open is not None and self.week_close is not None:
            iv = _intersect(iv, self._week_intervals_us(d0, ndays))
        iv = _merge(iv)
        if not iv:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        a = np.asarray(iv, dtype=np.int64)
        return a[:, 0], a[:, 1]

    def _break_intervals(self, ndays: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for k in range(-2, ndays + 1):
            for bs, be in self.daily_breaks:
                lo = k * _DAY_MIN + bs
                hi = k * _DAY_MIN + be + (_DAY_MIN if be <= bs else 0)
                out.append((lo, hi))
        return sorted(out)

    def _week_intervals_us(self, d0: date, ndays: int) -> list[tuple[int, int]]:
        assert self.week_open is not None
        assert self.week_close is not None
        (od, ot), (cd, ct) = self.week_open, self.week_close
        span = (cd - od) % 7
        if span == 0 and ct <= ot:
            span = 7
        lo: list[int] = []
        hi: list[int] = []
        for k in range(-8, ndays + 1):
            if (d0 + timedelta(days=k)).weekday() == od:
                lo.append(k * _DAY_MIN + ot)
                hi.append((k + span) * _DAY_MIN + ct)
        if not lo:
            return []
        wtz = self.week_timezone or self.timezone
        base = pd.Timestamp(d0)
        o = _localize(base + pd.to_timedelta(np.asarray(lo), unit="m"), wtz).asi8
        c = _localize(base + pd.to_timedelta(np.asarray(hi), unit="m"), wtz).asi8
        return list(zip(o.tolist(), c.tolist(), strict=True))

    def _tf_sessions(self, s_us: int, e_us: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Sessions with pauses shorter than one bar (``step`` us) merged away."""
        o, c = self._sessions_us(s_us, e_us)
        if o.size <= 1:
            return o, c
        gap = o[1:] - c[:-1]
        cut = np.flatnonzero(gap >= step) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [o.size])) - 1
        return o[starts], c[ends]

    # ------------------------------------------------------------------ bars
    def expected_bar_opens(self, start: Any, end: Any, timeframe: str) -> pd.DatetimeIndex:
        """UTC open times in ``[start, end)`` of the bars the market is expected to print.

        Parameters
        ----------
        start, end : timestamp-like
            UTC bounds; ``start`` inclusive, ``end`` exclusive (naive values are read as UTC).
        timeframe : str
            Bar length (:func:`timeframe_to_timedelta`).

        Returns
        -------
        pandas.DatetimeIndex
            Sorted bar-open times, tz UTC, unit ``us``: the opens on :attr:`grid`
            whose bar ``[o, o + tf)`` overlaps a session (sessions closer than one bar merged;
            see the module docstring).

        Raises
        ------
        ValueError
            Bad timeframe.
        """
        grid = self.grid.grid(start, end, timeframe)
        if self.always_open or len(grid) == 0:
            return grid
        g = grid.asi8
        step = _us(timeframe_to_timedelta(timeframe))
        return _from_us(g[self._session_pos(g, step) >= 0])

    def on_grid(self, ts_index: Any, timeframe: str) -> np.ndarray:
        """Whether each time of ``ts_index`` (shape (n,)) is a bar open on :attr:`grid`
        (bool array, shape (n,))."""
        return self.grid.on_grid(ts_index, timeframe)

    def is_tradable(self, ts_index: Any, timeframe: str) -> np.ndarray:
        """Whether each bar ``[t, t + timeframe)`` is an expected bar's interval (overlaps a
        session, see :meth:`expected_bar_opens`; grid membership is not checked).

        Parameters
        ----------
        ts_index : DatetimeIndex or array-like of timestamps, shape (n,)
            Bar-open times (naive values are read as UTC); need not be sorted.
        timeframe : str
            Bar length.

        Returns
        -------
        numpy.ndarray of bool, shape (n,)
        """
        return self.session_id(ts_index, timeframe) >= 0

    def session_id(self, ts_index: Any, timeframe: str) -> np.ndarray:
        """Identifier of the (timeframe-merged) session each bar overlaps, ``-1`` for none.

        The id is the session's UTC open time in microseconds since the epoch (``0`` for an
        always-open calendar), so two bars are in the same session -- no closure, break or
        holiday of at least one bar between them -- iff their ids are equal and non-negative.

        Parameters
        ----------
        ts_index : DatetimeIndex or array-like of timestamps, shape (n,)
        timeframe : str

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
        """
        step = _us(timeframe_to_timedelta(timeframe))
        t = _to_us(ts_index)
        if t.size == 0:
            return np.empty(0, dtype=np.int64)
        if self.always_open:
            return np.zeros(t.size, dtype=np.int64)
        return self._session_pos(t, step)

    def _session_pos(self, t: np.ndarray, step: int) -> np.ndarray:
        day = 24 * 60 * _MIN
        o, c = self._tf_sessions(int(t.min()) - day, int(t.max()) + step + day, step)
        out = np.full(t.size, -1, dtype=np.int64)
        if o.size == 0:
            return out
        # the last session opening before the bar closes; overlap iff it closes after the open
        j = np.searchsorted(o, t + step, side="left") - 1
        jj = np.clip(j, 0, None)
        inside = (j >= 0) & (c[jj] > t)
        out[inside] = o[jj[inside]]
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (for ``__meta.json``)."""
        out: dict[str, Any] = {"timezone": self.timezone}
        if self.asset_class is not None:
            out["asset_class"] = self.asset_class
        if self.bar_anchor is not None:
            out["bar_anchor"] = self.bar_anchor.describe()
        if self.always_open:
            out["always_open"] = True
            return out
        inv = {v: k for k, v in _DAYS.items()}
        out["always_open"] = False
        if self.week_open is not None and self.week_close is not None:
            out["week_open"] = {"day": inv[self.week_open[0]], "time": _fmt_hhmm(self.week_open[1])}
            out["week_close"] = {
                "day": inv[self.week_close[0]],
                "time": _fmt_hhmm(self.week_close[1]),
            }
            if self.week_timezone is not None:
                out["week_timezone"] = self.week_timezone
        out["daily_breaks"] = [
            {"start": _fmt_hhmm(a), "end": _fmt_hhmm(b)} for a, b in self.daily_breaks
        ]
        if self.day_roll:
            out["day_roll"] = _fmt_hhmm(self.day_roll)
        out["holidays_calendar"] = self.holidays_calendar
        return out


def _sessions_to_breaks(sessions: Any) -> list[tuple[int, int]]:
    """Daily sessions ``[{start, end}]`` -> their complement on the 24 h clock as breaks."""
    if not isinstance(sessions, Sequence) or isinstance(sessions, str) or not sessions:
        raise ValueError("trading_hours.sessions must be a non-empty list of {start, end}")
    iv: list[tuple[int, int]] = []
    for i, sess in enumerate(sessions):
        if not isinstance(sess, Mapping) or "start" not in sess or "end" not in sess:
            raise ValueError(f"trading_hours.sessions[{i}] must be {{start, end}}")
        a = _parse_hhmm(sess["start"], f"sessions[{i}].start")
        b = _parse_hhmm(sess["end"], f"sessions[{i}].end")
        if a % _DAY_MIN == b % _DAY_MIN:
            if len(sessions) > 1:
                raise ValueError(f"trading_hours.sessions[{i}] spans 24 h next to other sessions")
            return []
        a %= _DAY_MIN
        b = b if b == _DAY_MIN else b % _DAY_MIN
        iv.extend([(a, b)] if b > a else [(a, _DAY_MIN), (0, b)])
    merged = _merge(iv)
    if sum(h - lo for lo, h in merged) != sum(h - lo for lo, h in iv):
        raise ValueError("trading_hours.sessions overlap")
    gaps = _subtract([(0, _DAY_MIN)], merged)
    if not gaps:
        return []
    # a gap at the end of the day and one at its start are one break crossing midnight
    if len(gaps) > 1 and gaps[0][0] == 0 and gaps[-1][1] == _DAY_MIN:
        first, last = gaps[0], gaps[-1]
        gaps = [*gaps[1:-1], (last[0], first[1])]
    return [(lo % _DAY_MIN, hi % _DAY_MIN) for lo, hi in gaps]


# ---------------------------------------------------------------------- helpers
def _utc(x: Any) -> pd.Timestamp:
    ts = pd.Timestamp(x)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _to_us(ts: Any) -> np.ndarray:
    idx = pd.DatetimeIndex(ts)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.as_unit(_UNIT).asi8


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

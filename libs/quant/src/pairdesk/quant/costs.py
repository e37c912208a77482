"""Instrument specs, the cost model and β-neutral sizing, spec 004 §コストテーブル / ユニバース仕様 v1.

The same numbers drive the backtest (:mod:`pairdesk.quant.backtest`) and live execution, so every
rule lives here once. Prices are in the quote currency (USD), notionals are
``lots × contract_size × price`` USD, and all rates are in **basis points** (1 bp = 1e-4).

Cost application order (spec: 1) 価格決定（終値基準） 2) 名目スプレッド適用 3) スリッページ
4) コミッション 5) スワップ（1日1回）):

1. **Reference price** ``ref = round_to_tick(close)`` (nearest tick).
2. **Half spread** ``h = spread_bps / 2 · 1e-4``: ``spread_bps`` is the full quoted spread, half of
   it is paid on every fill.
3. **Slippage** ``s = slippage_bps · 1e-4 · mult`` per side, ``mult`` the time-of-day multiplier of
   the fill time (UTC minute of day; 1.0 outside every window).
   A buy fills at ``ceil_tick(ref · (1 + h + s))``, a sell at ``floor_tick(ref · (1 − h − s))``:
   one rounding, always against the trader.
4. **Commission** ``|lots| · contract_size · fill · commission_bps · 1e-4`` per side (entry and exit).
5. **Swap** once per rollover: each rollover instant (``swap_time_utc``, default 21:00 UTC) that
   falls in ``(entry fill time, exit fill time]`` is charged on the entry notional
   ``|lots| · contract_size · entry fill`` at ``swap_long_bps_day`` (long legs) or
   ``swap_short_bps_day`` (short legs), times the day weight: 1 on Monday–Friday, 3 on the
   rollover weekday (default Wednesday, FX triple swap), 0 on Saturday and Sunday (the weekend is
   paid by the triple day). **Sign convention:** a negative bps rate is a cost the trader pays, a
   positive one a credit received (``long_bps_day: -4.0`` pays 4 bp a day). A fill at the close of
   a bar happens an instant after the bar boundary, hence the half-open interval: a position
   opened at exactly 21:00 does not pay that day's swap, one closed at exactly 21:00 does.

Itemisation per fill: ``spread = |lots| · contract_size · ref · h`` (exact, unrounded) and
``slippage = |lots| · contract_size · |fill − ref| − spread``, so the slippage item also carries the
adverse tick-rounding residual and ``spread + slippage`` is exactly the execution shortfall
against the reference price.

β-neutral sizing (spec §サイズ決定と丸め) is :func:`size_pair`; its rounding rules are in its
docstring. The numba kernels ``_fill_price_nb`` and ``_size_pair_nb`` are the single
implementation used both by the public wrappers and by the backtest kernel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit
from pairdesk.quant.typing import FloatArray

__all__ = [
    "WEEKDAYS",
    "CostModel",
    "LegCosts",
    "LegSpec",
    "fill_price",
    "legs_from_universe",
    "round_to_tick",
    "size_pair",
]


#: Weekday names in ``cost_table.yaml`` (``rollover_day``), Monday = 0 as in :mod:`datetime`.
WEEKDAYS: tuple[str, ...] = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

_NS_PER_MINUTE = 60_000_000_000
_NS_PER_DAY = 86_400_000_000_000
_MINUTES_PER_DAY = 1440
# Tolerance, in units of one tick / one lot step, under which a value counts as already on the grid
# (absorbs float error such as 2000.0000000000002 / 0.01 without ever moving a price by a tick).
_GRID_EPS = 1e-6


# ----------------------------------------------------------------------------------------------
# numba kernels (shared with pairdesk.quant.backtest)
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _grid_value_nb(k: float, step: float) -> float:
    """``k · step`` computed as ``k / (1/step)`` when ``1/step`` is an integer (exact decimals)."""
    inv = np.floor(1.0 / step + 0.5)
    if inv >= 1.0 and abs(inv * step - 1.0) < 1e-12:
        return k / inv
    return k * step


@njit(cache=True)
def _round_grid_nb(x: float, step: float, mode: int) -> float:
    """Index of ``x`` on the grid ``k · step``: mode 0 nearest (half up), +1 ceil, −1 floor."""
    u = x / step
    k = np.floor(u + 0.5)
    if mode == 0 or abs(u - k) < _GRID_EPS:
        return k
    if mode > 0:
        return np.ceil(u)
    return np.floor(u)


@njit(cache=True)
def _round_tick_nb(price: float, tick: float, mode: int) -> float:
    """Round ``price`` to the tick grid: mode 0 nearest, +1 up (buy), −1 down (sell)."""
    return _grid_value_nb(_round_grid_nb(price, tick, mode), tick)


@njit(cache=True)
def _fill_price_nb(ref: float, is_buy: bool, half_spread: float, slip: float, tick: float) -> float:
    """Fill price from the tick-rounded reference price; ``half_spread``/``slip`` are fractions."""
    if is_buy:
        return _round_tick_nb(ref * (1.0 + half_spread + slip), tick, 1)
    return _round_tick_nb(ref * (1.0 - half_spread - slip), tick, -1)


@njit(cache=True)
def _lots_nb(j: float, min_lot: float, lot_step: float) -> float:
    """Lot size of grid index ``j`` on ``{min_lot + j · lot_step}``, with clean decimals."""
    m = min_lot / lot_step
    mr = np.floor(m + 0.5)
    if abs(m - mr) < _GRID_EPS:
        return _grid_value_nb(mr + j, lot_step)
    return min_lot + j * lot_step


@njit(cache=True)
def _lot_index_nb(lots: float, min_lot: float, lot_step: float, mode: int) -> float:
    """Grid index (≥ 0) of ``lots`` on ``{min_lot + j · lot_step}``: 0 nearest, +1 ceil."""
    j = _round_grid_nb(lots - min_lot, lot_step, mode)
    return max(j, 0.0)


@njit(cache=True)
def _hedge_lots_nb(
    j_a: float,
    abs_beta: float,
    unit_a: float,
    unit_b: float,
    min_lot_a: float,
    step_a: float,
    min_lot_b: float,
    step_b: float,
    jmin_b: float,
) -> tuple[float, float]:
    """Grid index of leg B hedging leg A at index ``j_a``, and the relative ratio error."""
    lots_a = _lots_nb(j_a, min_lot_a, step_a)
    ideal_b = abs_beta * lots_a * unit_a / unit_b
    j_b = max(_lot_index_nb(ideal_b, min_lot_b, step_b, 0), jmin_b)
    lots_b = _lots_nb(j_b, min_lot_b, step_b)
    err = abs(lots_b * unit_b / (lots_a * unit_a) / abs_beta - 1.0)
    return j_b, err


@njit(cache=True)
def _size_pair_nb(
    capital_notional_a: float,
    beta: float,
    price_a: float,
    price_b: float,
    tick_a: float,
    cs_a: float,
    min_lot_a: float,
    step_a: float,
    tick_b: float,
    cs_b: float,
    min_lot_b: float,
    step_b: float,
    min_notional: float,
    ratio_tol: float,
    max_upscale: float,
    rate_a: float,
    rate_b: float,
) -> tuple[float, float]:
    """Kernel of :func:`size_pair`; returns ``(lots_a, lots_b)`` (both > 0), inputs pre-validated.
    ``rate_*``: quote-to-account rates (account units per unit of the leg's quote currency)."""
    pa = _round_tick_nb(price_a, tick_a, 0)
    pb = _round_tick_nb(price_b, tick_b, 0)
    ab = abs(beta)
    unit_a = cs_a * pa * rate_a  # USD notional of one lot
    unit_b = cs_b * pb * rate_b
    n_a = capital_notional_a
    n_b = ab * capital_notional_a
    # proportional scale-up until both legs meet min lot and min notional
    k = 1.0
    k = max(k, min_lot_a * unit_a / n_a)
    k = max(k, min_lot_b * unit_b / n_b)
    k = max(k, min_notional / n_a)
    k = max(k, min_notional / n_b)
    # smallest admissible grid index per leg: min lot and min notional after rounding
    jmin_a = _lot_index_nb(min_notional / unit_a, min_lot_a, step_a, 1)
    jmin_b = _lot_index_nb(min_notional / unit_b, min_lot_b, step_b, 1)
    j_a = max(_lot_index_nb(k * n_a / unit_a, min_lot_a, step_a, 0), jmin_a)
    j_b, err = _hedge_lots_nb(j_a, ab, unit_a, unit_b, min_lot_a, step_a, min_lot_b, step_b, jmin_b)
    if err > ratio_tol:
        # re-adjust: smallest upward step of leg A (re-deriving B) that brings the rounded ratio
        # within tolerance, never beyond max_upscale × the scaled target notional of A
        j_cap = _lot_index_nb(max_upscale * k * n_a / unit_a, min_lot_a, step_a, -1)
        j = j_a + 1.0
        while j <= j_cap:
            jb, e = _hedge_lots_nb(
                j, ab, unit_a, unit_b, min_lot_a, step_a, min_lot_b, step_b, jmin_b
            )
            if e <= ratio_tol:
                j_a = j
                j_b = jb
                break
            j += 1.0
    return _lots_nb(j_a, min_lot_a, step_a), _lots_nb(j_b, min_lot_b, step_b)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def round_to_tick(price: float, tick: float) -> float:
    """Round a price to the nearest multiple of the tick size (half up).

    Parameters
    ----------
    price : float
        Price in quote currency.
    tick : float
        Tick size (``universe.yaml`` ``tick_size``), > 0.

    Returns
    -------
    float
        ``round(price / tick) · tick``, computed as ``k / (1/tick)`` when ``1/tick`` is an integer
        so that e.g. ``round_to_tick(23.4504, 0.001) == 23.45`` exactly.

    Raises
    ------
    ValueError
        If ``tick`` is not a positive finite number or ``price`` is not finite.

    Notes
    -----
    Spec 004 §サイズ決定と丸め: 丸め順序は 価格→ティック.
    """
    if not (math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick must be a positive finite number, got {tick!r}")
    if not math.isfinite(price):
        raise ValueError(f"price must be finite, got {price!r}")
    return float(_round_tick_nb(float(price), float(tick), 0))


@dataclass(frozen=True)
class LegSpec:
    """Order-unit specification of one leg (spec 004 §コストテーブル / ユニバース仕様 v1).

    Parameters
    ----------
    symbol : str
        Canonical symbol, e.g. ``"XAUUSD"``.
    tick_size : float
        Price grid in quote currency (USD), > 0.
    contract_size : float
        Units of the underlying per lot; notional USD = ``lots × contract_size × price``.
    min_lot : float
        Smallest tradable lot size, > 0.
    lot_step : float
        Lot increment above ``min_lot``; tradable sizes are ``min_lot + j · lot_step``.

    Raises
    ------
    ValueError
        If a size is not positive and finite or the symbol is empty.
    """

    symbol: str
    tick_size: float
    contract_size: float
    min_lot: float
    lot_step: float

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol must be a non-empty string")
        for name in ("tick_size", "contract_size", "min_lot", "lot_step"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(
                    f"{self.symbol}: {name} must be a positive finite number, got {v!r}"
                )

    @classmethod
    def from_mapping(cls, leg: Mapping[str, Any]) -> LegSpec:
        """Build from a ``universe.yaml`` ``leg_A``/``leg_B`` mapping (``canonical_symbol`` etc.).

        Raises
        ------
        ValueError
            If a required key is missing or a value is invalid.
        """
        try:
            return cls(
                symbol=str(leg["canonical_symbol"]),
                tick_size=float(leg["tick_size"]),
                contract_size=float(leg["contract_size"]),
                min_lot=float(leg["min_lot"]),
                lot_step=float(leg["lot_step"]),
            )
        except KeyError as exc:
            raise ValueError(f"universe leg is missing key {exc.args[0]!r}") from exc


def legs_from_universe(universe: Mapping[str, Any], pair_id: str) -> tuple[LegSpec, LegSpec, float]:
    """Legs and ``min_notional_usd`` of one pair of a parsed ``config/universe.yaml``.

    Parameters
    ----------
    universe : mapping
        The parsed YAML (``{"pairs": [...]}``).
    pair_id : str
        E.g. ``"XAUUSD_XAGUSD"``.

    Returns
    -------
    (LegSpec, LegSpec, float)
        Leg A, leg B and the per-leg minimum notional in USD (0.0 when not configured).

    Raises
    ------
    ValueError
        If the pair is not in the universe.
    """
    for pair in universe.get("pairs", []):
        if pair.get("pair_id") == pair_id:
            min_notional = float(pair.get("constraints", {}).get("min_notional_usd", 0.0))
            return (
                LegSpec.from_mapping(pair["leg_A"]),
                LegSpec.from_mapping(pair["leg_B"]),
                min_notional,
            )
    raise ValueError(f"pair {pair_id!r} not found in universe")


@dataclass(frozen=True)
class LegCosts:
    """Cost rates of one symbol, all in basis points (spec 004 §コストテーブル, cost_table.yaml).

    Parameters
    ----------
    spread_bps : float
        Full quoted spread; half of it is paid on each fill. ≥ 0.
    slippage_bps : float
        Slippage per side (each fill), before the time-of-day multiplier. ≥ 0.
    commission_bps : float
        Commission per side on the fill notional. ≥ 0.
    swap_long_bps_day : float
        Daily swap of a long position on its entry notional; negative = cost, positive = credit.
    swap_short_bps_day : float
        Daily swap of a short position; same sign convention.

    Raises
    ------
    ValueError
        If a rate is not finite or spread/slippage/commission is negative.
    """

    spread_bps: float
    slippage_bps: float
    commission_bps: float
    swap_long_bps_day: float = 0.0
    swap_short_bps_day: float = 0.0

    def __post_init__(self) -> None:
        for name in ("spread_bps", "slippage_bps", "commission_bps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("swap_long_bps_day", "swap_short_bps_day"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")


def _parse_hhmm(text: str) -> int:
    """``"21:00"`` → minutes after midnight; raises ValueError on a malformed time."""
    try:
        hh, mm = str(text).strip().split(":")
        h, m = int(hh), int(mm)
    except ValueError as exc:
        raise ValueError(f"bad time {text!r}, expected HH:MM") from exc
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"bad time {text!r}, expected HH:MM within 00:00..23:59")
    return h * 60 + m


_LEG_KEYS = frozenset({"commission_bps", "slippage_bps", "spread_bps", "swap"})
_SWAP_KEYS = frozenset({"rollover_day", "time_utc", "long_bps_day", "short_bps_day"})


@dataclass(frozen=True)
class CostModel:
    """Per-symbol costs plus the swap calendar and time-of-day slippage multipliers.

    Parameters
    ----------
    legs : mapping of str to LegCosts
        Costs per canonical symbol.
    rollover_weekday : int
        Weekday (Monday = 0) whose rollover is charged three days (triple swap). Default 2 (WED).
    swap_minute_utc : int
        Rollover instant as minutes after 00:00 UTC. Default 1260 (21:00 UTC).
    tod_multipliers : tuple of (start_minute, end_minute, mult)
        Slippage multipliers on UTC minute-of-day windows ``[start, end)``; ``start > end`` wraps
        midnight (``(1320, 60, 1.5)`` is 22:00–01:00). Windows must not overlap; outside every
        window the multiplier is 1.0.

    Raises
    ------
    ValueError
        On overlapping or empty windows, non-positive multipliers, or out-of-range times.

    Notes
    -----
    Source: spec 004 §コストテーブル / ユニバース仕様 v1 (cost_table.yaml: defaults, overrides,
    swap rollover_day/time_utc, time_of_day_multipliers). Rollovers on Saturday and Sunday
    (UTC weekday of the rollover instant) are not charged; the rollover weekday counts 3.
    """

    legs: Mapping[str, LegCosts] = field(default_factory=dict)
    rollover_weekday: int = 2
    swap_minute_utc: int = 21 * 60
    tod_multipliers: tuple[tuple[int, int, float], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.rollover_weekday <= 6:
            raise ValueError(
                f"rollover_weekday must be 0..6 (MON..SUN), got {self.rollover_weekday}"
            )
        if self.rollover_weekday >= 5:
            raise ValueError(
                "rollover_weekday must be a weekday (MON..FRI): weekend rollovers are free"
            )
        if not 0 <= self.swap_minute_utc < _MINUTES_PER_DAY:
            raise ValueError(f"swap_minute_utc must be 0..1439, got {self.swap_minute_utc}")
        self._multiplier_table()  # validates the windows

    @classmethod
    def from_mapping(cls, cost_table: Mapping[str, Any], symbols: Iterable[str]) -> CostModel:
        """Build from a parsed ``config/cost_table.yaml`` for the given symbols.

        Each symbol's costs are ``defaults`` updated by ``overrides[symbol]`` (the ``swap``
        sub-mapping is merged key by key). Missing swap rates default to 0.

        Parameters
        ----------
        cost_table : mapping
            Keys ``defaults``, ``overrides`` (optional), ``time_of_day_multipliers`` (optional,
            ``{"HH:MM-HH:MM": mult}``).
        symbols : iterable of str
            Canonical symbols to include.

        Raises
        ------
        ValueError
            On unknown keys, bad times/weekday, or missing spread/slippage/commission.
        """
        defaults = dict(cost_table.get("defaults", {}))
        overrides = dict(cost_table.get("overrides", {}) or {})
        for scope, block in [("defaults", defaults), *overrides.items()]:
            unknown = set(block) - _LEG_KEYS
            if unknown:
                raise ValueError(f"cost_table {scope}: unknown keys {sorted(unknown)}")
            unknown_swap = set(block.get("swap", {}) or {}) - _SWAP_KEYS
            if unknown_swap:
                raise ValueError(f"cost_table {scope}.swap: unknown keys {sorted(unknown_swap)}")
        dswap = dict(defaults.get("swap", {}) or {})
        day = str(dswap.get("rollover_day", "WED")).upper()
        if day not in WEEKDAYS:
            raise ValueError(f"rollover_day must be one of {WEEKDAYS}, got {day!r}")
        legs: dict[str, LegCosts] = {}
        for sym in symbols:
            merged = {k: v for k, v in defaults.items() if k != "swap"}
            ov = dict(overrides.get(sym, {}) or {})
            merged.update({k: v for k, v in ov.items() if k != "swap"})
            ov_swap = dict(ov.get("swap", {}) or {})
            if "rollover_day" in ov_swap or "time_utc" in ov_swap:
                raise ValueError(f"{sym}: rollover_day/time_utc can only be set in defaults.swap")
            swap = {**dswap, **ov_swap}
            try:
                legs[sym] = LegCosts(
                    spread_bps=float(merged["spread_bps"]),
                    slippage_bps=float(merged["slippage_bps"]),
                    commission_bps=float(merged["commission_bps"]),
                    swap_long_bps_day=float(swap.get("long_bps_day", 0.0)),
                    swap_short_bps_day=float(swap.get("short_bps_day", 0.0)),
                )
            except KeyError as exc:
                raise ValueError(f"{sym}: cost_table has no {exc.args[0]!r}") from exc
        windows: list[tuple[int, int, float]] = []
        for key, mult in (cost_table.get("time_of_day_multipliers", {}) or {}).items():
            try:
                start, end = str(key).split("-")
            except ValueError as exc:
                raise ValueError(f"bad time_of_day window {key!r}, expected HH:MM-HH:MM") from exc
            windows.append((_parse_hhmm(start), _parse_hhmm(end), float(mult)))
        return cls(
            legs=legs,
            rollover_weekday=WEEKDAYS.index(day),
            swap_minute_utc=_parse_hhmm(dswap.get("time_utc", "21:00")),
            tod_multipliers=tuple(windows),
        )

    def leg(self, symbol: str) -> LegCosts:
        """Costs of one symbol; raises ValueError if the symbol is not in the model."""
        try:
            return self.legs[symbol]
        except KeyError as exc:
            raise ValueError(f"no costs for symbol {symbol!r}") from exc

    def _multiplier_table(self) -> FloatArray:
        """Slippage multiplier per UTC minute of day, shape (1440,)."""
        table = np.ones(_MINUTES_PER_DAY)
        covered = np.zeros(_MINUTES_PER_DAY, dtype=np.bool_)
        for start, end, mult in self.tod_multipliers:
            if not (0 <= start < _MINUTES_PER_DAY and 0 <= end < _MINUTES_PER_DAY):
                raise ValueError(f"time-of-day window ({start}, {end}) out of 0..1439 minutes")
            if start == end:
                raise ValueError(f"time-of-day window ({start}, {end}) is empty")
            if not (math.isfinite(mult) and mult > 0):
                raise ValueError(f"time-of-day multiplier must be > 0, got {mult!r}")
            minutes = (
                np.arange(start, end)
                if start < end
                else np.r_[np.arange(start, _MINUTES_PER_DAY), np.arange(0, end)]
            )
            if covered[minutes].any():
                raise ValueError("time-of-day windows overlap")
            covered[minutes] = True
            table[minutes] = mult
        return table

    def slippage_multiplier(self, ts_ns: npt.ArrayLike) -> FloatArray:
        """Time-of-day slippage multiplier at fill times.

        Parameters
        ----------
        ts_ns : array_like of int64, shape (n,)
            Fill instants, ns since the Unix epoch (UTC). The backtest passes bar close times.

        Returns
        -------
        ndarray of float64, shape (n,)
            The multiplier of the window containing the UTC minute of each instant, else 1.0.
        """
        t = np.asarray(ts_ns, dtype=np.int64)
        minute = (t // _NS_PER_MINUTE) % _MINUTES_PER_DAY
        return self._multiplier_table()[minute]

    def swap_day_weights(self) -> FloatArray:
        """Swap weight per weekday of the rollover instant, shape (7,), Monday first.

        1 on weekdays, 3 on ``rollover_weekday``, 0 on Saturday and Sunday.
        """
        w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
        w[self.rollover_weekday] = 3.0
        return w

    def swap_cumulative(self, ts_ns: npt.ArrayLike) -> FloatArray:
        """Cumulative swap-day weight of all rollover instants ``<= ts``.

        ``swap_cumulative(t1) − swap_cumulative(t0)`` is the number of swap days charged to a
        position held over ``(t0, t1]`` (a Wednesday rollover counts 3, weekend rollovers 0).

        Parameters
        ----------
        ts_ns : array_like of int64, shape (n,)
            Instants, ns since the Unix epoch (UTC).

        Returns
        -------
        ndarray of float64, shape (n,)
            Cumulative weights relative to an arbitrary fixed origin (only differences matter).
        """
        t = np.asarray(ts_ns, dtype=np.int64)
        # rollover d happens at d · DAY + swap_minute (day d counted from 1970-01-01, a Thursday)
        last = (t - self.swap_minute_utc * _NS_PER_MINUTE) // _NS_PER_DAY
        w = self.swap_day_weights()
        # weekday of day d is (d + 3) % 7; prefix[r] = Σ_{k=0..r} w[(k+3) % 7]
        prefix = np.cumsum(w[(np.arange(7) + 3) % 7])
        weeks, rem = np.divmod(last, 7)
        return weeks.astype(np.float64) * float(w.sum()) + prefix[rem]


def fill_price(
    close: float,
    side: int,
    leg: LegSpec,
    costs: LegCosts,
    multiplier: float = 1.0,
) -> float:
    """Fill price of one order at a bar close, after spread and slippage.

    Parameters
    ----------
    close : float
        Bar close (rounded to the nearest tick first, the reference price).
    side : int
        +1 buy, −1 sell.
    leg : LegSpec
        Tick size of the symbol.
    costs : LegCosts
        Spread and slippage rates (bps).
    multiplier : float
        Time-of-day slippage multiplier of the fill time (:meth:`CostModel.slippage_multiplier`).

    Returns
    -------
    float
        Buy: ``ceil_tick(ref · (1 + spread/2 + slippage · mult))``; sell:
        ``floor_tick(ref · (1 − spread/2 − slippage · mult))`` (rates as fractions).

    Raises
    ------
    ValueError
        If ``side`` is not ±1, ``close`` not positive or ``multiplier`` not positive.
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (buy) or -1 (sell), got {side!r}")
    if not (math.isfinite(close) and close > 0):
        raise ValueError(f"close must be a positive finite price, got {close!r}")
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"multiplier must be > 0, got {multiplier!r}")
    ref = _round_tick_nb(float(close), leg.tick_size, 0)
    return float(
        _fill_price_nb(
            ref,
            side == 1,
            costs.spread_bps * 0.5e-4,
            costs.slippage_bps * 1e-4 * multiplier,
            leg.tick_size,
        )
    )


def size_pair(
    capital_notional_a: float,
    beta: float,
    price_a: float,
    price_b: float,
    leg_a: LegSpec,
    leg_b: LegSpec,
    min_notional: float = 0.0,
    *,
    ratio_tol: float = 0.01,
    max_upscale: float = 2.0,
) -> tuple[float, float]:
    """β-neutral lot sizes of a pair trade (spec 004 §サイズ決定と丸め（β中立）).

    Target notionals are ``notional_A : notional_B = 1 : |β|`` (β is the log-price elasticity of
    A on B, so this ratio hedges the spread ``ln A − β ln B``), with ``notional_A`` =
    ``capital_notional_a``.

    Steps, in the spec's order:

    1. Prices to the nearest tick.
    2. Proportional scale-up ``k = max(1, min_lot_A·unit_A/N_A, min_lot_B·unit_B/N_B,
       min_notional/N_A, min_notional/N_B)`` so both legs meet the minimum lot and the minimum
       notional (``unit = contract_size · price``, ``N`` the target notionals).
    3. Lots of A to the nearest admissible size ``min_lot + j · lot_step`` (half up), at least the
       smallest size whose notional is ``>= min_notional``.
    4. Lots of B to the nearest admissible size of ``|β| · notional_A(rounded) / unit_B`` (so B
       hedges the A actually traded), with the same minimums.
    5. Ratio re-adjustment: if ``|(notional_B/notional_A)/|β| − 1| > ratio_tol``, leg A is stepped
       up one ``lot_step`` at a time (B re-derived as in 4) until the ratio is within tolerance;
       the search stops at ``max_upscale ×`` the scaled target of A, and if no size there meets
       the tolerance the step-3/4 sizes are kept ("where the lot step allows").

    Parameters
    ----------
    capital_notional_a : float
        Target USD notional of leg A, > 0.
    beta : float
        Hedge ratio (elasticity); only ``|β|`` matters here, must be non-zero and finite.
    price_a, price_b : float
        Reference prices (quote currency), > 0.
    leg_a, leg_b : LegSpec
        Order units of the legs.
    min_notional : float
        Minimum USD notional of **each** leg (``universe.yaml`` ``min_notional_usd``). ≥ 0.
    ratio_tol : float
        Relative tolerance of the rounded notional ratio, default 0.01 (spec: ±1%).
    max_upscale : float
        Largest factor by which step 5 may enlarge leg A, default 2.0.

    Returns
    -------
    (float, float)
        ``(lots_a, lots_b)``, both positive (unsigned; the caller applies the trade direction).

    Raises
    ------
    ValueError
        On non-finite or non-positive inputs, ``beta == 0``, or ``max_upscale < 1``.
    """
    for name, v in (
        ("capital_notional_a", capital_notional_a),
        ("price_a", price_a),
        ("price_b", price_b),
    ):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if not (math.isfinite(beta) and beta != 0.0):
        raise ValueError(f"beta must be finite and non-zero, got {beta!r}")
    if not (math.isfinite(min_notional) and min_notional >= 0):
        raise ValueError(f"min_notional must be >= 0, got {min_notional!r}")
    if not (ratio_tol >= 0 and max_upscale >= 1):
        raise ValueError("ratio_tol must be >= 0 and max_upscale >= 1")
    la, lb = _size_pair_nb(
        float(capital_notional_a),
        float(beta),
        float(price_a),
        float(price_b),
        leg_a.tick_size,
        leg_a.contract_size,
        leg_a.min_lot,
        leg_a.lot_step,
        leg_b.tick_size,
        leg_b.contract_size,
        leg_b.min_lot,
        leg_b.lot_step,
        float(min_notional),
        float(ratio_tol),
        float(max_upscale),
        1.0,
        1.0,
    )
    return float(la), float(lb)

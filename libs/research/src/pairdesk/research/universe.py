"""Universe loading: pairs, legs, trading hours and constraints (spec 004 §コストテーブル / ユニバース仕様 v1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairdesk.quant.costs import LegSpec
from pairdesk.quant.sessions import SessionCalendar
from pairdesk.research.config import ConfigError, load_yaml

TIMEFRAME_MINUTES = {"15m": 15, "1h": 60, "4h": 240}


@dataclass(frozen=True)
class LegConfig:
    """One leg of a pair: contract spec for sizing and its session calendar."""

    symbol: str
    spec: LegSpec
    calendar: SessionCalendar


@dataclass(frozen=True)
class PairConfig:
    """A tradable pair from ``universe.yaml``: legs A/B, minimum notional (USD) and allowed timeframes."""

    pair_id: str
    leg_a: LegConfig
    leg_b: LegConfig
    min_notional_usd: float
    allowed_timeframes: tuple[str, ...]
    data_dir: str | None = None


def _leg(raw: dict[str, Any], where: str) -> LegConfig:
    try:
        spec = LegSpec.from_mapping(raw)
        symbol = spec.symbol
        if symbol != symbol.upper():
            raise ValueError(f"canonical_symbol {symbol!r} must be upper-case")
        calendar = SessionCalendar.from_mapping(raw.get("trading_hours") or {"always_open": True})
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid leg definition ({exc})") from exc
    return LegConfig(symbol=symbol, spec=spec, calendar=calendar)


def load_universe(path: str | Path, pair_ids: list[str] | None = None) -> list[PairConfig]:
    """Load the pairs of a universe file, optionally only ``pair_ids`` (in universe order).

    Raises
    ------
    ConfigError
        Missing file, no ``pairs`` list, a malformed leg, or an unknown requested pair id.
    """
    raw = load_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("pairs"), list) or not raw["pairs"]:
        raise ConfigError(f"{path}: expected a non-empty 'pairs' list")
    pairs: list[PairConfig] = []
    for i, p in enumerate(raw["pairs"]):
        where = f"{path}: pairs[{i}]"
        if not isinstance(p, dict) or "pair_id" not in p or "leg_A" not in p or "leg_B" not in p:
            raise ConfigError(f"{where}: needs pair_id, leg_A and leg_B")
        cons = p.get("constraints") or {}
        pairs.append(
            PairConfig(
                pair_id=str(p["pair_id"]),
                leg_a=_leg(p["leg_A"], f"{where}.leg_A"),
                leg_b=_leg(p["leg_B"], f"{where}.leg_B"),
                min_notional_usd=float(cons.get("min_notional_usd", 0.0)),
                allowed_timeframes=tuple(cons.get("allowed_timeframes", TIMEFRAME_MINUTES)),
                data_dir=p.get("data_dir"),
            )
        )
    if pair_ids:
        known = {p.pair_id: p for p in pairs}
        unknown = [x for x in pair_ids if x not in known]
        if unknown:
            raise ConfigError(f"unknown pair id(s) {unknown}; universe has {sorted(known)}")
        pairs = [known[x] for x in pair_ids]
    return pairs

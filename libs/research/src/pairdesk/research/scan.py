"""``bt scan``: pair discovery over a formation period (docs/quant-contracts.md §Pair discovery).

Loads the usable bars of every symbol from the Parquet store (flag ``ok`` or imputed
``missing``, exactly what :func:`pairdesk.research.store.load_bars` returns) inside the formation
period only, takes log closes, and runs :func:`pairdesk.quant.pairs.scan_pairs` on every pair.
Legs are aligned on their common bars and never forward-filled. Outputs, written to a staging
folder and moved into place only when complete:

- ``candidates.parquet`` / ``candidates.csv`` — one ranked row per pair
  (:data:`pairdesk.quant.pairs.CANDIDATE_COLUMNS`);
- ``universe.yaml`` — the selected pairs in the spec's universe form, loadable by
  :func:`pairdesk.research.universe.load_universe` (``bt train`` / ``bt run --universe``);
- ``scan_meta.json`` — period, timeframe, symbols, parameters, data/code hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pairdesk.quant.costs import CostModel
from pairdesk.quant.pairs import ScanParams, scan_pairs
from pairdesk.research.config import CONFIG_DIR, ConfigError, load_policy, load_yaml
from pairdesk.research.inputs import has_conversion
from pairdesk.research.pipeline import staged_output
from pairdesk.research.provenance import code_hash, frame_hash, parse_period
from pairdesk.research.store import StoreError, load_bars
from pairdesk.research.train import Progress, _noop
from pairdesk.research.universe import (
    TIMEFRAME_MINUTES,
    default_constraints,
    default_leg_spec,
    load_universe,
    load_universe_symbols,
)

__all__ = ["ScanOutcome", "load_log_closes", "run_scan", "selected_universe"]

#: ``group`` of the pairs written to ``universe.yaml``.
SCAN_GROUP = "scan"

@dataclass(frozen=True)
class ScanOutcome:
    """What ``bt scan`` wrote and found.

    Attributes
    ----------
    out : Path
        Output folder.
    candidates : DataFrame
        The ranked table written to ``candidates.parquet``.
    params : ScanParams
    period : str
        Formation period as ``YYYY-MM-DD:YYYY-MM-DD`` (inclusive end date).
    missing : dict
        Symbol → why it has no bars in the period.
    """

    out: Path
    candidates: pd.DataFrame
    params: ScanParams
    period: str
    missing: dict[str, str]

    @property
    def n_selected(self) -> int:
        """Number of selected pairs."""
        return int(self.candidates["selected"].sum())


def load_log_closes(
    store: Path,
    symbols: list[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    progress: Progress = _noop,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Log closes of the symbols' usable bars in ``[start, end)`` (UTC), outer-joined on time.

    Returns
    -------
    (wide, missing)
        ``wide``: DataFrame, index UTC bar-open time, one column per symbol (NaN where the symbol
        has no usable bar; a symbol without any bar in the range is an all-NaN column).
        ``missing``: symbol → reason, for those all-NaN symbols.

    Raises
    ------
    ValueError
        A non-positive close (the log is undefined).
    """
    cols: dict[str, pd.Series] = {}
    missing: dict[str, str] = {}
    for i, sym in enumerate(symbols):
        try:
            bars = load_bars(store, sym, timeframe, start, end)
        except StoreError as exc:
            missing[sym] = str(exc).split(" under ")[0]
            cols[sym] = pd.Series(dtype=np.float64)
        else:
            close = bars["close"]
            if not bool((close > 0).all()):
                raise ValueError(f"{sym}: non-positive close in the store, cannot take logs")
            cols[sym] = pd.Series(np.log(close.to_numpy()), index=close.index)
        progress("load bars", i + 1, len(symbols))
    wide = pd.concat(cols, axis=1, join="outer", sort=True)
    if not isinstance(wide.index, pd.DatetimeIndex):
        wide.index = pd.DatetimeIndex(wide.index, tz="UTC")
    return wide.astype(np.float64), missing


class _NoAliasDumper(yaml.SafeDumper):
    """Write repeated mappings in full (no ``&id``/``*id`` anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _plain(x: Any) -> Any:
    """YAML-safe copy of a leg mapping (tuples → lists, numpy scalars → Python)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def selected_universe(
    candidates: pd.DataFrame,
    legs: Mapping[str, Mapping[str, Any]],
    timeframe: str,
    constraints: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``universe.yaml`` document of the selected pairs, in rank order.

    Parameters
    ----------
    candidates : DataFrame
        :func:`pairdesk.quant.pairs.scan_pairs` output.
    legs : mapping SYMBOL -> leg mapping
        Universe leg form of every symbol (``canonical_symbol``, ``tick_size``, …).
    timeframe : str
        Scanned timeframe; the pairs' ``allowed_timeframes`` unless ``constraints`` gives them.
    constraints : mapping pair_id -> constraints, optional
        Constraints to copy (from the input universe); others get the asset-class defaults of
        :func:`pairdesk.research.universe.default_constraints` with ``allowed_timeframes:
        [timeframe]``.

    Returns
    -------
    dict
        ``{"pairs": [{pair_id, group, leg_A, leg_B, constraints}, ...]}``.
    """
    pairs = []
    for rec in candidates.loc[candidates["selected"]].to_dict("records"):
        a, b, pid = str(rec["leg_A"]), str(rec["leg_B"]), str(rec["pair_id"])
        cons = dict((constraints or {}).get(pid) or {})
        if not cons:
            cons = default_constraints(
                [(s, legs[s].get("asset_class")) for s in (a, b)], [timeframe]
            )
        cons.setdefault("min_notional_usd", 0.0)
        cons.setdefault("allowed_timeframes", [timeframe])
        pairs.append(
            {
                "pair_id": pid,
                "group": SCAN_GROUP,
                "leg_A": _plain(legs[a]),
                "leg_B": _plain(legs[b]),
                "constraints": _plain(cons),
            }
        )
    return {"pairs": pairs}


def _legs_and_constraints(
    universe: Path | None, symbols: list[str], wide: pd.DataFrame, timeframe: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Leg mappings per symbol (copied from the universe, else asset-class defaults with the tick
    inferred from the stored closes) and constraints per pair id (from the universe's pairs,
    keyed in the scan's A_B order; other pairs get
    :func:`pairdesk.research.universe.default_constraints` with min_notional_usd raised to the
    largest one inherited per symbol)."""
    if universe is not None:
        legs = {s: dict(leg.mapping) for s, leg in load_universe_symbols(universe).items()}
        cons: dict[str, dict[str, Any]] = {}
        per_symbol_min: dict[str, float] = {}
        raw = load_yaml(universe)
        if isinstance(raw, dict) and raw.get("pairs"):
            for p, rp in zip(load_universe(universe), raw["pairs"], strict=True):
                rc = dict(rp.get("constraints") or {})
                cons[f"{p.leg_a.symbol}_{p.leg_b.symbol}"] = rc
                cons.setdefault(f"{p.leg_b.symbol}_{p.leg_a.symbol}", rc)
                for leg in (p.leg_a, p.leg_b):
                    per_symbol_min[leg.symbol] = max(
                        per_symbol_min.get(leg.symbol, 0.0), p.min_notional_usd
                    )
        for i, a in enumerate(symbols):
            for b in symbols[i + 1 :]:
                pid = f"{a}_{b}"
                if pid not in cons:
                    c = default_constraints(
                        [(s, legs[s].get("asset_class")) for s in (a, b)], [timeframe]
                    )
                    c["min_notional_usd"] = max(
                        c["min_notional_usd"],
                        per_symbol_min.get(a, 0.0),
                        per_symbol_min.get(b, 0.0),
                    )
                    cons[pid] = c
        return legs, cons
    legs = {}
    for sym in symbols:
        sample = np.exp(wide[sym].dropna().to_numpy()[-2000:]) if sym in wide else None
        legs[sym] = default_leg_spec(sym, price_sample=sample)
    return legs, {}


def _flag_unconvertible(
    cand: pd.DataFrame,
    legs: Mapping[str, Mapping[str, Any]],
    store: Path,
    timeframe: str,
    policy: Mapping[str, Any],
) -> pd.DataFrame:
    """Deselect pairs with a leg quoted in a currency that the store cannot convert to the
    account currency (``execution.account_ccy``; :func:`pairdesk.research.inputs.has_conversion`):
    ``failed_filters`` gets ``no conversion to USD`` (the account currency), then the rows are
    re-ranked selected-first as :func:`pairdesk.quant.pairs.scan_pairs` orders them."""
    account = str((policy.get("execution") or {}).get("account_ccy", "USD")).upper()
    bad = {
        sym
        for sym, m in legs.items()
        if not has_conversion(store, str(m.get("base_ccy") or account), account, timeframe)
    }
    if not bad:
        return cand
    hit = (cand["leg_A"].isin(bad) | cand["leg_B"].isin(bad)).to_numpy()
    flag = f"no conversion to {account}"
    cand = cand.copy()
    cand.loc[hit, "selected"] = False
    cand.loc[hit, "failed_filters"] = [
        flag if f in ("", "not tested") else f"{f}; {flag}" for f in cand.loc[hit, "failed_filters"]
    ]
    cand = cand.sort_values(
        ["selected", "qvalue", "eg_pvalue", "pair_id"],
        ascending=[False, True, True, True],
        na_position="last",
        kind="mergesort",
    ).reset_index(drop=True)
    cand["rank"] = np.arange(1, len(cand) + 1)
    return cand


def _resolve_symbols(symbols: list[str] | None, universe: Path | None) -> list[str]:
    if (symbols is None) == (universe is None):
        raise ValueError("give exactly one of --symbols or --universe")
    if universe is not None:
        syms = list(load_universe_symbols(universe))
    else:
        syms = [s.strip().upper() for s in (symbols or []) if s.strip()]
    dupes = sorted({s for s in syms if syms.count(s) > 1})
    if dupes:
        raise ValueError(f"duplicate symbol(s) {dupes}")
    if len(syms) < 2:
        raise ValueError(f"need at least 2 symbols to form a pair, got {syms}")
    return syms


def run_scan(
    *,
    store: Path,
    timeframe: str,
    period: str,
    out: Path,
    symbols: list[str] | None = None,
    universe: Path | None = None,
    policy: Path = CONFIG_DIR / "backtest_policy.yaml",
    cost: Path = CONFIG_DIR / "cost_table.yaml",
    overrides: Mapping[str, Any] | None = None,
    progress: Progress = _noop,
) -> ScanOutcome:
    """Scan every pair of the symbols over the formation period and write the outputs.

    Parameters
    ----------
    store : Path
        Parquet store root.
    timeframe : str
        ``15m``, ``1h``, ``4h`` or ``1d``.
    period : str
        Formation period ``YYYY-MM:YYYY-MM`` (or days), half-open in UTC
        (:func:`pairdesk.research.provenance.parse_period`); no bar at or after its end is read.
    out : Path
        Output folder (replaced atomically).
    symbols, universe
        Exactly one: the symbols, or a universe file whose symbols (``symbols`` list and pair
        legs) are paired up and whose leg definitions are copied into ``universe.yaml``.
    policy : Path
        Policy file with the ``scan:`` section (ScanParams defaults).
    cost : Path
        Cost table (round-trip costs).
    overrides : mapping, optional
        ScanParams fields overriding the policy (e.g. ``{"alpha": 0.1}``).
    progress : callable(step, done, total)

    Returns
    -------
    ScanOutcome

    Raises
    ------
    ValueError
        Bad period/timeframe/symbols/parameters, fewer than two symbols with bars, unreadable
        config (ConfigError is a ValueError).
    """
    if timeframe not in TIMEFRAME_MINUTES:
        raise ValueError(f"timeframe {timeframe!r} not in {sorted(TIMEFRAME_MINUTES)}")
    per = parse_period(period)
    syms = _resolve_symbols(symbols, universe)
    scan_cfg = load_policy(policy).get("scan") or {}
    if not isinstance(scan_cfg, Mapping):
        raise ConfigError(f"{policy}: 'scan' must be a mapping")
    params = ScanParams.from_mapping({**scan_cfg, **(overrides or {})})
    cost_table = load_yaml(cost)
    if not isinstance(cost_table, Mapping):
        raise ConfigError(f"{cost}: expected a mapping")
    costs = CostModel.from_mapping(cost_table, syms)
    wide, missing = load_log_closes(store, syms, timeframe, per.start, per.end, progress)
    if len(syms) - len(missing) < 2:
        raise ValueError(
            f"fewer than 2 symbols have usable {timeframe} bars in {per}: "
            + "; ".join(f"{s}: {why}" for s, why in missing.items())
        )
    legs, cons = _legs_and_constraints(universe, syms, wide, timeframe)
    cand = scan_pairs(wide, params, costs, progress=lambda d, t: progress("scan pairs", d, t))
    for sym, why in missing.items():
        hit = (cand["leg_A"] == sym) | (cand["leg_B"] == sym)
        cand.loc[hit, "reason"] = f"{sym}: {why}"
    cand = _flag_unconvertible(cand, legs, store, timeframe, load_policy(policy))
    doc = selected_universe(cand, legs, timeframe, cons)
    meta = {
        "command": "bt scan",
        "period": str(per),
        "period_utc": [per.start.isoformat(), per.end.isoformat()],
        "timeframe": timeframe,
        "symbols": syms,
        "missing_symbols": missing,
        "params": asdict(params),
        "n_pairs": len(cand),
        "n_tested": int((cand["reason"] == "").sum()),
        "n_selected": int(cand["selected"].sum()),
        "selected": [p["pair_id"] for p in doc["pairs"]],
        "cost_table_sha256": hashlib.sha256(Path(cost).read_bytes()).hexdigest(),
        "data_hash": frame_hash(wide),
        "code_hash": code_hash(),
    }
    header = (
        f"# bt scan {per} {timeframe}: {meta['n_selected']} of {len(cand)} pairs selected "
        f"(BH q <= {params.alpha:g}, half-life {params.half_life_min_bars:g}..{params.half_life_max_bars:g} "
        f"bars, spread sigma > {params.cost_multiple:g} x round-trip cost); see candidates.csv\n"
    )
    if not doc["pairs"]:
        header += "# no pair passed the selection: this file has no pairs to train on\n"
    with staged_output(out) as tmp:
        cand.to_parquet(tmp / "candidates.parquet", index=False)
        cand.to_csv(tmp / "candidates.csv", index=False, float_format="%.10g")
        text = yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)
        (tmp / "universe.yaml").write_text(header + text, encoding="utf-8")
        (tmp / "scan_meta.json").write_text(
            json.dumps(meta, indent=2, default=_json_default) + "\n", encoding="utf-8"
        )
    return ScanOutcome(out=out, candidates=cand, params=params, period=str(per), missing=missing)


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    return str(x)

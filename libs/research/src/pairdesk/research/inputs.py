"""Per-pair research inputs: aligned canonical bars from the store → features v1, AI1 candidate bars,
tradable mask, contract specs and costs — the one place where ``bt train`` and ``bt run`` build what
the quant engine consumes (so both read identical numbers)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pairdesk.quant.costs import CostModel
from pairdesk.quant.features import compute_features
from pairdesk.quant.labels import ai1_candidates
from pairdesk.research.provenance import Period, frame_hash
from pairdesk.research.settings import ResearchSettings
from pairdesk.research.store import load_pair
from pairdesk.research.universe import PairConfig


@dataclass(frozen=True)
class PairInputs:
    """Everything the engine needs for one pair over one period.

    Attributes
    ----------
    pair : PairConfig
    bars_a, bars_b : DataFrame, shape (n, 5)
        Aligned OHLCV on the common UTC bar-open times.
    features : DataFrame, shape (n, 21)
        Features v1 on the same index (warm-up rows NaN).
    candidates : ndarray of bool, shape (n,)
        AI1 candidate bars (causal event rule).
    tradable : ndarray of bool, shape (n,)
        Both legs inside their sessions for the bar.
    costs : CostModel
    data_hash : str
        SHA-256 of the aligned bars.
    """

    pair: PairConfig
    bars_a: pd.DataFrame
    bars_b: pd.DataFrame
    features: pd.DataFrame
    candidates: np.ndarray
    tradable: np.ndarray
    costs: CostModel
    data_hash: str

    def slice(self, mask: np.ndarray) -> PairInputs:
        """The same inputs restricted to the rows where ``mask`` is True (features are NOT
        recomputed: warm-up history before the slice stays in effect)."""
        return replace(
            self,
            bars_a=self.bars_a.loc[mask],
            bars_b=self.bars_b.loc[mask],
            features=self.features.loc[mask],
            candidates=self.candidates[mask],
            tradable=self.tradable[mask],
        )

    def engine_inputs(self, *, return_prob: np.ndarray, risk_score: np.ndarray) -> dict[str, Any]:
        """Keyword arguments for :func:`pairdesk.quant.backtest.run_backtest` / ``grid_search``."""
        f = self.features
        return {
            "ts": f.index,
            "close_a": self.bars_a["close"].to_numpy(np.float64),
            "close_b": self.bars_b["close"].to_numpy(np.float64),
            "z": f["z"].to_numpy(np.float64),
            "beta": f["beta"].to_numpy(np.float64),
            "return_prob": np.where(self.candidates, return_prob, np.nan),
            "risk_score": risk_score,
            "tradable": self.tradable,
            "legs": (self.pair.leg_a.spec, self.pair.leg_b.spec),
            "costs": self.costs,
            "min_notional_usd": self.pair.min_notional_usd,
        }


def load_pair_inputs(
    pair: PairConfig,
    *,
    store_dir: Path,
    period: Period,
    settings: ResearchSettings,
    cost_table: dict[str, Any],
    warmup_from: pd.Timestamp | None = None,
) -> PairInputs:
    """Load the pair's bars for ``period`` (from ``warmup_from`` if given, so features are warm at
    the period start), compute features v1, candidates and the tradable mask.

    Raises
    ------
    ValueError
        No stored bars, timeframe not allowed for the pair, or fewer common bars than the
        feature warm-up needs.
    """
    tf = settings.timeframe
    if tf not in pair.allowed_timeframes:
        raise ValueError(f"{pair.pair_id}: timeframe {tf} not in allowed_timeframes {list(pair.allowed_timeframes)}")
    start = warmup_from if warmup_from is not None else period.start
    a, b = load_pair(store_dir, pair.leg_a.symbol, pair.leg_b.symbol, tf, start, period.end)
    need = settings.features.warmup_bars + 1
    if len(a) < need:
        raise ValueError(
            f"{pair.pair_id}: {len(a)} common {tf} bars in {start:%Y-%m-%d}..{period.end:%Y-%m-%d}, "
            f"the feature warm-up needs at least {need}"
        )
    feats = compute_features(a, b, settings.features)
    cand = np.asarray(ai1_candidates(feats, settings.labels), dtype=bool)
    tradable = pair.leg_a.calendar.is_tradable(feats.index, tf) & pair.leg_b.calendar.is_tradable(feats.index, tf)
    costs = CostModel.from_mapping(cost_table, [pair.leg_a.symbol, pair.leg_b.symbol])
    return PairInputs(
        pair=pair,
        bars_a=a,
        bars_b=b,
        features=feats,
        candidates=cand,
        tradable=np.asarray(tradable, dtype=bool),
        costs=costs,
        data_hash=frame_hash(a[["open", "high", "low", "close"]], b[["open", "high", "low", "close"]]),
    )

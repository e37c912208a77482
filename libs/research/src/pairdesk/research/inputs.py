"""Per-pair research inputs: aligned canonical bars from the store → features v1, AI1 candidate bars,
tradable mask, contract specs and costs — the one place where ``bt train`` and ``bt run`` build what
the quant engine consumes (so both read identical numbers).

Imputed bars (DQ rule 5, ``imputed = True`` in the store: a short hole filled by forward-fill/linear
interpolation) are kept for features and mark-to-market but are never a signal bar nor a fill
price: the engine's ``tradable`` mask is False on them, and their ``z`` / ``risk_score`` are NaN in
:meth:`PairInputs.engine_inputs` so no exit signal fires on them either (a time stop due on one
fills on the next real tradable bar). Backtest slices end on the last real bar
(:func:`drop_trailing_imputed`), so the end-of-data close is a real price too
(docs/quant-contracts.md §Research pipeline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pairdesk.quant.costs import CostModel
from pairdesk.quant.features import compute_features
from pairdesk.quant.labels import ai1_candidates
from pairdesk.quant.portfolio import PairInputs as EnginePairInputs
from pairdesk.quant.portfolio import PortfolioParams
from pairdesk.research.provenance import Period, frame_hash
from pairdesk.research.settings import ResearchSettings
from pairdesk.research.store import (
    StoreError,
    list_partitions,
    load_bars,
    load_pair,
    partition_file,
    read_partition,
)
from pairdesk.research.universe import TIMEFRAME_MINUTES, LegConfig, PairConfig


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
        Both legs inside their sessions for the bar and neither leg imputed.
    imputed : ndarray of bool, shape (n,)
        Either leg's bar is an imputed (filled) bar in the store.
    costs : CostModel
    data_hash : str
        SHA-256 of the aligned bars.
    rate_a, rate_b : ndarray of float, shape (n,), optional
        Quote-to-account rates of the legs (account units per 1 unit of the leg's quote
        currency, as-of each bar; :func:`conversion_rates`); ``None`` = 1.0 (quoted in the
        account currency).
    """

    pair: PairConfig
    bars_a: pd.DataFrame
    bars_b: pd.DataFrame
    features: pd.DataFrame
    candidates: np.ndarray
    tradable: np.ndarray
    imputed: np.ndarray
    costs: CostModel
    data_hash: str
    rate_a: np.ndarray | None = None
    rate_b: np.ndarray | None = None

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
            imputed=self.imputed[mask],
            rate_a=None if self.rate_a is None else self.rate_a[mask],
            rate_b=None if self.rate_b is None else self.rate_b[mask],
        )

    def engine_inputs(self, *, return_prob: np.ndarray, risk_score: np.ndarray) -> dict[str, Any]:
        """Keyword arguments for :func:`pairdesk.quant.backtest.run_backtest` / ``grid_search``.

        ``return_prob`` / ``risk_score`` have shape (n,). On imputed bars ``z``, ``return_prob``
        and ``risk_score`` are NaN and ``tradable`` is False (module docstring)."""
        f = self.features
        real = ~self.imputed
        return {
            "ts": f.index,
            "close_a": self.bars_a["close"].to_numpy(np.float64),
            "close_b": self.bars_b["close"].to_numpy(np.float64),
            "z": np.where(real, f["z"].to_numpy(np.float64), np.nan),
            "beta": f["beta"].to_numpy(np.float64),
            "return_prob": np.where(self.candidates & real, return_prob, np.nan),
            "risk_score": np.where(real, np.asarray(risk_score, dtype=np.float64), np.nan),
            "tradable": self.tradable & real,
            "legs": (self.pair.leg_a.spec, self.pair.leg_b.spec),
            "costs": self.costs,
            "min_notional_usd": self.pair.min_notional_usd,
            "quote_to_account_a": self.rate_a,
            "quote_to_account_b": self.rate_b,
        }

    def portfolio_inputs(
        self,
        *,
        return_prob: np.ndarray,
        risk_score: np.ndarray,
        risk_label: np.ndarray | None = None,
        margin_requirement: float = 0.0,
    ) -> EnginePairInputs:
        """This pair as one input of :func:`pairdesk.quant.portfolio.run_portfolio` /
        ``grid_search_portfolio`` (the arrays of :meth:`engine_inputs`; ``risk_label`` shape (n,)
        0/1/NaN for the AI2 false-positive counters; ``margin_requirement`` per USD of gross
        notional)."""
        kw = self.engine_inputs(return_prob=return_prob, risk_score=risk_score)
        leg_a, leg_b = kw["legs"]
        return EnginePairInputs(
            pair_id=self.pair.pair_id,
            ts=kw["ts"],
            close_a=kw["close_a"],
            close_b=kw["close_b"],
            z=kw["z"],
            beta=kw["beta"],
            return_prob=kw["return_prob"],
            risk_score=kw["risk_score"],
            tradable=kw["tradable"],
            leg_a=leg_a,
            leg_b=leg_b,
            min_notional_usd=self.pair.min_notional_usd,
            margin_requirement=float(margin_requirement),
            risk_label=risk_label,
            quote_to_account_a=kw["quote_to_account_a"],
            quote_to_account_b=kw["quote_to_account_b"],
        )


def portfolio_params(settings: ResearchSettings) -> PortfolioParams:
    """Caps, maintenance margin (``backtest_policy.yaml`` ``portfolio``) and the drawdown policy
    (``dd_policy.yaml``, as loaded with the settings) of the portfolio backtest."""
    bt = settings.raw.get("backtest", {})
    return PortfolioParams.from_policy(
        {"portfolio": {"value": dict(bt.get("portfolio") or {})}}, settings.raw["dd"]
    )


def margin_requirements(pairs: Sequence[PairConfig]) -> dict[str, float]:
    """``constraints.margin_requirement`` per pair id of already-loaded pairs (a pair without
    ``constraints`` carries the asset-class default of
    :func:`pairdesk.research.universe.default_constraints`; one whose constraints omit it has 0 and
    is left out: no margin check for it)."""
    return {p.pair_id: p.margin_requirement for p in pairs if p.margin_requirement > 0.0}


def quote_currency(leg: LegConfig) -> str:
    """The currency the leg's prices are quoted in (universe ``base_ccy``, see
    :func:`pairdesk.research.universe.default_leg_spec`; USD when absent)."""
    return str(leg.mapping.get("base_ccy") or "USD").upper()


def conversion_symbols(quote: str, account: str) -> tuple[str, str]:
    """The two store symbols that convert ``quote`` to ``account``: ``(QUOTE+ACCOUNT, rate =
    close)`` first, then ``(ACCOUNT+QUOTE, rate = 1 / close)``."""
    return f"{quote}{account}", f"{account}{quote}"


def has_conversion(store_dir: Path, quote: str, account: str, timeframe: str) -> bool:
    """Whether the store holds ``timeframe`` bars of either conversion symbol of ``quote``
    (always True when ``quote == account``)."""
    if quote.upper() == account.upper():
        return True
    return any(
        list_partitions(store_dir, timeframe, s)
        for s in conversion_symbols(quote.upper(), account.upper())
    )


def conversion_rates(
    store_dir: Path,
    quote: str,
    account: str,
    timeframe: str,
    index: pd.Index,
    stale_threshold_bars: int,
    *,
    leg: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar quote-to-account rates of a leg quoted in ``quote`` (spec 004 §コストテーブル /
    ユニバース仕様 v1 通貨換算; docs/quant-contracts.md §Currency conversion).

    The rate series is ``QUOTE+ACCOUNT`` (rate = close) or else ``ACCOUNT+QUOTE`` (rate =
    1 / close) of the same store and timeframe. Each bar of ``index`` takes the latest rate bar
    whose open time is at or before its own (as-of join: that bar closes no later than this one,
    so no look-ahead). A rate older than ``stale_threshold_bars`` bars is *stale*: the value
    is kept for marks (the last good rate) but the bar is not fresh (換算保留 — the caller makes
    it untradable). Bars before the first rate take the first rate and are not fresh.

    Parameters
    ----------
    store_dir : Path
    quote, account : str
        ISO currency codes (``"JPY"``, ``"USD"``).
    timeframe : str
        Store timeframe (``"1h"``).
    index : DatetimeIndex, shape (n,)
        UTC bar-open times of the pair.
    stale_threshold_bars : int
        Largest admissible age of the rate bar, in bars of ``timeframe`` (≥ 0).
    leg : str
        Leg symbol for the error message.

    Returns
    -------
    rate : ndarray of float64, shape (n,)
        Account units per 1 unit of ``quote``; all 1.0 when ``quote == account``.
    fresh : ndarray of bool, shape (n,)
        The rate is at most ``stale_threshold_bars`` bars old.

    Raises
    ------
    ValueError
        Neither conversion symbol has ``timeframe`` bars in the store (one line naming the leg
        and both symbols), or none in the range of ``index``.
    """
    n = len(index)
    q, acc = quote.upper(), account.upper()
    if q == acc or n == 0:
        return np.ones(n), np.ones(n, dtype=bool)
    bar = pd.Timedelta(minutes=TIMEFRAME_MINUTES[timeframe])
    idx = pd.DatetimeIndex(index)
    direct, inverse = conversion_symbols(q, acc)
    missing = (
        f"{leg or q} is quoted in {q}: no {inverse} or {direct} bars in the store for "
        f"{timeframe}; cannot convert PnL to {acc}"
    )
    for sym, invert in ((direct, False), (inverse, True)):
        if not list_partitions(store_dir, timeframe, sym):
            continue
        try:
            bars = load_bars(
                store_dir, sym, timeframe, idx[0] - bar * (stale_threshold_bars + 1), idx[-1] + bar
            )
        except StoreError as exc:
            raise ValueError(f"{missing} in {idx[0]:%Y-%m-%d}..{idx[-1]:%Y-%m-%d}") from exc
        close = bars["close"].to_numpy(np.float64)
        rates = 1.0 / close if invert else close
        t_rate = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
        t = idx.as_unit("ns").asi8
        pos = np.searchsorted(t_rate, t, side="right") - 1
        known = pos >= 0
        rate = rates[np.maximum(pos, 0)]
        age = t - t_rate[np.maximum(pos, 0)]
        fresh = known & (age <= stale_threshold_bars * bar.value)
        return rate, fresh
    raise ValueError(missing)


def account_settings(settings: ResearchSettings) -> tuple[str, int]:
    """``(account_ccy, fx_stale_threshold_bars)`` of ``backtest_policy.yaml`` ``execution``
    (defaults USD and 3 bars)."""
    exe = dict(settings.raw.get("backtest", {}).get("execution") or {})
    return str(exe.get("account_ccy", "USD")).upper(), int(exe.get("fx_stale_threshold_bars", 3))


def imputed_mask(store_dir: Path, symbol: str, timeframe: str, index: pd.Index) -> np.ndarray:
    """Whether each bar of ``index`` (UTC bar-open times, shape (n,)) is an imputed row of
    ``symbol`` in the store (``imputed`` column of the canonical partitions; only the months
    spanned by ``index`` are read)."""
    out = np.zeros(len(index), dtype=bool)
    if len(index) == 0:
        return out
    months = set(pd.DatetimeIndex(index).tz_convert("UTC").strftime("%Y-%m"))
    stamps: list[pd.DatetimeIndex] = []
    for month in list_partitions(store_dir, timeframe, symbol):
        if month not in months:
            continue
        path = partition_file(store_dir, timeframe, symbol, month)
        if not path.is_file():
            continue
        df = read_partition(path)
        stamps.append(pd.DatetimeIndex(df.loc[df["imputed"].to_numpy(bool), "ts_utc"]))
    if stamps:
        flagged = stamps[0].append(stamps[1:]) if len(stamps) > 1 else stamps[0]
        out = np.asarray(pd.DatetimeIndex(index).isin(flagged), dtype=bool)
    return out


def drop_trailing_imputed(mask: np.ndarray, imputed: np.ndarray) -> np.ndarray:
    """``mask`` (bool, shape (n,)) with the imputed bars after its last real (non-imputed) bar
    removed, so a backtest over it ends — and closes any open position — on a real price."""
    keep = np.asarray(mask, dtype=bool).copy()
    real = np.flatnonzero(keep & ~np.asarray(imputed, dtype=bool))
    if len(real):
        keep[real[-1] + 1 :] = False
    return keep


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
        No stored bars, timeframe not allowed for the pair, fewer common bars than the
        feature warm-up needs, or a leg quoted in a currency other than the account currency
        (``backtest_policy.yaml`` ``execution.account_ccy``) without a conversion series in the
        store (:func:`conversion_rates`; stale rates make bars untradable).
    """
    tf = settings.timeframe
    if tf not in pair.allowed_timeframes:
        raise ValueError(
            f"{pair.pair_id}: timeframe {tf} not in allowed_timeframes {list(pair.allowed_timeframes)}"
        )
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
    tradable = pair.leg_a.calendar.is_tradable(feats.index, tf) & pair.leg_b.calendar.is_tradable(
        feats.index, tf
    )
    imputed = imputed_mask(store_dir, pair.leg_a.symbol, tf, feats.index) | imputed_mask(
        store_dir, pair.leg_b.symbol, tf, feats.index
    )
    costs = CostModel.from_mapping(cost_table, [pair.leg_a.symbol, pair.leg_b.symbol])
    account, stale = account_settings(settings)
    rates: list[np.ndarray | None] = []
    for leg in (pair.leg_a, pair.leg_b):
        q = quote_currency(leg)
        if q == account:
            rates.append(None)
            continue
        r, fresh = conversion_rates(store_dir, q, account, tf, feats.index, stale, leg=leg.symbol)
        rates.append(r)
        tradable = np.asarray(tradable, dtype=bool) & fresh
    return PairInputs(
        pair=pair,
        bars_a=a,
        bars_b=b,
        features=feats,
        candidates=cand,
        tradable=np.asarray(tradable, dtype=bool) & ~imputed,
        imputed=imputed,
        costs=costs,
        data_hash=frame_hash(
            a[["open", "high", "low", "close"]], b[["open", "high", "low", "close"]]
        ),
        rate_a=rates[0],
        rate_b=rates[1],
    )

"""Response models of the analytics API (spec 004 §ml-assets-analytics 仕様 v1 主要レスポンス例,
§OpenAPI 概要 v1 ``MetricsTrading``).

Ratios are fractions (``max_drawdown`` 0.08 = 8 %); VaR / ES are positive losses as fractions of
equity; times are UTC (RFC 3339), dates ``YYYY-MM-DD``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "DataQualityMonth",
    "DataQualityRead",
    "DataQualityTotal",
    "EquityPoint",
    "ModelHistoryItem",
    "ModelMetricsRead",
    "OpsFlagsRead",
    "PairRiskRead",
    "PairTradingRead",
    "RiskMetricsRead",
    "RunInfo",
    "TradingKpis",
    "TradingMetricsRead",
]


class RunInfo(BaseModel):
    """The backtest run the figures come from (``bt_runs``)."""

    run_id: str
    status: str
    timeframe: str | None = Field(description="request.timeframe when the run recorded it")
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TradingKpis(BaseModel):
    """Spec 004 KPIs of one pair (``bt_summary``)."""

    trades: int
    annualized_return: float | None
    sharpe: float | None
    max_drawdown: float | None
    calmar: float | None
    win_rate: float | None
    e_per_trade: float | None
    trades_per_year: float | None
    halt_rate: float | None = Field(description="AI2 veto share (やらない勇気発動率)")
    pnl_std: float | None = Field(description="PnL σ per trade (USD)")


class EquityPoint(BaseModel):
    """One day of ``bt_daily_equity``."""

    date: date
    equity: float
    dd: float = Field(description="Drawdown from the running peak (fraction)")


class PairTradingRead(BaseModel):
    """KPIs, block-bootstrap 95 % intervals, provenance and daily series of one pair."""

    pair_id: str
    period: str
    theta1: float | None
    theta2: float | None
    kpis: TradingKpis
    ci: dict[str, tuple[float | None, float | None]] = Field(
        description="KPI name (as in kpis) -> [low, high] 95 % interval"
    )
    provenance: dict[str, str | int | None] = Field(
        description="model_version, feature_schema_hash, data_hash, code_hash, params_hash, seed"
    )
    equity_daily: list[EquityPoint]


class TradingMetricsRead(BaseModel):
    """``GET /metrics/trading``."""

    run: RunInfo
    pairs: list[PairTradingRead]


class ModelHistoryItem(BaseModel):
    """One registry row of the same timeframe (adoption history, newest first)."""

    model_version: str
    status: str
    created_at: datetime
    activated_at: datetime | None
    activated_by: str | None


class ModelMetricsRead(BaseModel):
    """``GET /metrics/model``: a registry row and its walk-forward metrics."""

    model_version: str
    timeframe: str
    status: str
    train_start: datetime | None
    train_end: datetime | None
    theta1: float | None
    theta2: float | None
    artifact_sha256: str | None
    feature_schema_hash: str | None
    params_hash: str | None
    data_hash: str | None
    code_hash: str | None
    seed: int | None
    created_at: datetime
    activated_at: datetime | None
    activated_by: str | None
    walk_forward: dict[str, dict[str, Any]] = Field(
        description="Out-of-sample walk-forward metrics per model (ai1: auc, brier, pr_auc, "
        "ece...; ai2: f1_weighted, pr_auc, recall...)"
    )
    summary: dict[str, Any] = Field(description="Training summary (samples, folds, θ)")
    history: list[ModelHistoryItem]


class DataQualityMonth(BaseModel):
    """Quality-flag counts of one symbol × timeframe × UTC month of ``canonical_bars``."""

    symbol: str
    timeframe: str
    month: str = Field(description="YYYY-MM (UTC)")
    bars: int
    ok: int
    missing: int = Field(description="Imputed bars (quality_flag missing)")
    outlier: int
    other: int = Field(description="Any other flag (resampled, conflict, stale, revised)")
    missing_rate: float = Field(description="missing / bars")
    outlier_rate: float = Field(description="outlier / bars")
    quarantined: bool = Field(description="The month's store partition is quarantined")


class DataQualityTotal(BaseModel):
    """The same counts over every month of one symbol × timeframe."""

    symbol: str
    timeframe: str
    months: int
    quarantined_months: int
    bars: int
    ok: int
    missing: int
    outlier: int
    other: int
    missing_rate: float
    outlier_rate: float


class DataQualityRead(BaseModel):
    """``GET /metrics/data_quality``."""

    totals: list[DataQualityTotal]
    months: list[DataQualityMonth]


class PairRiskRead(BaseModel):
    """Backtest risk of one pair from ``bt_daily_equity`` (historical, daily)."""

    pair_id: str
    days: int
    first_date: date
    last_date: date
    max_drawdown: float
    current_drawdown: float
    var: float | None = Field(description="Daily historical VaR at `confidence` (loss fraction)")
    es: float | None = Field(description="Daily expected shortfall at `confidence`")
    worst_day: float | None = Field(description="Most negative daily return")
    halt_rate: float | None = Field(description="bt_summary halt_rate (AI2 veto share)")


class OpsFlagsRead(BaseModel):
    """Current ``core:ops:flags`` (halt / flatten / leverage)."""

    global_halt: str
    halted_pairs: list[str]
    flatten_pairs: list[str]
    leverage_scale: float
    updated_at: float | None
    updated_by: str | None


class RiskMetricsRead(BaseModel):
    """``GET /metrics/risk``: backtest risk per pair plus the live state from Redis."""

    run: RunInfo
    confidence: float
    pairs: list[PairRiskRead]
    live_status: str = Field(description="ok, or unavailable when Redis could not be read")
    live_pair_metrics: dict[str, dict[str, Any]] = Field(
        description="pair_id -> live metrics core_inference maintains (drawdown, correlation...)"
    )
    ops_flags: OpsFlagsRead | None

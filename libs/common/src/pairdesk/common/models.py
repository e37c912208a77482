"""ORM tables of the Pairdesk platform database (SQLAlchemy 2, PostgreSQL).

Sources
-------
- ``canonical_bars``: spec 004 §データソース抽象化レイヤ v1 ``canonical_bar`` (unique key
  ``symbol, timeframe, ts_utc``; prices at least 6 decimals).
- ``bt_runs`` / ``bt_summary`` / ``bt_trades`` / ``bt_daily_equity`` / ``bt_stress_results``:
  spec 004 §backtest-assets-engine 出力 and §データディクショナリ表現規約 (bt_trades dictionary);
  every output row carries ``run_id`` and the provenance stamps (``model_version``,
  ``feature_schema_hash``, ``data_hash``, ``code_hash``, ``params_hash``, ``seed``).
- ``model_registry``, ``signals_live``, ``signals_history``, ``audit.*``: spec 004
  §ml-assets-analytics データソース, §設定変更ワークフロー, §運用Runbook.
- ``incident_logs``: spec 004 §運用Runbook 手順 4 (time, operator, grounds, attachments).
- ``execution_logs``: spec 000 run record (execution_id, type, start/end, status, target,
  operations, resources, errors, metadata).

All timestamps are ``timestamptz`` and are meant to be written in UTC. Money/price/quantity
columns are ``numeric`` (returned as :class:`decimal.Decimal`) with the precision of the spec's
data dictionary; model outputs (probabilities, z) use the dictionary's numeric scales too.
Physical layout of ``canonical_bars`` (hypertable or monthly range partitions) is created by the
initial alembic migration, not by :meth:`sqlalchemy.MetaData.create_all`.
"""

from __future__ import annotations

import datetime as _dt
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pairdesk.common.auth import Role
from pairdesk.common.db import Base, TimestampMixin
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

__all__ = [
    "AUDIT_SCHEMA",
    "AnalyticsAction",
    "BtDailyEquity",
    "BtRun",
    "BtRunStatus",
    "BtStressResult",
    "BtSummary",
    "BtTrade",
    "CanonicalBar",
    "ConfigChange",
    "ConfigChangeState",
    "ExecutionLog",
    "ExecutionStatus",
    "ExecutionType",
    "IncidentLog",
    "ModelRegistry",
    "ModelStatus",
    "QualityFlag",
    "RetrainRun",
    "Role",
    "SignalHistory",
    "SignalLive",
    "TradeSide",
    "User",
    "canonical_storage",
    "ensure_canonical_partitions",
]

AUDIT_SCHEMA = "audit"

# Numeric types per spec 004 §データディクショナリ表現規約 (bt_trades dictionary).
PRICE = Numeric(18, 6)  # prices / quantities / money in the dictionary: numeric(18,6)
BAR_PRICE = Numeric(20, 8)  # canonical bars: >= 6 decimals; 8 covers crypto tick sizes
Z = Numeric(10, 5)  # z-scores
PROB = Numeric(6, 4)  # probabilities / scores in [0, 1]
BPS = Numeric(8, 4)  # basis points
RATIO = Numeric(14, 6)  # KPI ratios (Sharpe, annualised return, drawdown as a fraction)
HASH = String(128)


def _enum(enum_cls: type[StrEnum], name: str) -> Enum:
    """A VARCHAR column restricted by a CHECK constraint to the enum's values."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda cls: [m.value for m in cls],
        validate_strings=True,
    )


class QualityFlag(StrEnum):
    """``canonical_bar.quality_flag`` (spec 004 §データソース抽象化レイヤ)."""

    OK = "ok"
    MISSING = "missing"
    OUTLIER = "outlier"
    RESAMPLED = "resampled"
    CONFLICT = "conflict"
    STALE = "stale"
    REVISED = "revised"


class BtRunStatus(StrEnum):
    """Life cycle of a backtest run: queued → running → succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TradeSide(StrEnum):
    """Spread direction: ``SHORT_SPREAD`` = sell A / buy B (z > 0), ``LONG_SPREAD`` the reverse."""

    LONG_SPREAD = "LONG_SPREAD"
    SHORT_SPREAD = "SHORT_SPREAD"


class ModelStatus(StrEnum):
    """Model registry status; at most one ``active`` model per timeframe."""

    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


class ExecutionType(StrEnum):
    """Spec 000 execution types (both the record schema's and the timeout table's names)."""

    SYMBOL_ADDITION = "SYMBOL_ADDITION"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    EMERGENCY = "EMERGENCY"
    SCHEDULED_BACKTEST = "SCHEDULED_BACKTEST"
    SCHEDULED_TRAINING = "SCHEDULED_TRAINING"
    EMERGENCY_RETRAIN = "EMERGENCY_RETRAIN"


class ExecutionStatus(StrEnum):
    """Spec 000 statuses plus ``RUNNING`` for a record written at start and completed later."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
    FAILED = "FAILED"


class ConfigChangeState(StrEnum):
    """Config workflow states (spec 004 §設定変更ワークフロー ステートマシン)."""

    DRAFT = "draft"
    PR_CREATED = "pr_created"
    APPROVED = "approved"
    MERGED = "merged"
    APPLIED = "applied"
    REJECTED = "rejected"
    ROLLBACK_REQUESTED = "rollback_requested"
    ROLLED_BACK = "rolled_back"


_ERROR_ID_CHECK = "error_id ~ '^(DATA|CORE|BT|ANALYTICS|OPS|UI)_[A-Z0-9]+_[A-Z0-9_]+$'"


# --------------------------------------------------------------------------------------------
# Market data
# --------------------------------------------------------------------------------------------


class CanonicalBar(Base):
    """One OHLCV bar in canonical form (spec 004 ``canonical_bar``).

    ``ts_utc`` is the bar open time (UTC). ``symbol`` is upper-case without separators.
    ``volume`` is NULL when the source has none (FX/indices; 0 does not mean unknown).
    The table is a TimescaleDB hypertable or a monthly range-partitioned table (see the
    initial migration); the primary key includes ``ts_utc`` as both layouts require.
    """

    __tablename__ = "canonical_bars"
    __table_args__ = (
        CheckConstraint("symbol = upper(symbol)", name="symbol_upper"),
        Index("ix_canonical_bars_ingest_run_id", "ingest_run_id"),
    )

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    open: Mapped[Decimal] = mapped_column(BAR_PRICE, nullable=False)
    high: Mapped[Decimal] = mapped_column(BAR_PRICE, nullable=False)
    low: Mapped[Decimal] = mapped_column(BAR_PRICE, nullable=False)
    close: Mapped[Decimal] = mapped_column(BAR_PRICE, nullable=False)
    volume: Mapped[Decimal | None] = mapped_column(Numeric(28, 8), nullable=True)
    quality_flag: Mapped[QualityFlag] = mapped_column(
        _enum(QualityFlag, "quality_flag"), nullable=False, server_default=QualityFlag.OK.value
    )
    source_id: Mapped[str] = mapped_column(String(64), nullable=False)
    ingest_run_id: Mapped[str] = mapped_column(String(64), nullable=False)
    checksum: Mapped[str | None] = mapped_column(HASH, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    ingested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


# --------------------------------------------------------------------------------------------
# Backtest
# --------------------------------------------------------------------------------------------


class ProvenanceMixin:
    """Provenance stamps carried by every backtest output row (spec 004 §backtest 出力)."""

    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    feature_schema_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    data_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    code_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    params_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


def _run_fk() -> Mapped[str]:
    return mapped_column(
        String(64), ForeignKey("bt_runs.run_id", ondelete="CASCADE"), nullable=False, index=True
    )


class BtRun(TimestampMixin, ProvenanceMixin, Base):
    """A backtest run request and its life cycle (``queued|running|succeeded|failed``).

    ``idempotency_key`` is unique: re-submitting the same request with the same key must return
    the existing run instead of creating a second one. ``request`` holds the run parameters
    as submitted (universe, period, timeframe, model dir, cost table, θ...).
    """

    __tablename__ = "bt_runs"
    __table_args__ = (
        CheckConstraint(f"error_id IS NULL OR {_ERROR_ID_CHECK}", name="error_id_format"),
        CheckConstraint(
            "finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at",
            name="finished_after_started",
        ),
        Index("ix_bt_runs_status_created_at", "status", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[BtRunStatus] = mapped_column(
        _enum(BtRunStatus, "bt_run_status"),
        nullable=False,
        server_default=BtRunStatus.QUEUED.value,
    )
    error_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    requested_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BtSummary(ProvenanceMixin, Base):
    """KPI summary per run, pair and period (spec 004 ``bt_summary``).

    Ratios are fractions (``max_dd`` 0.08 = 8 %); ``e_per_trade`` is a return per trade
    (fraction); ``ci`` holds block-bootstrap 95 % intervals ``{kpi: [lo, hi]}``.
    """

    __tablename__ = "bt_summary"
    __table_args__ = (
        UniqueConstraint("run_id", "pair_id", "period"),
        CheckConstraint("trades >= 0", name="trades_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[str] = _run_fk()
    pair_id: Mapped[str] = mapped_column(String(64), nullable=False)
    period: Mapped[str] = mapped_column(String(64), nullable=False)
    trades: Mapped[int] = mapped_column(Integer, nullable=False)
    win_rate: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    e_per_trade: Mapped[Decimal | None] = mapped_column(Numeric(18, 8), nullable=True)
    ann_return: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    sharpe: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    max_dd: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    calmar: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    trades_per_year: Mapped[Decimal | None] = mapped_column(Numeric(12, 4), nullable=True)
    pnl_std: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    halt_rate: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    theta1: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    theta2: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    ci: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )


class BtTrade(ProvenanceMixin, Base):
    """One round-trip pair trade (spec 004 §データディクショナリ ``bt_trades``).

    ``price_a`` / ``price_b`` are the entry fill prices (dictionary names), ``exit_price_*``
    the exit fills. ``commission_bps`` / ``slippage_bps`` are one-side rates; ``cost_*`` are the
    money amounts charged (USD, spec 004 §出力 ``cost_commission, cost_slippage``). ``pnl`` is
    realised PnL in USD after costs.
    """

    __tablename__ = "bt_trades"
    __table_args__ = (
        CheckConstraint(
            "timestamp_exit IS NULL OR timestamp_exit >= timestamp_entry", name="exit_after_entry"
        ),
        CheckConstraint(
            "return_prob IS NULL OR (return_prob >= 0 AND return_prob <= 1)",
            name="return_prob_range",
        ),
        CheckConstraint(
            "risk_score IS NULL OR (risk_score >= 0 AND risk_score <= 1)", name="risk_score_range"
        ),
        CheckConstraint("qty_a >= 0 AND qty_b >= 0", name="qty_nonneg"),
        Index(
            "ix_bt_trades_run_id_pair_id_timestamp_entry", "run_id", "pair_id", "timestamp_entry"
        ),
    )

    trade_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = _run_fk()
    pair_id: Mapped[str] = mapped_column(String(64), nullable=False)
    timestamp_entry: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    timestamp_exit: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    side: Mapped[TradeSide] = mapped_column(_enum(TradeSide, "trade_side"), nullable=False)
    qty_a: Mapped[Decimal] = mapped_column(PRICE, nullable=False)
    qty_b: Mapped[Decimal] = mapped_column(PRICE, nullable=False)
    price_a: Mapped[Decimal] = mapped_column(PRICE, nullable=False)
    price_b: Mapped[Decimal] = mapped_column(PRICE, nullable=False)
    exit_price_a: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    exit_price_b: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    z_at_entry: Mapped[Decimal] = mapped_column(Z, nullable=False)
    z_at_exit: Mapped[Decimal | None] = mapped_column(Z, nullable=True)
    return_prob: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    risk_score: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    commission_bps: Mapped[Decimal | None] = mapped_column(BPS, nullable=True)
    slippage_bps: Mapped[Decimal | None] = mapped_column(BPS, nullable=True)
    cost_commission: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    cost_slippage: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    cost_spread: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    cost_swap: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    exit_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    pnl: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)


class BtDailyEquity(ProvenanceMixin, Base):
    """Daily equity and drawdown per run and pair (spec 004 ``bt_daily_equity``).

    ``dd`` is the drawdown from the running peak as a fraction (0.04 = 4 %).
    """

    __tablename__ = "bt_daily_equity"

    run_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("bt_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    pair_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    date: Mapped[_dt.date] = mapped_column(Date, primary_key=True)
    equity: Mapped[Decimal] = mapped_column(PRICE, nullable=False)
    dd: Mapped[Decimal] = mapped_column(RATIO, nullable=False)


class BtStressResult(ProvenanceMixin, Base):
    """Stress scenario KPIs per run and pair (spec 004 ``bt_stress_results``).

    ``scenario`` names the scenario and its parameter (e.g. ``vol_spike_k1.5``);
    ``scenario_params`` holds the parameters as data.
    """

    __tablename__ = "bt_stress_results"
    __table_args__ = (UniqueConstraint("run_id", "scenario", "pair_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[str] = _run_fk()
    scenario: Mapped[str] = mapped_column(String(64), nullable=False)
    pair_id: Mapped[str] = mapped_column(String(64), nullable=False)
    sharpe: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    max_dd: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    ann_return: Mapped[Decimal | None] = mapped_column(RATIO, nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    scenario_params: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )


# --------------------------------------------------------------------------------------------
# Models and signals
# --------------------------------------------------------------------------------------------


class ModelRegistry(TimestampMixin, Base):
    """A trained model bundle (AI1 + AI2 + feature schema + params), spec 004 ``model_registry``.

    At most one row per ``timeframe`` has ``status = 'active'`` (partial unique index);
    rollback (spec 004 §運用Runbook) switches the active row.
    """

    __tablename__ = "model_registry"
    __table_args__ = (
        Index(
            "uq_model_registry_active_timeframe",
            "timeframe",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )

    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    status: Mapped[ModelStatus] = mapped_column(
        _enum(ModelStatus, "model_status"),
        nullable=False,
        server_default=ModelStatus.CANDIDATE.value,
    )
    artifact_uri: Mapped[str] = mapped_column(Text, nullable=False)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    feature_schema_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    params_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    data_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    code_hash: Mapped[str | None] = mapped_column(HASH, nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    theta1: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    theta2: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    train_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    train_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    activated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class _SignalColumns:
    """Columns shared by live and historical signals."""

    pair_id: Mapped[str] = mapped_column(String(64), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    ts_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    z: Mapped[Decimal | None] = mapped_column(Z, nullable=True)
    return_prob: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    risk_score: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    position_scale: Mapped[Decimal | None] = mapped_column(PROB, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stream_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )


def _signal_checks() -> tuple[CheckConstraint, ...]:
    return (
        CheckConstraint(
            "return_prob IS NULL OR (return_prob >= 0 AND return_prob <= 1)",
            name="return_prob_range",
        ),
        CheckConstraint(
            "risk_score IS NULL OR (risk_score >= 0 AND risk_score <= 1)", name="risk_score_range"
        ),
        CheckConstraint(
            "position_scale IS NULL OR (position_scale >= 0 AND position_scale <= 1)",
            name="position_scale_range",
        ),
    )


class SignalLive(_SignalColumns, Base):
    """Latest signal per pair and timeframe (``signals_live``; upserted on each closed bar).

    ``ts_utc`` is the open time of the bar the signal was computed on; ``stream_id`` is the id
    of the matching entry in the Redis stream ``signals:stream``.
    """

    __tablename__ = "signals_live"
    __table_args__ = _signal_checks()

    pair_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class SignalHistory(_SignalColumns, Base):
    """Every emitted signal (``signals_history``; retention ``signals_history_months`` = 12)."""

    __tablename__ = "signals_history"
    __table_args__ = (
        *_signal_checks(),
        UniqueConstraint("pair_id", "timeframe", "ts_utc", "model_version"),
        Index("ix_signals_history_ts_utc", "ts_utc"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


# --------------------------------------------------------------------------------------------
# Users, incidents, execution logs
# --------------------------------------------------------------------------------------------


class User(TimestampMixin, Base):
    """A platform user; ``password_hash`` is an argon2 hash (never the password)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    role: Mapped[Role] = mapped_column(
        _enum(Role, "user_role"), nullable=False, server_default=Role.VIEWER.value
    )
    is_active: Mapped[bool] = mapped_column(nullable=False, server_default=text("true"))


class IncidentLog(Base):
    """An operational incident record (spec 004 §運用Runbook 手順 4 ``incident_logs``).

    ``level`` is e.g. ``soft_halt``, ``hard_halt``, ``flatten``, ``resume``, ``rollback``;
    ``reason`` is the operator's grounds; ``attachments`` lists screenshot/file references.
    """

    __tablename__ = "incident_logs"
    __table_args__ = (
        CheckConstraint(f"error_id IS NULL OR {_ERROR_ID_CHECK}", name="error_id_format"),
        Index("ix_incident_logs_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    recorded_by: Mapped[str] = mapped_column(String(128), nullable=False)
    level: Mapped[str] = mapped_column(String(32), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False, server_default="portfolio")
    pair_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    attachments: Mapped[list[Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ExecutionLog(Base):
    """A training/backtest execution record (spec 000 実行ログのスキーマ).

    ``target`` = ``{symbols, timeframes, strategies}``; ``operations`` = per-operation status,
    duration and details; ``resources`` = cpu/memory/disk; ``errors`` = list of error dicts;
    ``meta`` (column ``metadata``) = ``{triggered_by, server_id, version}``. Scheduled runs add
    ``schedule_info`` and ``comparison_with_previous``.
    """

    __tablename__ = "execution_logs"
    __table_args__ = (
        CheckConstraint(
            "timestamp_end IS NULL OR timestamp_end >= timestamp_start", name="end_after_start"
        ),
        Index("ix_execution_logs_type_start", "execution_type", "timestamp_start"),
    )

    execution_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    execution_type: Mapped[ExecutionType] = mapped_column(
        _enum(ExecutionType, "execution_type"), nullable=False
    )
    timestamp_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    timestamp_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_seconds: Mapped[Decimal | None] = mapped_column(Numeric(14, 3), nullable=True)
    status: Mapped[ExecutionStatus] = mapped_column(
        _enum(ExecutionStatus, "execution_status"),
        nullable=False,
        server_default=ExecutionStatus.RUNNING.value,
    )
    triggered_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    operations: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    resources: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    errors: Mapped[list[Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    schedule_info: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    comparison_with_previous: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)


# --------------------------------------------------------------------------------------------
# Audit schema: who, when, why, diff
# --------------------------------------------------------------------------------------------


class _AuditColumns:
    """Who (``actor``, ``actor_role``), when (``occurred_at``), why (``reason``), ``diff``."""

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    actor_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    diff: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ConfigChange(_AuditColumns, Base):
    """A config workflow transition (``audit.config_changes``, spec 004 §設定変更ワークフロー).

    ``version`` follows ``yyyyMMdd_HHmm + short_sha``; ``approvers`` lists usernames.
    """

    __tablename__ = "config_changes"
    __table_args__ = (
        Index("ix_config_changes_config_name_occurred_at", "config_name", "occurred_at"),
        {"schema": AUDIT_SCHEMA},
    )

    change_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    config_name: Mapped[str] = mapped_column(String(128), nullable=False)
    state: Mapped[ConfigChangeState] = mapped_column(
        _enum(ConfigChangeState, "config_change_state"), nullable=False
    )
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    from_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checksum: Mapped[str | None] = mapped_column(HASH, nullable=True)
    merge_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    env: Mapped[str | None] = mapped_column(String(8), nullable=True)
    risk_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    approvers: Mapped[list[Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )


class AnalyticsAction(_AuditColumns, Base):
    """An ops/analytics action (``audit.analytics_actions``): every ``/ops/*`` call, report and
    alert request (spec 004 §運用Runbook 監査, §ml-assets-analytics セキュリティ/監査).

    ``action`` is e.g. ``ops.halt``; ``scope``/``pair_id`` the target; ``period_*`` the period.
    """

    __tablename__ = "analytics_actions"
    __table_args__ = (
        Index("ix_analytics_actions_action_occurred_at", "action", "occurred_at"),
        {"schema": AUDIT_SCHEMA},
    )

    action: Mapped[str] = mapped_column(String(64), nullable=False)
    scope: Mapped[str | None] = mapped_column(String(16), nullable=True)
    pair_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RetrainRun(_AuditColumns, Base):
    """A model retraining event (``audit.retrain_runs``): trigger, outcome, metrics."""

    __tablename__ = "retrain_runs"
    __table_args__ = (
        CheckConstraint(
            "finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at",
            name="finished_after_started",
        ),
        {"schema": AUDIT_SCHEMA},
    )

    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trigger: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[ExecutionStatus] = mapped_column(
        _enum(ExecutionStatus, "retrain_status"), nullable=False
    )
    execution_id: Mapped[str | None] = mapped_column(String(96), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )


async def ensure_canonical_partitions(
    connection: AsyncConnection | AsyncSession, start: datetime, end: datetime
) -> int:
    """Create the monthly ``canonical_bars`` partitions covering ``[start, end)``.

    Calls the SQL function ``pairdesk_ensure_canonical_partitions`` installed by the initial
    migration. Rows already parked in the DEFAULT partition for a new month are moved into it.
    Under the TimescaleDB layout it does nothing and returns 0. Runs in the caller's
    transaction (commit to keep the partitions).

    Parameters
    ----------
    connection : AsyncConnection or AsyncSession
        Open connection/session on the migrated database.
    start, end : datetime
        Timezone-aware UTC bounds; months are UTC calendar months.

    Returns
    -------
    int
        Number of partitions created.

    Raises
    ------
    ValueError
        If ``start``/``end`` are naive or ``end < start``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC)")
    if end < start:
        raise ValueError("end must not be before start")
    stmt = text("SELECT pairdesk_ensure_canonical_partitions(:start, :end)")
    result = await connection.execute(stmt, {"start": start, "end": end})
    return int(result.scalar_one())


async def canonical_storage(connection: AsyncConnection | AsyncSession) -> str:
    """Report the physical layout of ``canonical_bars`` on a migrated database.

    Returns
    -------
    str
        ``"timescale"`` (hypertable), ``"native"`` (range-partitioned by month) or ``"plain"``
        (an ordinary table, e.g. one built by ``metadata.create_all``).
    """
    if await _has_timescale(connection):
        hyper = await connection.execute(
            text(
                "SELECT 1 FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'canonical_bars'"
            )
        )
        if hyper.first() is not None:
            return "timescale"
    partitioned = await connection.execute(
        text("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('canonical_bars')")
    )
    return "native" if partitioned.first() is not None else "plain"


async def _has_timescale(connection: AsyncConnection | AsyncSession) -> bool:
    result = await connection.execute(
        text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    )
    return result.first() is not None

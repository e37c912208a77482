"""Initial schema: every Pairdesk table, the ``audit`` schema, and the canonical-bar storage.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 10:15:36.876414+00:00

Tables: canonical_bars, bt_runs, bt_summary, bt_trades, bt_daily_equity, bt_stress_results,
model_registry, signals_live, signals_history, users, incident_logs, execution_logs, and
audit.config_changes, audit.analytics_actions, audit.retrain_runs (see pairdesk.common.models).

canonical_bars storage
----------------------
Chosen by the ``canonical_storage`` option (``config.attributes``, ``-x canonical_storage=``,
or env ``PAIRDESK_CANONICAL_STORAGE``): ``auto`` (default), ``timescale`` or ``native``.

- ``timescale`` (``auto`` picks it when the ``timescaledb`` extension is installed, or is
  available and preloaded): a hypertable on ``ts_utc`` with 1-month chunks, compression
  segmented by ``symbol, timeframe`` ordered by ``ts_utc DESC``, and a compression policy
  compressing chunks older than 90 days (late revisions of recent bars stay cheap to write).
- ``native``: ``PARTITION BY RANGE (ts_utc)`` with one partition per UTC calendar month named
  ``canonical_bars_pYYYYMM`` plus a DEFAULT partition ``canonical_bars_default``.
  First partitions: the migration creates the 36 months before the current UTC month
  (spec 004 ``canonical_months`` retention = 36), the current month and the next 3 months.
  Rows outside that range are never rejected: they land in the default partition. The function
  ``pairdesk_ensure_canonical_partitions(from, to)`` (wrapped by
  ``pairdesk.common.models.ensure_canonical_partitions``) creates any missing month partitions
  for a range, moving rows already parked in the default partition into them; ingest calls
  it before writing a range. Under TimescaleDB the same function exists and returns 0.

``pairdesk.common.models.canonical_storage`` reports which layout a database has.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_SCHEMA = "audit"
PARTITION_MONTHS_BACK = 36
PARTITION_MONTHS_AHEAD = 3
COMPRESS_AFTER = "90 days"

ENSURE_PARTITIONS_FN = """
CREATE OR REPLACE FUNCTION pairdesk_ensure_canonical_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    m timestamptz := date_trunc('month', p_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    nxt timestamptz;
    part text;
    created integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table
                   WHERE partrelid = to_regclass('canonical_bars')) THEN
        RETURN 0;  -- hypertable layout: TimescaleDB creates its chunks itself
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pairdesk_canonical_partitions'));
    WHILE m < p_to LOOP
        nxt := ((m AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        part := 'canonical_bars_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE canonical_bars INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format('WITH moved AS (DELETE FROM canonical_bars_default '
                           'WHERE ts_utc >= %L AND ts_utc < %L RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved', m, nxt, part);
            EXECUTE format('ALTER TABLE canonical_bars ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           part, m, nxt);
            created := created + 1;
        END IF;
        m := nxt;
    END LOOP;
    RETURN created;
END
$fn$;
"""


def _storage_mode() -> str:
    """Resolve ``auto|timescale|native`` to the layout to build on this server."""
    requested = (
        context.config.attributes.get("canonical_storage")
        or context.get_x_argument(as_dictionary=True).get("canonical_storage")
        or os.environ.get("PAIRDESK_CANONICAL_STORAGE")
        or "auto"
    )
    if requested not in ("auto", "timescale", "native"):
        raise ValueError(f"canonical_storage must be auto|timescale|native, got {requested!r}")
    if requested != "auto":
        return str(requested)
    if context.is_offline_mode():
        return "native"  # no server to inspect when rendering SQL (`alembic upgrade --sql`)
    bind = op.get_bind()
    installed = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    ).first()
    if installed:
        return "timescale"
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    preload = bind.execute(sa.text("SELECT current_setting('shared_preload_libraries')")).scalar()
    return "timescale" if available and "timescaledb" in str(preload or "") else "native"


def _create_canonical_bars() -> None:
    mode = _storage_mode()
    table_kw: dict[str, str] = {}
    if mode == "native":
        table_kw["postgresql_partition_by"] = "RANGE (ts_utc)"
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.create_table(
        "canonical_bars",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("ts_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("high", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("low", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("close", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("volume", sa.Numeric(precision=28, scale=8), nullable=True),
        sa.Column(
            "quality_flag",
            sa.Enum(
                "ok",
                "missing",
                "outlier",
                "resampled",
                "conflict",
                "stale",
                "revised",
                name="quality_flag",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="ok",
            nullable=False,
        ),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("ingest_run_id", sa.String(length=64), nullable=False),
        sa.Column("checksum", sa.String(length=128), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "ingested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "symbol = upper(symbol)", name=op.f("canonical_bars_symbol_upper_check")
        ),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts_utc", name=op.f("canonical_bars_pkey")),
        **table_kw,
    )
    op.create_index(
        "ix_canonical_bars_ingest_run_id", "canonical_bars", ["ingest_run_id"], unique=False
    )
    op.execute(ENSURE_PARTITIONS_FN)
    if mode == "native":
        op.execute("CREATE TABLE canonical_bars_default PARTITION OF canonical_bars DEFAULT")
        op.execute(
            "SELECT pairdesk_ensure_canonical_partitions("
            f"date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '{PARTITION_MONTHS_BACK} months', "
            f"date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '{PARTITION_MONTHS_AHEAD + 1} months')"
        )
    else:
        op.execute(
            "SELECT create_hypertable('canonical_bars', 'ts_utc', "
            "chunk_time_interval => INTERVAL '1 month', if_not_exists => TRUE)"
        )
        op.execute(
            "ALTER TABLE canonical_bars SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'symbol, timeframe', "
            "timescaledb.compress_orderby = 'ts_utc DESC')"
        )
        op.execute(f"SELECT add_compression_policy('canonical_bars', INTERVAL '{COMPRESS_AFTER}')")


def _drop_canonical_bars() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS pairdesk_ensure_canonical_partitions(timestamptz, timestamptz)"
    )
    # Dropping the parent drops every partition (or every hypertable chunk and its policy).
    op.drop_table("canonical_bars")


def upgrade() -> None:
    """Apply this revision."""
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {AUDIT_SCHEMA}")
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "analytics_actions",
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=True),
        sa.Column("pair_id", sa.String(length=64), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=32), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "diff",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("analytics_actions_pkey")),
        schema="audit",
    )
    op.create_index(
        "ix_analytics_actions_action_occurred_at",
        "analytics_actions",
        ["action", "occurred_at"],
        unique=False,
        schema="audit",
    )
    op.create_table(
        "config_changes",
        sa.Column("change_id", sa.String(length=64), nullable=False),
        sa.Column("config_name", sa.String(length=128), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "draft",
                "pr_created",
                "approved",
                "merged",
                "applied",
                "rejected",
                "rollback_requested",
                "rolled_back",
                name="config_change_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("checksum", sa.String(length=128), nullable=True),
        sa.Column("merge_sha", sa.String(length=64), nullable=True),
        sa.Column("env", sa.String(length=8), nullable=True),
        sa.Column("risk_note", sa.Text(), nullable=True),
        sa.Column(
            "approvers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "diff",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("config_changes_pkey")),
        schema="audit",
    )
    op.create_index(
        op.f("ix_audit_config_changes_change_id"),
        "config_changes",
        ["change_id"],
        unique=False,
        schema="audit",
    )
    op.create_index(
        "ix_config_changes_config_name_occurred_at",
        "config_changes",
        ["config_name", "occurred_at"],
        unique=False,
        schema="audit",
    )
    op.create_table(
        "retrain_runs",
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "RUNNING",
                "SUCCESS",
                "PARTIAL_SUCCESS",
                "FAILED",
                name="retrain_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("execution_id", sa.String(length=96), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "diff",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at",
            name=op.f("retrain_runs_finished_after_started_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("retrain_runs_pkey")),
        schema="audit",
    )
    op.create_table(
        "bt_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                name="bt_run_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("error_id", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "request",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("feature_schema_hash", sa.String(length=128), nullable=True),
        sa.Column("data_hash", sa.String(length=128), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("params_hash", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "error_id IS NULL OR error_id ~ '^(DATA|CORE|BT|ANALYTICS|OPS|UI)_[A-Z0-9]+_[A-Z0-9_]+$'",
            name=op.f("bt_runs_error_id_format_check"),
        ),
        sa.CheckConstraint(
            "finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at",
            name=op.f("bt_runs_finished_after_started_check"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("bt_runs_pkey")),
        sa.UniqueConstraint("idempotency_key", name=op.f("bt_runs_idempotency_key_key")),
    )
    op.create_index(
        "ix_bt_runs_status_created_at", "bt_runs", ["status", "created_at"], unique=False
    )
    _create_canonical_bars()
    op.create_table(
        "execution_logs",
        sa.Column("execution_id", sa.String(length=96), nullable=False),
        sa.Column(
            "execution_type",
            sa.Enum(
                "SYMBOL_ADDITION",
                "SCHEDULED",
                "MANUAL",
                "EMERGENCY",
                "SCHEDULED_BACKTEST",
                "SCHEDULED_TRAINING",
                "EMERGENCY_RETRAIN",
                name="execution_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("timestamp_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timestamp_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Numeric(precision=14, scale=3), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "RUNNING",
                "SUCCESS",
                "PARTIAL_SUCCESS",
                "FAILED",
                name="execution_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="RUNNING",
            nullable=False,
        ),
        sa.Column("triggered_by", sa.String(length=128), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column(
            "target",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "operations",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "resources",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "errors",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("schedule_info", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "comparison_with_previous", postgresql.JSONB(astext_type=sa.Text()), nullable=True
        ),
        sa.CheckConstraint(
            "timestamp_end IS NULL OR timestamp_end >= timestamp_start",
            name=op.f("execution_logs_end_after_start_check"),
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("execution_logs_pkey")),
    )
    op.create_index(
        "ix_execution_logs_type_start",
        "execution_logs",
        ["execution_type", "timestamp_start"],
        unique=False,
    )
    op.create_table(
        "incident_logs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("level", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), server_default="portfolio", nullable=False),
        sa.Column("pair_id", sa.String(length=64), nullable=True),
        sa.Column("error_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "attachments",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "error_id IS NULL OR error_id ~ '^(DATA|CORE|BT|ANALYTICS|OPS|UI)_[A-Z0-9]+_[A-Z0-9_]+$'",
            name=op.f("incident_logs_error_id_format_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("incident_logs_pkey")),
    )
    op.create_index("ix_incident_logs_occurred_at", "incident_logs", ["occurred_at"], unique=False)
    op.create_table(
        "model_registry",
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "candidate",
                "active",
                "retired",
                "rolled_back",
                name="model_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="candidate",
            nullable=False,
        ),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("feature_schema_hash", sa.String(length=128), nullable=True),
        sa.Column("params_hash", sa.String(length=128), nullable=True),
        sa.Column("data_hash", sa.String(length=128), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("theta1", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("theta2", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("train_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("train_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_by", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("model_version", name=op.f("model_registry_pkey")),
    )
    op.create_index(
        "uq_model_registry_active_timeframe",
        "model_registry",
        ["timeframe"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "signals_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("pair_id", sa.String(length=64), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("ts_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("z", sa.Numeric(precision=10, scale=5), nullable=True),
        sa.Column("return_prob", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("risk_score", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("position_scale", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("stream_id", sa.String(length=32), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "position_scale IS NULL OR (position_scale >= 0 AND position_scale <= 1)",
            name=op.f("signals_history_position_scale_range_check"),
        ),
        sa.CheckConstraint(
            "return_prob IS NULL OR (return_prob >= 0 AND return_prob <= 1)",
            name=op.f("signals_history_return_prob_range_check"),
        ),
        sa.CheckConstraint(
            "risk_score IS NULL OR (risk_score >= 0 AND risk_score <= 1)",
            name=op.f("signals_history_risk_score_range_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("signals_history_pkey")),
        sa.UniqueConstraint(
            "pair_id",
            "timeframe",
            "ts_utc",
            "model_version",
            name=op.f("signals_history_pair_id_timeframe_ts_utc_model_version_key"),
        ),
    )
    op.create_index("ix_signals_history_ts_utc", "signals_history", ["ts_utc"], unique=False)
    op.create_table(
        "signals_live",
        sa.Column("pair_id", sa.String(length=64), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ts_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("z", sa.Numeric(precision=10, scale=5), nullable=True),
        sa.Column("return_prob", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("risk_score", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("position_scale", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("stream_id", sa.String(length=32), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "position_scale IS NULL OR (position_scale >= 0 AND position_scale <= 1)",
            name=op.f("signals_live_position_scale_range_check"),
        ),
        sa.CheckConstraint(
            "return_prob IS NULL OR (return_prob >= 0 AND return_prob <= 1)",
            name=op.f("signals_live_return_prob_range_check"),
        ),
        sa.CheckConstraint(
            "risk_score IS NULL OR (risk_score >= 0 AND risk_score <= 1)",
            name=op.f("signals_live_risk_score_range_check"),
        ),
        sa.PrimaryKeyConstraint("pair_id", "timeframe", name=op.f("signals_live_pkey")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "viewer",
                "editor",
                "approver",
                "admin",
                name="user_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="viewer",
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("users_pkey")),
        sa.UniqueConstraint("username", name=op.f("users_username_key")),
    )
    op.create_table(
        "bt_daily_equity",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("pair_id", sa.String(length=64), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("equity", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("dd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("feature_schema_hash", sa.String(length=128), nullable=True),
        sa.Column("data_hash", sa.String(length=128), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("params_hash", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["bt_runs.run_id"],
            name=op.f("bt_daily_equity_run_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "pair_id", "date", name=op.f("bt_daily_equity_pkey")),
    )
    op.create_table(
        "bt_stress_results",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("scenario", sa.String(length=64), nullable=False),
        sa.Column("pair_id", sa.String(length=64), nullable=False),
        sa.Column("sharpe", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("max_dd", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("ann_return", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "scenario_params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("feature_schema_hash", sa.String(length=128), nullable=True),
        sa.Column("data_hash", sa.String(length=128), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("params_hash", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["bt_runs.run_id"],
            name=op.f("bt_stress_results_run_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("bt_stress_results_pkey")),
        sa.UniqueConstraint(
            "run_id",
            "scenario",
            "pair_id",
            name=op.f("bt_stress_results_run_id_scenario_pair_id_key"),
        ),
    )
    op.create_index(
        op.f("ix_bt_stress_results_run_id"), "bt_stress_results", ["run_id"], unique=False
    )
    op.create_table(
        "bt_summary",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("pair_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        sa.Column("trades", sa.Integer(), nullable=False),
        sa.Column("win_rate", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("e_per_trade", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("ann_return", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("sharpe", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("max_dd", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("calmar", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("trades_per_year", sa.Numeric(precision=12, scale=4), nullable=True),
        sa.Column("pnl_std", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("halt_rate", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("theta1", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("theta2", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column(
            "ci",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("feature_schema_hash", sa.String(length=128), nullable=True),
        sa.Column("data_hash", sa.String(length=128), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("params_hash", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("trades >= 0", name=op.f("bt_summary_trades_nonneg_check")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["bt_runs.run_id"], name=op.f("bt_summary_run_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("bt_summary_pkey")),
        sa.UniqueConstraint(
            "run_id", "pair_id", "period", name=op.f("bt_summary_run_id_pair_id_period_key")
        ),
    )
    op.create_index(op.f("ix_bt_summary_run_id"), "bt_summary", ["run_id"], unique=False)
    op.create_table(
        "bt_trades",
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("pair_id", sa.String(length=64), nullable=False),
        sa.Column("timestamp_entry", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timestamp_exit", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "side",
            sa.Enum(
                "LONG_SPREAD",
                "SHORT_SPREAD",
                name="trade_side",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("qty_a", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("qty_b", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("price_a", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("price_b", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("exit_price_a", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("exit_price_b", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("z_at_entry", sa.Numeric(precision=10, scale=5), nullable=False),
        sa.Column("z_at_exit", sa.Numeric(precision=10, scale=5), nullable=True),
        sa.Column("return_prob", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("risk_score", sa.Numeric(precision=6, scale=4), nullable=True),
        sa.Column("commission_bps", sa.Numeric(precision=8, scale=4), nullable=True),
        sa.Column("slippage_bps", sa.Numeric(precision=8, scale=4), nullable=True),
        sa.Column("cost_commission", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("cost_slippage", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("cost_spread", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("cost_swap", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("exit_reason", sa.String(length=32), nullable=True),
        sa.Column("pnl", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("feature_schema_hash", sa.String(length=128), nullable=True),
        sa.Column("data_hash", sa.String(length=128), nullable=True),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("params_hash", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("qty_a >= 0 AND qty_b >= 0", name=op.f("bt_trades_qty_nonneg_check")),
        sa.CheckConstraint(
            "return_prob IS NULL OR (return_prob >= 0 AND return_prob <= 1)",
            name=op.f("bt_trades_return_prob_range_check"),
        ),
        sa.CheckConstraint(
            "risk_score IS NULL OR (risk_score >= 0 AND risk_score <= 1)",
            name=op.f("bt_trades_risk_score_range_check"),
        ),
        sa.CheckConstraint(
            "timestamp_exit IS NULL OR timestamp_exit >= timestamp_entry",
            name=op.f("bt_trades_exit_after_entry_check"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["bt_runs.run_id"], name=op.f("bt_trades_run_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("bt_trades_pkey")),
    )
    op.create_index(op.f("ix_bt_trades_run_id"), "bt_trades", ["run_id"], unique=False)
    op.create_index(
        "ix_bt_trades_run_id_pair_id_timestamp_entry",
        "bt_trades",
        ["run_id", "pair_id", "timestamp_entry"],
        unique=False,
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    """Revert this revision."""
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index("ix_bt_trades_run_id_pair_id_timestamp_entry", table_name="bt_trades")
    op.drop_index(op.f("ix_bt_trades_run_id"), table_name="bt_trades")
    op.drop_table("bt_trades")
    op.drop_index(op.f("ix_bt_summary_run_id"), table_name="bt_summary")
    op.drop_table("bt_summary")
    op.drop_index(op.f("ix_bt_stress_results_run_id"), table_name="bt_stress_results")
    op.drop_table("bt_stress_results")
    op.drop_table("bt_daily_equity")
    op.drop_table("users")
    op.drop_table("signals_live")
    op.drop_index("ix_signals_history_ts_utc", table_name="signals_history")
    op.drop_table("signals_history")
    op.drop_index(
        "uq_model_registry_active_timeframe",
        table_name="model_registry",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_table("model_registry")
    op.drop_index("ix_incident_logs_occurred_at", table_name="incident_logs")
    op.drop_table("incident_logs")
    op.drop_index("ix_execution_logs_type_start", table_name="execution_logs")
    op.drop_table("execution_logs")
    _drop_canonical_bars()
    op.drop_index("ix_bt_runs_status_created_at", table_name="bt_runs")
    op.drop_table("bt_runs")
    op.drop_table("retrain_runs", schema="audit")
    op.drop_index(
        "ix_config_changes_config_name_occurred_at", table_name="config_changes", schema="audit"
    )
    op.drop_index(
        op.f("ix_audit_config_changes_change_id"), table_name="config_changes", schema="audit"
    )
    op.drop_table("config_changes", schema="audit")
    op.drop_index(
        "ix_analytics_actions_action_occurred_at", table_name="analytics_actions", schema="audit"
    )
    op.drop_table("analytics_actions", schema="audit")
    # ### end Alembic commands ###
    op.execute(f"DROP SCHEMA IF EXISTS {AUDIT_SCHEMA}")

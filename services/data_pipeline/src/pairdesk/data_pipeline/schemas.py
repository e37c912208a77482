"""Request and response models of the data_pipeline API (spec 004 §data-assets-pipeline 仕様 v1,
§監視・運用 (data pipeline) v1, §データソース抽象化レイヤ v1 ``canonical_bar``).

Times are UTC (RFC 3339); ``ts_utc`` is a bar's open time. Prices are floats (the database keeps
them as ``numeric(20,8)``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pairdesk.common.service import Page
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BarPage",
    "BarRead",
    "IngestRunCreate",
    "IngestRunRead",
    "QuarantineRead",
    "SymbolIngestRead",
    "WatermarkRead",
]


class IngestRunCreate(BaseModel):
    """``POST /data/ingest/runs`` body: ingest a file drop into the store and PostgreSQL."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["file"] = Field(description="Data source; only file drops for now")
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Drop folder (inside one of PAIRDESK_DROP_DIRS) holding "
        "<SYMBOL>_<timeframe>.csv|.csv.gz|.parquet files",
    )
    timeframe: str = Field(
        pattern=r"^[0-9]{1,4}[mhd]$",
        description="Bar timeframe, one of pipeline_policy timeframe_allowed",
        examples=["1h"],
    )
    symbols: list[str] | None = Field(
        default=None,
        max_length=200,
        description="Symbols to ingest (default: every file of the timeframe)",
    )


class SymbolIngestRead(BaseModel):
    """What one symbol's ingest did.

    DQ counters (``outliers`` ... ``off_session``) describe the symbol's whole stored series
    after the merge; ``rows_read`` / ``dedupe_drops`` this drop; ``db_*`` the rows of
    ``canonical_bars`` this run inserted, changed or removed.
    """

    symbol: str
    files: list[str]
    rows_read: int
    dedupe_drops: int = Field(description="In-drop duplicates + stored rows replaced")
    dropped_nonpositive: int
    ohlc_inconsistent: int
    outliers: int
    spikes: int
    expected: int
    imputed: int
    missing: int
    off_session: int
    missing_rate: float = Field(description="(imputed + missing) / expected over the series")
    outlier_rate: float = Field(description="outliers / expected over the series")
    partitions_written: int
    partitions_unchanged: int
    quarantined_months: list[str]
    first_ts: datetime
    last_ts: datetime
    watermark_ts: datetime
    db_inserted: int
    db_updated: int
    db_deleted: int


class IngestRunRead(BaseModel):
    """Report of one ingest run (``POST /data/ingest/runs``)."""

    ingest_run_id: str = Field(description="Deterministic id of the drop's content")
    execution_id: str = Field(description="execution_logs row of this run")
    source: str
    timeframe: str
    path: str
    status: Literal["SUCCESS"]
    rows_changed: int = Field(description="canonical_bars rows inserted + updated + deleted")
    watermark_ts: datetime | None = Field(description="Latest bar open time over the symbols")
    duration_seconds: float
    symbols: list[SymbolIngestRead]


class WatermarkRead(BaseModel):
    """Watermark of one symbol × timeframe in PostgreSQL and in the Parquet store."""

    symbol: str
    timeframe: str
    db_last_ts: datetime | None = Field(description="Latest ts_utc in canonical_bars")
    db_bar_count: int
    db_source_id: str | None = Field(description="source_id of the latest canonical bar")
    store_last_ts: datetime | None = Field(description="Latest last_ts over __meta.json files")
    store_bar_count: int = Field(description="Rows over the store partitions (__meta.json)")
    store_partitions: int
    quarantined_partitions: int
    in_sync: bool = Field(description="db_last_ts == store_last_ts")
    lag_bars: int | None = Field(
        description="Expected (in-session) closed bars after db_last_ts up to now"
    )
    lag_seconds: float | None = Field(description="Now minus the close time of db_last_ts's bar")


class QuarantineRead(BaseModel):
    """One quarantined partition (``__quarantine.json``, spec 004 §監視・運用 隔離)."""

    symbol: str
    timeframe: str
    partition: str = Field(description="UTC month YYYY-MM")
    reason: str
    missing_rate: float
    outlier_rate: float
    thresholds: dict[str, float]
    time_range_start: datetime
    time_range_end: datetime
    counts: dict[str, int]


class BarRead(BaseModel):
    """One ``canonical_bars`` row."""

    symbol: str
    timeframe: str
    ts_utc: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    quality_flag: str
    imputed: bool
    spike: bool
    quarantined: bool
    source_id: str
    ingest_run_id: str
    ingested_at: datetime


BarPage = Page[BarRead]

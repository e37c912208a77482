"""data_pipeline logic: file-drop ingest into the Parquet store and ``canonical_bars``, watermarks,
quarantine and bar reads (spec 004 §data-assets-pipeline 仕様 v1, §監視・運用 / エラー時の振る舞い
(data pipeline) v1, §データソース抽象化レイヤ v1 ``canonical_bar``; spec 000 実行ログ).

Ingest run (``POST /data/ingest/runs``)
---------------------------------------
1. The drop folder must resolve (symlinks followed) inside an allowed root, else 422
   ``DATA_REQ_PATH``.
2. In a worker thread, under an exclusive file lock on the store: the research ingest
   (:func:`pairdesk.research.ingest.ingest`, the function behind ``pairdesk ingest`` /
   :func:`pairdesk.research.pipeline.run_ingest`; calendars from every configured universe file,
   DQ rules from ``pipeline_policy.yaml``) canonicalises, runs DQ, quarantines and writes the store.
   It validates the whole drop before writing anything; a bad drop is a 422 ``DATA_INGEST_*``.
3. The partitions to mirror into PostgreSQL are those whose ``data_sha256`` changed plus those
   holding rows of this drop (``__meta.json`` ``ingest_run_ids``). The second set makes a re-post
   repair PostgreSQL after a failed database step (the store was already up to date).
4. In one transaction: each such partition is mirrored into ``canonical_bars`` (upsert that only
   rewrites rows whose content differs, and deletion of rows the partition no longer holds), and
   one ``execution_logs`` row (spec 000 schema, type ``MANUAL``) is written.
5. After the commit, when rows changed, ``bars:closed`` is announced on the bus.

Re-posting the same drop rewrites no file and changes no row (``rows_changed == 0``).
``canonical_bars.metadata`` holds ``{"imputed", "spike", "quarantined"}`` of the store row and
partition.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.metadata
import re
import resource
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
import numpy as np
import pandas as pd
from pairdesk.common.bus import SignalBus
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import get_logger
from pairdesk.common.models import ExecutionLog, ExecutionStatus, ExecutionType
from pairdesk.common.observability import (
    DATA_DEDUPE_DROPS_TOTAL,
    DATA_INGEST_SUCCESS_RATE,
    DATA_MISSING_RATE,
    DATA_OUTLIER_RATE,
    DATA_PIPELINE_LAG_SECONDS,
    DATA_WATERMARK_LAG_BARS,
    DQ_FAIL_TOTAL,
)
from pairdesk.data_pipeline import repository as repo
from pairdesk.data_pipeline.schemas import (
    BarPage,
    BarRead,
    IngestRunCreate,
    IngestRunRead,
    QuarantineRead,
    SymbolIngestRead,
    WatermarkRead,
)
from pairdesk.data_pipeline.settings import DataPipelineSettings
from pairdesk.quant.sessions import SessionCalendar, timeframe_to_timedelta
from pairdesk.research import store as st
from pairdesk.research.config import ConfigError
from pairdesk.research.ingest import IngestError, IngestReport, ingest
from pairdesk.research.settings import load_settings
from pairdesk.research.universe import universe_calendars
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "DOMAIN",
    "SOURCE_FILE",
    "get_bars",
    "ingest_error",
    "lag_to_now",
    "list_quarantine",
    "list_watermarks",
    "load_calendars",
    "resolve_drop_path",
    "run_file_ingest",
]

DOMAIN: Final = "DATA"
SOURCE_FILE: Final = "file"
_LOCK_FILE: Final = ".ingest.lock"
_PRICES: Final = ("open", "high", "low", "close")
_ALWAYS_OPEN: Final = SessionCalendar.from_mapping({"always_open": True})
_log = get_logger("pairdesk.data_pipeline")

# IngestError message -> CODE of DATA_INGEST_{CODE} (first match wins).
_INGEST_CODES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"folder not found|no <SYMBOL>_|unknown symbol"), "NOTFOUND"),
    (re.compile(r"missing column|no data rows|cannot read file"), "SCHEMA"),
    (re.compile(r"ts_utc"), "TIMESTAMP"),
    (re.compile(r"price|non-numeric"), "PRICE"),
    (re.compile(r"invalid timeframe"), "TIMEFRAME"),
    (re.compile(r"session calendar"), "CALENDAR"),
)


# ------------------------------------------------------------------------------------ helpers
def resolve_drop_path(raw: str, roots: Sequence[Path]) -> Path:
    """Resolve a requested drop folder and check it lies inside an allowed root.

    Parameters
    ----------
    raw : str
        Folder as requested (absolute, or relative to the working directory).
    roots : sequence of Path
        Allowed roots, already resolved (``PAIRDESK_DROP_DIRS``).

    Returns
    -------
    Path
        The resolved folder (symlinks followed).

    Raises
    ------
    ApiError
        422 ``DATA_REQ_PATH`` when the resolved path is outside every root (``..``, absolute
        paths elsewhere and symlinks pointing out included).
    """
    resolved = Path(raw).expanduser().resolve()
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    raise ApiError(
        error_id(DOMAIN, "REQ", "PATH"),
        "path is outside the allowed drop folders",
        status_code=422,
        details={"allowed_roots": [str(r) for r in roots]},
    )


def ingest_error(exc: Exception) -> ApiError:
    """Map a research-ingest failure to a 422 ``DATA_INGEST_{CODE}`` error.

    ``CODE`` is ``NOTFOUND`` (folder, file or symbol), ``SCHEMA`` (columns, empty or unreadable
    file), ``TIMESTAMP`` (unparsable or off-grid ``ts_utc``), ``PRICE`` (NaN, non-numeric,
    infinite or all non-positive prices), ``TIMEFRAME`` (malformed or not in
    ``timeframe_allowed``), ``CALENDAR`` (symbol without a universe calendar) or ``INVALID``.
    The message is the ingest's own one-line message (file, column, row and value).
    """
    message = str(exc)
    if isinstance(exc, ConfigError):
        code = "TIMEFRAME"
    else:
        code = next((c for pat, c in _INGEST_CODES if pat.search(message)), "INVALID")
    return ApiError(error_id(DOMAIN, "INGEST", code), message, status_code=422)


def load_calendars(universe_files: Sequence[Path]) -> dict[str, SessionCalendar]:
    """Session calendar of every leg symbol in ``universe_files`` (later files win).

    Raises
    ------
    ConfigError
        A universe file is missing or malformed.
    """
    calendars: dict[str, SessionCalendar] = {}
    for path in universe_files:
        calendars.update(universe_calendars(path))  # pair legs and ``symbols:`` entries
    return calendars


def lag_to_now(
    last_ts: datetime, timeframe: str, calendar: SessionCalendar | None, now: datetime
) -> tuple[int, float]:
    """Watermark lag of a series whose latest bar opened at ``last_ts``.

    Returns
    -------
    (bars, seconds) : (int, float)
        ``bars``: expected (in-session) bars that have closed by ``now`` after ``last_ts``
        (``data_watermark_lag_bars``); ``seconds``: ``now`` minus the close time of the
        ``last_ts`` bar, floored at 0 (``data_pipeline_lag_seconds``).
    """
    step = timeframe_to_timedelta(timeframe).to_pytimedelta()
    seconds = max((now - (last_ts + step)).total_seconds(), 0.0)
    start = last_ts + step
    end = now - step + timedelta(microseconds=1)  # bars open at <= now - step have closed
    if end <= start:
        return 0, seconds
    cal = calendar or _ALWAYS_OPEN
    return len(cal.expected_bar_opens(start, end, timeframe)), seconds


def _month_bounds(months: Sequence[str]) -> tuple[datetime, datetime]:
    first, last = min(months), max(months)
    lo = datetime(int(first[:4]), int(first[5:7]), 1, tzinfo=UTC)
    y, m = int(last[:4]), int(last[5:7])
    hi = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    return lo, hi


def _month_of(ts: datetime) -> str:
    utc = ts.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def _iso_dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _version() -> str:
    try:
        return importlib.metadata.version("pairdesk-data-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------- store (thread side)
@dataclass(frozen=True)
class _Partition:
    sha: str | None
    run_ids: frozenset[str]
    quarantined: bool


@dataclass
class _SymbolSync:
    """The partitions of one symbol to mirror into PostgreSQL, with their rows."""

    months: list[str]
    bars: repo.BarColumns
    newly_quarantined: int = 0

    @property
    def symbol(self) -> str:
        return self.bars.symbol


def _partitions(store: Path, timeframe: str, symbol: str) -> dict[str, _Partition]:
    out: dict[str, _Partition] = {}
    for month in st.list_partitions(store, timeframe, symbol):
        pdir = st.partition_dir(store, timeframe, symbol, month)
        meta = st.read_json(pdir / st.META_FILE) or {}
        out[month] = _Partition(
            sha=meta.get("data_sha256"),
            run_ids=frozenset(meta.get("ingest_run_ids") or ()),
            quarantined=(pdir / st.QUARANTINE_FILE).is_file(),
        )
    return out


def _store_symbols(store: Path, timeframe: str) -> list[str]:
    root = store / timeframe
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _append_partition(bars: repo.BarColumns, store: Path, month: str, quarantined: bool) -> None:
    """Append the rows of one store partition to ``bars``."""
    df = st.read_partition(st.partition_file(store, bars.timeframe, bars.symbol, month))
    n = len(df)
    bars.ts_utc.extend(pd.DatetimeIndex(df["ts_utc"]).to_pydatetime().tolist())
    for col in _PRICES:
        getattr(bars, col).extend(df[col].to_numpy(dtype=np.float64).tolist())
    volume = df["volume"].to_numpy(dtype=np.float64)
    bars.volume.extend([float(v) if np.isfinite(v) else None for v in volume])
    bars.quality_flag.extend(df["quality_flag"].astype(str).tolist())
    bars.source_id.extend(df["source_id"].astype(str).tolist())
    bars.ingest_run_id.extend(df["ingest_run_id"].astype(str).tolist())
    bars.imputed.extend(df["imputed"].to_numpy(dtype=bool).tolist())
    bars.spike.extend(df["spike"].to_numpy(dtype=bool).tolist())
    bars.quarantined.extend([quarantined] * n)


@dataclass
class _StoreResult:
    report: IngestReport
    syncs: list[_SymbolSync]
    duration_s: float


def _ingest_into_store(
    path: Path, timeframe: str, symbols: list[str] | None, cfg: DataPipelineSettings
) -> _StoreResult:
    """Worker-thread part of a run: research ingest, then collect the partitions to mirror.

    Holds an exclusive ``flock`` on ``{store}/.ingest.lock`` so two processes never write the
    store at once.

    Raises
    ------
    IngestError, ConfigError
        Bad drop or timeframe (nothing written).
    """
    t0 = time.perf_counter()
    dq = load_settings(timeframe).dq
    calendars = load_calendars(cfg.universe_paths)
    store = cfg.store_path
    store.mkdir(parents=True, exist_ok=True)
    with (store / _LOCK_FILE).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = {s: _partitions(store, timeframe, s) for s in _store_symbols(store, timeframe)}
        report = ingest(path, timeframe, symbols, store, calendars, dq, source_id=SOURCE_FILE)
        syncs = []
        for rep in report.symbols:
            old = before.get(rep.symbol, {})
            now = _partitions(store, timeframe, rep.symbol)
            months = [
                m
                for m, part in now.items()
                if old.get(m) is None
                or old[m].sha != part.sha
                or old[m].quarantined != part.quarantined
                or report.run_id in part.run_ids
            ]
            sync = _SymbolSync(months=months, bars=repo.BarColumns(rep.symbol, timeframe))
            sync.newly_quarantined = sum(
                1
                for m, part in now.items()
                if part.quarantined and not (m in old and old[m].quarantined)
            )
            for m in months:
                _append_partition(sync.bars, store, m, now[m].quarantined)
            syncs.append(sync)
    return _StoreResult(report=report, syncs=syncs, duration_s=time.perf_counter() - t0)


# ------------------------------------------------------------------------------ ingest (async)
@dataclass(frozen=True)
class _DbCounts:
    inserted: int
    updated: int
    deleted: int


async def _mirror_symbol(session: AsyncSession, timeframe: str, sync: _SymbolSync) -> _DbCounts:
    """Make ``canonical_bars`` equal the store for ``sync.months`` of one symbol."""
    if not sync.months:
        return _DbCounts(0, 0, 0)
    lo, hi = _month_bounds(sync.months)
    await repo.ensure_partitions(session, lo, hi)
    months = set(sync.months)
    existing = {
        t
        for t in await repo.existing_timestamps(
            session, symbol=sync.symbol, timeframe=timeframe, start=lo, end=hi
        )
        if _month_of(t) in months
    }
    changed = await repo.upsert_bars(session, sync.bars)
    incoming = set(sync.bars.ts_utc)
    stale = sorted(existing - incoming)
    deleted = await repo.delete_bars(
        session, symbol=sync.symbol, timeframe=timeframe, timestamps=stale
    )
    inserted = sum(1 for t in changed if t not in existing)
    return _DbCounts(inserted, len(changed) - inserted, deleted)


def _execution_log(
    *,
    execution_id: str,
    started: datetime,
    finished: datetime,
    status: ExecutionStatus,
    actor: str,
    request_id: str,
    body: IngestRunCreate,
    path: Path,
    run_id: str | None,
    operations: dict[str, Any],
    errors: list[dict[str, Any]],
) -> ExecutionLog:
    return ExecutionLog(
        execution_id=execution_id,
        execution_type=ExecutionType.MANUAL,
        timestamp_start=started,
        timestamp_end=finished,
        duration_seconds=Decimal(f"{(finished - started).total_seconds():.3f}"),
        status=status,
        triggered_by=f"USER:{actor}",
        run_id=run_id,
        target={
            "kind": "ingest",
            "source": body.source,
            "path": str(path),
            "symbols": [s.upper() for s in body.symbols or []],
            "timeframes": [body.timeframe],
        },
        operations=operations,
        resources={
            # ru_maxrss is KiB on Linux
            "memory_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        },
        errors=errors,
        meta={
            "triggered_by": f"USER:{actor}",
            "server_id": socket.gethostname(),
            "version": _version(),
            "request_id": request_id,
        },
    )


async def _record_failure(session: AsyncSession, log: ExecutionLog) -> None:
    """Write a FAILED execution log in its own transaction; a database outage is only logged."""
    try:
        if session.in_transaction():
            await session.rollback()
        async with session.begin():
            await repo.add_execution_log(session, log)
    except Exception:
        _log.exception("ingest_failure_not_recorded", execution_id=log.execution_id)


def _new_execution_id(now: datetime) -> str:
    return f"exec_{now:%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:12]}"


async def run_file_ingest(
    *,
    session: AsyncSession,
    bus: SignalBus,
    cfg: DataPipelineSettings,
    lock: asyncio.Lock,
    body: IngestRunCreate,
    actor: str,
    request_id: str,
) -> IngestRunRead:
    """Run one file-drop ingest end to end (see the module docstring).

    Parameters
    ----------
    session : AsyncSession
        Request session; this function commits its own transaction.
    bus : SignalBus
        Receives the ``bars:closed`` notice after the commit.
    cfg : DataPipelineSettings
        Drop roots, store and universe files.
    lock : asyncio.Lock
        Serialises runs within the process (the store ``flock`` does it across processes).
    body : IngestRunCreate
        The request.
    actor : str
        Caller (token ``sub``), recorded as ``triggered_by``.
    request_id : str
        Recorded in the execution log.

    Returns
    -------
    IngestRunRead

    Raises
    ------
    ApiError
        422 ``DATA_REQ_PATH`` (path outside the drop roots) or ``DATA_INGEST_*`` (bad drop; a
        FAILED execution log is written and nothing else); 503 ``DATA_STORAGE_WRITE`` (store
        write failed) or ``DATA_STORAGE_DBWRITE`` (database step failed, nothing committed).
    """
    path = resolve_drop_path(body.path, cfg.drop_roots)
    symbols = [s.strip().upper() for s in body.symbols] if body.symbols else None
    tf = body.timeframe
    started = datetime.now(UTC)
    execution_id = _new_execution_id(started)
    log_args: dict[str, Any] = {
        "execution_id": execution_id,
        "started": started,
        "actor": actor,
        "request_id": request_id,
        "body": body,
        "path": path,
    }
    async with lock:
        try:
            result = await anyio.to_thread.run_sync(
                partial(_ingest_into_store, path, tf, symbols, cfg)
            )
        except (IngestError, ConfigError) as exc:
            err = ingest_error(exc)
            DATA_INGEST_SUCCESS_RATE.labels(source=SOURCE_FILE, timeframe=tf).set(0.0)
            DQ_FAIL_TOTAL.labels(check="input_rejected", symbol="*", timeframe=tf).inc()
            failed = datetime.now(UTC)
            op = {"status": "FAILED", "duration": (failed - started).total_seconds()}
            await _record_failure(
                session,
                _execution_log(
                    **log_args,
                    finished=failed,
                    status=ExecutionStatus.FAILED,
                    run_id=None,
                    operations={"data_fetch": op},
                    errors=[{"error_id": err.error_id, "message": err.message}],
                ),
            )
            _log.warning(
                "ingest_rejected", error_id=err.error_id, detail=err.message, path=str(path)
            )
            raise err from None
        except OSError as exc:
            # a store write failed: files already replaced are complete, the rest unchanged;
            # re-posting the drop repairs the store (pairdesk.research.ingest.ingest)
            err = ApiError(
                error_id(DOMAIN, "STORAGE", "WRITE"),
                "Writing the Parquet store failed; post the same drop again to retry",
                status_code=503,
            )
            DATA_INGEST_SUCCESS_RATE.labels(source=SOURCE_FILE, timeframe=tf).set(0.0)
            _log.error("ingest_store_failed", error=type(exc).__name__, detail=str(exc)[:500])
            await _record_failure(
                session,
                _execution_log(
                    **log_args,
                    finished=datetime.now(UTC),
                    status=ExecutionStatus.FAILED,
                    run_id=None,
                    operations={"store": {"status": "FAILED"}},
                    errors=[{"error_id": err.error_id, "message": type(exc).__name__}],
                ),
            )
            raise err from None

        report = result.report
        t_db = time.perf_counter()
        counts: dict[str, _DbCounts] = {}
        finished = started
        try:
            async with session.begin():
                for sync in result.syncs:
                    counts[sync.symbol] = await _mirror_symbol(session, tf, sync)
                finished = datetime.now(UTC)
                await repo.add_execution_log(
                    session,
                    _execution_log(
                        **log_args,
                        finished=finished,
                        status=ExecutionStatus.SUCCESS,
                        run_id=report.run_id,
                        operations=_operations(
                            report, counts, result.duration_s, time.perf_counter() - t_db
                        ),
                        errors=[],
                    ),
                )
        except (SQLAlchemyError, OSError) as exc:
            err = ApiError(
                error_id(DOMAIN, "STORAGE", "DBWRITE"),
                "Writing canonical bars failed (nothing was committed); the Parquet store is "
                "up to date, post the same drop again to retry",
                status_code=503,
            )
            DATA_INGEST_SUCCESS_RATE.labels(source=SOURCE_FILE, timeframe=tf).set(0.0)
            _log.error(
                "ingest_db_failed",
                ingest_run_id=report.run_id,
                error=type(exc).__name__,
                detail=str(getattr(exc, "orig", exc))[:500],
            )
            await _record_failure(
                session,
                _execution_log(
                    **log_args,
                    finished=datetime.now(UTC),
                    status=ExecutionStatus.FAILED,
                    run_id=report.run_id,
                    operations={"store": {"status": "SUCCESS"}, "db_upsert": {"status": "FAILED"}},
                    errors=[{"error_id": err.error_id, "message": type(exc).__name__}],
                ),
            )
            raise err from None

    out = _report(report, counts, body, path, execution_id, finished - started)
    _update_metrics(report, result.syncs, finished, cfg)
    if out.rows_changed and out.watermark_ts is not None:
        await _announce(bus, report, out)
    _log.info(
        "ingest_done",
        ingest_run_id=report.run_id,
        execution_id=execution_id,
        rows_changed=out.rows_changed,
        timeframe=tf,
    )
    return out


def _operations(
    report: IngestReport, counts: Mapping[str, _DbCounts], store_s: float, db_s: float
) -> dict[str, Any]:
    syms = report.symbols
    return {
        "data_fetch": {
            "status": "SUCCESS",
            "duration": round(store_s, 3),
            "records_fetched": sum(s.rows_read for s in syms),
            "date_range": {
                "start": min((s.first_ts for s in syms), default=None),
                "end": max((s.last_ts for s in syms), default=None),
            },
        },
        "dq": {
            s.symbol: {
                "outliers": s.outliers,
                "spikes": s.spikes,
                "imputed": s.imputed,
                "missing": s.missing,
                "dropped_nonpositive": s.dropped_nonpositive,
                "dedupe_drops": s.dedupe_drops_total,
                "quarantined_months": list(s.quarantined_months),
            }
            for s in syms
        },
        "store": {
            "status": "SUCCESS",
            "partitions_written": sum(s.partitions_written for s in syms),
            "partitions_unchanged": sum(s.partitions_unchanged for s in syms),
        },
        "db_upsert": {
            "status": "SUCCESS",
            "duration": round(db_s, 3),
            "inserted": sum(c.inserted for c in counts.values()),
            "updated": sum(c.updated for c in counts.values()),
            "deleted": sum(c.deleted for c in counts.values()),
        },
    }


def _rate(num: int, den: int) -> float:
    return num / den if den > 0 else 0.0


def _report(
    report: IngestReport,
    counts: Mapping[str, _DbCounts],
    body: IngestRunCreate,
    path: Path,
    execution_id: str,
    elapsed: timedelta,
) -> IngestRunRead:
    symbols = []
    for s in report.symbols:
        c = counts.get(s.symbol, _DbCounts(0, 0, 0))
        symbols.append(
            SymbolIngestRead(
                symbol=s.symbol,
                files=list(s.files),
                rows_read=s.rows_read,
                dedupe_drops=s.dedupe_drops_total,
                dropped_nonpositive=s.dropped_nonpositive,
                ohlc_inconsistent=s.ohlc_inconsistent,
                outliers=s.outliers,
                spikes=s.spikes,
                expected=s.expected,
                imputed=s.imputed,
                missing=s.missing,
                off_session=s.off_session,
                missing_rate=_rate(s.imputed + s.missing, s.expected),
                outlier_rate=_rate(s.outliers, s.expected),
                partitions_written=s.partitions_written,
                partitions_unchanged=s.partitions_unchanged,
                quarantined_months=list(s.quarantined_months),
                first_ts=_iso_dt(s.first_ts),
                last_ts=_iso_dt(s.last_ts),
                watermark_ts=_iso_dt(s.watermark_ts),
                db_inserted=c.inserted,
                db_updated=c.updated,
                db_deleted=c.deleted,
            )
        )
    changed = sum(c.inserted + c.updated + c.deleted for c in counts.values())
    return IngestRunRead(
        ingest_run_id=report.run_id,
        execution_id=execution_id,
        source=report.source_id,
        timeframe=report.timeframe,
        path=str(path),
        status="SUCCESS",
        rows_changed=changed,
        watermark_ts=max((s.watermark_ts for s in symbols), default=None),
        duration_seconds=round(elapsed.total_seconds(), 3),
        symbols=symbols,
    )


def _update_metrics(
    report: IngestReport, syncs: Sequence[_SymbolSync], now: datetime, cfg: DataPipelineSettings
) -> None:
    """Spec 004 §監視・運用 metrics after a successful run."""
    tf = report.timeframe
    try:
        calendars = load_calendars(cfg.universe_paths)
    except ConfigError:
        calendars = {}
    DATA_INGEST_SUCCESS_RATE.labels(source=report.source_id, timeframe=tf).set(1.0)
    newly = {s.symbol: s.newly_quarantined for s in syncs}
    for s in report.symbols:
        DATA_MISSING_RATE.labels(symbol=s.symbol, timeframe=tf).set(
            _rate(s.imputed + s.missing, s.expected)
        )
        DATA_OUTLIER_RATE.labels(symbol=s.symbol, timeframe=tf).set(_rate(s.outliers, s.expected))
        if s.dedupe_drops_total:
            DATA_DEDUPE_DROPS_TOTAL.labels(
                source=report.source_id, symbol=s.symbol, timeframe=tf
            ).inc(s.dedupe_drops_total)
        if newly.get(s.symbol):
            DQ_FAIL_TOTAL.labels(check="quarantine", symbol=s.symbol, timeframe=tf).inc(
                newly[s.symbol]
            )
        bars, seconds = lag_to_now(_iso_dt(s.watermark_ts), tf, calendars.get(s.symbol), now)
        DATA_WATERMARK_LAG_BARS.labels(source=report.source_id, symbol=s.symbol, timeframe=tf).set(
            bars
        )
        DATA_PIPELINE_LAG_SECONDS.labels(symbol=s.symbol, timeframe=tf).set(seconds)


async def _announce(bus: SignalBus, report: IngestReport, out: IngestRunRead) -> None:
    """Publish ``bars:closed``; a Redis failure is logged (consumers catch up by watermark)."""
    assert out.watermark_ts is not None
    payload = {
        "timeframe": report.timeframe,
        "symbols": [s.symbol for s in out.symbols if s.db_inserted + s.db_updated + s.db_deleted],
        "last_ts_utc": out.watermark_ts.isoformat(),
        "ingest_run_id": report.run_id,
    }
    try:
        await bus.announce_bars_closed(payload)
    except Exception:
        _log.exception("bars_closed_not_announced", ingest_run_id=report.run_id)


# ---------------------------------------------------------------------------------- watermarks
@dataclass(frozen=True)
class _StoreMark:
    last_ts: datetime | None
    rows: int
    partitions: int
    quarantined: int


def _store_marks(
    store: Path, symbol: str | None, timeframe: str | None
) -> dict[tuple[str, str], _StoreMark]:
    """Per symbol × timeframe summary of the store's ``__meta.json`` files."""
    out: dict[tuple[str, str], _StoreMark] = {}
    if not store.is_dir():
        return out
    for tf_dir in sorted(p for p in store.iterdir() if p.is_dir()):
        if timeframe is not None and tf_dir.name != timeframe:
            continue
        for sym in _store_symbols(store, tf_dir.name):
            if symbol is not None and sym != symbol:
                continue
            last: datetime | None = None
            rows = quarantined = 0
            months = st.list_partitions(store, tf_dir.name, sym)
            for m in months:
                pdir = st.partition_dir(store, tf_dir.name, sym, m)
                meta = st.read_json(pdir / st.META_FILE) or {}
                rows += int((meta.get("counts") or {}).get("rows", 0))
                quarantined += int((pdir / st.QUARANTINE_FILE).is_file())
                if meta.get("last_ts"):
                    ts = _iso_dt(str(meta["last_ts"]))
                    last = ts if last is None or ts > last else last
            if months:
                out[(sym, tf_dir.name)] = _StoreMark(last, rows, len(months), quarantined)
    return out


async def list_watermarks(
    *,
    session: AsyncSession,
    cfg: DataPipelineSettings,
    symbol: str | None,
    timeframe: str | None,
    now: datetime | None = None,
) -> list[WatermarkRead]:
    """Watermarks of every symbol × timeframe known to PostgreSQL or the store.

    ``lag_bars`` / ``lag_seconds`` are measured from the PostgreSQL watermark (the canonical
    store consumers read); the ``data_watermark_lag_bars`` gauge is refreshed with them.
    """
    sym = symbol.upper() if symbol else None
    clock = now or datetime.now(UTC)
    db = {
        (w.symbol, w.timeframe): w
        for w in await repo.watermarks(session, symbol=sym, timeframe=timeframe)
    }
    marks, calendars = await anyio.to_thread.run_sync(
        partial(_marks_and_calendars, cfg, sym, timeframe)
    )
    out = []
    for key in sorted(set(db) | set(marks)):
        w, m = db.get(key), marks.get(key)
        lag_bars: int | None = None
        lag_s: float | None = None
        if w is not None:
            lag_bars, lag_s = lag_to_now(w.last_ts, key[1], calendars.get(key[0]), clock)
            DATA_WATERMARK_LAG_BARS.labels(source=w.source_id, symbol=key[0], timeframe=key[1]).set(
                lag_bars
            )
        out.append(
            WatermarkRead(
                symbol=key[0],
                timeframe=key[1],
                db_last_ts=w.last_ts if w else None,
                db_bar_count=w.bar_count if w else 0,
                db_source_id=w.source_id if w else None,
                store_last_ts=m.last_ts if m else None,
                store_bar_count=m.rows if m else 0,
                store_partitions=m.partitions if m else 0,
                quarantined_partitions=m.quarantined if m else 0,
                in_sync=(w.last_ts if w else None) == (m.last_ts if m else None),
                lag_bars=lag_bars,
                lag_seconds=lag_s,
            )
        )
    return out


def _marks_and_calendars(
    cfg: DataPipelineSettings, symbol: str | None, timeframe: str | None
) -> tuple[dict[tuple[str, str], _StoreMark], dict[str, SessionCalendar]]:
    try:
        calendars = load_calendars(cfg.universe_paths)
    except ConfigError:
        _log.warning("universe_unreadable", files=[str(p) for p in cfg.universe_paths])
        calendars = {}
    return _store_marks(cfg.store_path, symbol, timeframe), calendars


# ---------------------------------------------------------------------------------- quarantine
def _iter_quarantine(
    store: Path, symbol: str | None, timeframe: str | None
) -> Iterator[dict[str, Any]]:
    if not store.is_dir():
        return
    for tf_dir in sorted(p for p in store.iterdir() if p.is_dir()):
        if timeframe is not None and tf_dir.name != timeframe:
            continue
        for sym in _store_symbols(store, tf_dir.name):
            if symbol is not None and sym != symbol:
                continue
            for m in st.list_partitions(store, tf_dir.name, sym):
                q = st.read_json(st.partition_dir(store, tf_dir.name, sym, m) / st.QUARANTINE_FILE)
                if q:
                    yield q


async def list_quarantine(
    *, cfg: DataPipelineSettings, symbol: str | None, timeframe: str | None
) -> list[QuarantineRead]:
    """Quarantined partitions of the store (``__quarantine.json``), by timeframe, symbol, month."""
    sym = symbol.upper() if symbol else None
    records = await anyio.to_thread.run_sync(
        lambda: list(_iter_quarantine(cfg.store_path, sym, timeframe))
    )
    return [
        QuarantineRead(
            symbol=q["symbol"],
            timeframe=q["timeframe"],
            partition=q["partition"],
            reason=q["reason"],
            missing_rate=q["missing_rate"],
            outlier_rate=q["outlier_rate"],
            thresholds=q.get("thresholds") or {},
            time_range_start=_iso_dt(q["time_range"]["start"]),
            time_range_end=_iso_dt(q["time_range"]["end"]),
            counts=q.get("counts") or {},
        )
        for q in records
    ]


# ---------------------------------------------------------------------------------------- bars
def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


async def get_bars(
    *,
    session: AsyncSession,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> BarPage:
    """One page of ``canonical_bars`` in ``[start, end)`` (naive bounds are UTC).

    Raises
    ------
    ApiError
        422 ``DATA_REQ_RANGE`` when ``start > end``.
    """
    lo, hi = _utc(start), _utc(end)
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(
            error_id(DOMAIN, "REQ", "RANGE"), "start must not be after end", status_code=422
        )
    rows, total = await repo.page_bars(
        session,
        symbol=symbol.upper(),
        timeframe=timeframe,
        start=lo,
        end=hi,
        limit=limit,
        offset=offset,
    )
    items = [
        BarRead(
            symbol=r.symbol,
            timeframe=r.timeframe,
            ts_utc=r.ts_utc,
            open=float(r.open),
            high=float(r.high),
            low=float(r.low),
            close=float(r.close),
            volume=None if r.volume is None else float(r.volume),
            quality_flag=str(r.quality_flag),
            imputed=bool(r.meta.get("imputed", False)),
            spike=bool(r.meta.get("spike", False)),
            quarantined=bool(r.meta.get("quarantined", False)),
            source_id=r.source_id,
            ingest_run_id=r.ingest_run_id,
            ingested_at=r.ingested_at,
        )
        for r in rows
    ]
    return BarPage(items=items, total=total, limit=limit, offset=offset)

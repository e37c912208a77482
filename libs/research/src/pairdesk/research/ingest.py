"""File-drop ingest: canonicalise -> DQ -> quarantine -> Parquet store (spec 004
§data-assets-pipeline 仕様 v1 ETL 手順 2-6, §監視・運用 (data pipeline) v1 隔離/セーフティ,
§データソース抽象化レイヤ v1 canonical_bar).

Input: a folder of ``<SYMBOL>_<timeframe>.csv``, ``.csv.gz`` or ``.parquet`` files with columns
``ts_utc, open, high, low, close[, volume]`` (names case-insensitive; others ignored).

Choices where the spec is silent
--------------------------------
* **Timestamps** must be ISO-8601 text or Parquet timestamps; naive values are UTC, offsets are
  converted to UTC. They must sit on the timeframe's UTC grid (see
  :mod:`pairdesk.quant.sessions`); a file whose bars do not is rejected rather than re-bucketed.
* **Dedupe** is latest-wins on ``(symbol, timeframe, ts_utc)`` within one source: later rows
  of a file win, files of one symbol are read in name order, and a row of the drop wins over the
  row already stored at the same time (each loser counts towards ``data_dedupe_drops_total``).
* **Non-positive prices** are kept by the reader and dropped (and counted) by DQ, but a file in
  which *every* row has a zero/negative price is an error (almost surely a wrong column or
  unit, not a few bad prints). NaN/empty/non-numeric prices are errors.
* **Incremental, lossless merge.** The store keeps every raw row it accepted (kept rows in the
  Parquet files, rows dropped for non-positive prices in ``__meta.json``), so an ingest re-runs
  DQ over *stored rows ∪ new rows* and the result is the same as ingesting all the data at once.
  Only partitions whose bytes change are rewritten.
* **Idempotency.** ``ingest_run_id`` is ``"ing-"`` + the first 16 hex digits of a sha256 over
  source_id, timeframe and the canonical input rows, so the same input gives the same id. An
  imputed row carries the source/run of the bar that closed its hole. ``last_refreshed_ts`` is
  the wall-clock time a partition's content last changed and is kept when it does not, so a
  second run on the same input rewrites nothing (byte-identical store).
* **Report counters** of DQ (outliers, imputed, ...) describe the whole stored series of the
  symbol after the merge; ``rows_read``/``dedupe_drops`` describe this drop.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pairdesk.quant.dq import PARTITION_COUNT_COLUMNS, DQParams, apply_dq, partition_dq
from pairdesk.quant.sessions import SessionCalendar, timeframe_to_timedelta
from pairdesk.research import store as st

__all__ = [
    "IngestError",
    "IngestReport",
    "SymbolIngestReport",
    "ingest",
    "read_file_drop",
]

_PRICES = ("open", "high", "low", "close")
_SUFFIXES = (".csv.gz", ".csv", ".parquet")


class IngestError(ValueError):
    """Bad file-drop input (one-line message naming the file, column, row or value)."""


# ---------------------------------------------------------------------- reading
def _iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_name(name: str) -> tuple[str, str] | None:
    for suf in _SUFFIXES:
        if name.lower().endswith(suf):
            m = re.fullmatch(r"(?P<sym>[A-Za-z0-9.\-]+)_(?P<tf>[0-9]+[A-Za-z]+)", name[: -len(suf)])
            return (m.group("sym").upper(), m.group("tf")) if m else None
    return None


def _read_one(path: Path, timeframe: str, step_us: int) -> pd.DataFrame:
    name = path.name
    try:
        raw = (
            pd.read_parquet(path)
            if name.lower().endswith(".parquet")
            else pd.read_csv(path, dtype=str, keep_default_na=False)
        )
    except Exception as exc:
        raise IngestError(f"{name}: cannot read file ({type(exc).__name__}: {exc})") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("ts_utc", *_PRICES) if c not in raw.columns]
    if missing:
        raise IngestError(
            f"{name}: missing column(s) {', '.join(missing)} (found: {', '.join(raw.columns)})"
        )
    if raw.empty:
        raise IngestError(f"{name}: no data rows")

    ts_col = raw["ts_utc"]
    if pd.api.types.is_datetime64_any_dtype(ts_col):
        ts = pd.DatetimeIndex(ts_col)
        ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
        bad = np.asarray(ts.isna())
    elif pd.api.types.is_numeric_dtype(ts_col):
        raise IngestError(f"{name}: ts_utc is numeric; expected ISO-8601 text or timestamps")
    else:
        text = ts_col.astype(str).str.strip()
        ts = pd.DatetimeIndex(pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce"))
        bad = np.asarray(ts.isna())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IngestError(f"{name}: unparsable ts_utc {str(ts_col.iloc[i])!r} at data row {i + 1}")
    ts = ts.as_unit("us")
    off = ts.asi8 % step_us != 0
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise IngestError(
            f"{name}: ts_utc {_iso(ts[i])} at data row {i + 1} is not on the {timeframe} grid "
            f"(bars open at multiples of {timeframe} from 1970-01-01T00:00Z); wrong timeframe?"
        )

    out = pd.DataFrame(index=pd.DatetimeIndex(ts, name="ts_utc"))
    cols = [*_PRICES, "volume"] if "volume" in raw.columns else list(_PRICES)
    for c in cols:
        src = raw[c]
        if pd.api.types.is_numeric_dtype(src):
            num = pd.to_numeric(src).to_numpy(dtype=np.float64)
            blank = np.isnan(num)
            nonnum = np.zeros(len(src), dtype=bool)
        else:
            s = src.astype(str).str.strip()
            blank = np.asarray(s.str.lower().isin(["", "nan", "null", "none", "na"]))
            num = pd.to_numeric(s.where(~blank, None), errors="coerce").to_numpy(dtype=np.float64)
            nonnum = np.isnan(num) & ~blank
        if nonnum.any():
            i = int(np.flatnonzero(nonnum)[0])
            raise IngestError(
                f"{name}: non-numeric {c} {str(src.iloc[i])!r} at {_iso(ts[i])} (data row {i + 1})"
            )
        if c != "volume" and blank.any():
            i = int(np.flatnonzero(blank)[0])
            raise IngestError(f"{name}: NaN {c} price at {_iso(ts[i])} (data row {i + 1})")
        if c != "volume" and np.isinf(num).any():
            i = int(np.flatnonzero(np.isinf(num))[0])
            raise IngestError(f"{name}: infinite {c} price at {_iso(ts[i])} (data row {i + 1})")
        out[c] = num
    if "volume" not in out.columns:
        out["volume"] = np.nan
    if (out[list(_PRICES)] <= 0).any(axis=1).all():
        raise IngestError(f"{name}: every row has a zero or negative price")
    return out


def read_file_drop(
    path: Path, timeframe: str, symbols: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Read and canonicalise a file drop.

    Parameters
    ----------
    path : Path
        Folder holding ``<SYMBOL>_<timeframe>.csv|.csv.gz|.parquet`` files.
    timeframe : str
        Bar timeframe (``"15m"``, ``"1h"``, ``"4h"``, ...); only files named with it are read.
    symbols : list of str, optional
        Symbols to read (case-insensitive); ``None`` or empty = every file of the timeframe.

    Returns
    -------
    dict SYMBOL -> DataFrame
        Index ``ts_utc`` (UTC, unit us, sorted, unique), float64 columns ``open, high, low,
        close, volume`` (volume NaN when absent). ``df.attrs`` holds ``symbol``, ``files``,
        ``rows_read`` (rows in the files) and ``dedupe_drops`` (rows dropped by latest-wins
        dedupe on ``ts_utc``). Rows with non-positive prices are kept (DQ drops them).

    Raises
    ------
    IngestError
        Missing folder, bad timeframe, no file for the timeframe, a requested symbol without a
        file, missing columns, unparsable/off-grid timestamps, NaN/non-numeric/infinite prices,
        an empty file or a file whose every row has a non-positive price.
    """
    try:
        step = timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise IngestError(str(exc)) from exc
    step_us = int(step.value // 1000)
    folder = Path(path)
    if not folder.is_dir():
        raise IngestError(f"file-drop folder not found: {folder}")
    by_symbol: dict[str, list[Path]] = {}
    other_tf: set[str] = set()
    for f in sorted(folder.iterdir()):
        parsed = _split_name(f.name) if f.is_file() else None
        if parsed is None:
            continue
        sym, tf = parsed
        if tf == timeframe:
            by_symbol.setdefault(sym, []).append(f)
        else:
            other_tf.add(tf)
    if symbols:
        wanted = [s.strip().upper() for s in symbols]
        unknown = [s for s in wanted if s not in by_symbol]
        if unknown:
            raise IngestError(
                f"unknown symbol(s) {', '.join(unknown)}: no {unknown[0]}_{timeframe}.csv/.csv.gz/.parquet in {folder}"
            )
    else:
        wanted = sorted(by_symbol)
        if not wanted:
            hint = (
                f" (files exist for timeframe(s) {', '.join(sorted(other_tf))})" if other_tf else ""
            )
            raise IngestError(
                f"no <SYMBOL>_{timeframe}.csv/.csv.gz/.parquet files in {folder}{hint}"
            )

    out: dict[str, pd.DataFrame] = {}
    for sym in dict.fromkeys(wanted):
        parts = [_read_one(f, timeframe, step_us) for f in by_symbol[sym]]
        df = pd.concat(parts) if len(parts) > 1 else parts[0]
        rows = len(df)
        # stable sort keeps file order among equal timestamps, so keep="last" = latest received
        df = df.iloc[np.argsort(pd.DatetimeIndex(df.index).asi8, kind="stable")]
        dup = df.index.duplicated(keep="last")
        df = df.loc[~dup].copy()
        df.attrs = {
            "symbol": sym,
            "files": [f.name for f in by_symbol[sym]],
            "rows_read": rows,
            "dedupe_drops": int(dup.sum()),
        }
        out[sym] = df
    return out


# ---------------------------------------------------------------------- report
@dataclass(frozen=True)
class SymbolIngestReport:
    """What one symbol's ingest did (counts in bars/rows; partitions are UTC months)."""

    symbol: str
    files: tuple[str, ...]
    rows_read: int
    dedupe_drops: int
    replaced_stored: int
    dropped_nonpositive: int
    ohlc_inconsistent: int
    outliers: int
    spikes: int
    expected: int
    imputed: int
    missing: int
    off_session: int
    partitions_written: int
    partitions_unchanged: int
    quarantined_months: tuple[str, ...]
    first_ts: str
    last_ts: str
    watermark_ts: str

    @property
    def dedupe_drops_total(self) -> int:
        """In-drop duplicates plus stored rows replaced by this drop (data_dedupe_drops_total)."""
        return self.dedupe_drops + self.replaced_stored


@dataclass(frozen=True)
class IngestReport:
    """Result of :func:`ingest`: one :class:`SymbolIngestReport` per symbol (sorted)."""

    run_id: str
    source_id: str
    timeframe: str
    store_dir: str
    symbols: tuple[SymbolIngestReport, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per symbol (what ``pairdesk ingest`` prints)."""
        out = [
            f"ingest run {self.run_id} source={self.source_id} timeframe={self.timeframe} store={self.store_dir}"
        ]
        for s in self.symbols:
            q = ",".join(s.quarantined_months) or "none"
            out.append(
                f"{s.symbol}: rows_read={s.rows_read} dedupe_drops={s.dedupe_drops_total} "
                f"dropped_nonpositive={s.dropped_nonpositive} imputed={s.imputed} missing={s.missing} "
                f"outliers={s.outliers} spikes={s.spikes} partitions_written={s.partitions_written} "
                f"unchanged={s.partitions_unchanged} quarantined={q} range={s.first_ts}..{s.last_ts}"
            )
        return out


# ---------------------------------------------------------------------- ingest
def _run_id(source_id: str, timeframe: str, frames: Mapping[str, pd.DataFrame]) -> str:
    h = hashlib.sha256(f"{source_id}\x00{timeframe}".encode())
    for sym in sorted(frames):
        df = frames[sym][["open", "high", "low", "close", "volume"]]
        h.update(sym.encode() + b"\x00")
        h.update(pd.DatetimeIndex(df.index).asi8.tobytes())
        h.update(np.ascontiguousarray(df.to_numpy(dtype=np.float64)).tobytes())
    return "ing-" + h.hexdigest()[:16]


def _stored_raw(store_dir: Path, timeframe: str, symbol: str) -> pd.DataFrame:
    """Every raw row the store accepted for symbol × timeframe (kept rows and dropped ones)."""
    frames = []
    for month in st.list_partitions(store_dir, timeframe, symbol):
        path = st.partition_file(store_dir, timeframe, symbol, month)
        if path.is_file():
            df = st.read_partition(path)
            frames.append(df.loc[~df["imputed"].to_numpy()])
        meta = (
            st.read_json(st.partition_dir(store_dir, timeframe, symbol, month) / st.META_FILE) or {}
        )
        dropped = meta.get("dropped_nonpositive_rows") or []
        if dropped:
            d = pd.DataFrame(dropped)
            d["ts_utc"] = pd.DatetimeIndex(pd.to_datetime(d["ts_utc"], utc=True)).as_unit("us")
            d["volume"] = pd.to_numeric(d["volume"]).astype(np.float64)
            frames.append(d)
    cols = ["open", "high", "low", "close", "volume", "source_id", "ingest_run_id"]
    if not frames:
        return pd.DataFrame(
            columns=cols, index=pd.DatetimeIndex([], dtype="datetime64[us, UTC]", name="ts_utc")
        )
    raw = pd.concat([f[["ts_utc", *cols]] for f in frames], ignore_index=True)
    raw = raw.set_index("ts_utc").sort_index()
    raw.index = pd.DatetimeIndex(raw.index).as_unit("us").rename("ts_utc")
    return raw


def _dropped_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw rows dropped for non-positive prices, as JSON records (kept so re-ingest is lossless)."""
    out: list[dict[str, Any]] = []
    for r in rows.to_dict("records"):
        vol = float(r["volume"])
        out.append(
            {
                "ts_utc": _iso(pd.Timestamp(r["ts_utc"])),
                **{c: float(r[c]) for c in _PRICES},
                "volume": vol if np.isfinite(vol) else None,
                "source_id": str(r["source_id"]),
                "ingest_run_id": str(r["ingest_run_id"]),
            }
        )
    return out


def ingest(
    source_dir: Path,
    timeframe: str,
    symbols: Sequence[str] | None,
    store_dir: Path,
    universe_calendars: Mapping[str, SessionCalendar],
    dq_params: DQParams | None = None,
    source_id: str = "file",
    *,
    now: datetime | None = None,
) -> IngestReport:
    """Ingest a file drop into the Parquet store (canonicalise -> DQ -> quarantine -> store).

    Parameters
    ----------
    source_dir : Path
        File-drop folder (:func:`read_file_drop`).
    timeframe : str
        Bar timeframe of the files and of the store folder.
    symbols : list of str or None
        Symbols to ingest; ``None`` or empty = every file of the timeframe.
    store_dir : Path
        Store root (created if missing); layout in :mod:`pairdesk.research.store`.
    universe_calendars : mapping SYMBOL -> SessionCalendar
        Session calendar of every ingested symbol (from ``universe.yaml`` ``trading_hours``).
    dq_params : DQParams, optional
        DQ rules and quarantine thresholds (``config/pipeline_policy.yaml``).
    source_id : str
        Recorded on every row (``canonical_bar.source_id``).
    now : datetime, optional
        Clock for ``last_refreshed_ts`` of partitions whose content changes (default: UTC now).

    Returns
    -------
    IngestReport

    Raises
    ------
    IngestError
        Any :func:`read_file_drop` error, or a symbol without a session calendar. Raised before
        anything is written.
    OSError
        A write failure; files already replaced are complete and consistent, the others keep
        their previous content, and no temporary file is left behind. Re-running repairs it.
    """
    params = dq_params or DQParams()
    frames = read_file_drop(Path(source_dir), timeframe, symbols)
    cals = {str(k).upper(): v for k, v in universe_calendars.items()}
    no_cal = [s for s in frames if s not in cals]
    if no_cal:
        raise IngestError(
            f"no session calendar for symbol(s) {', '.join(no_cal)}; add them to universe.yaml"
        )
    if not source_id or not isinstance(source_id, str):
        raise IngestError("source_id must be a non-empty string")
    run_id = _run_id(source_id, timeframe, frames)
    clock = (now or datetime.now(UTC)).astimezone(UTC)
    refreshed = clock.strftime("%Y-%m-%dT%H:%M:%SZ")
    store = Path(store_dir)
    reports = [
        _ingest_symbol(
            frames[sym], sym, timeframe, store, cals[sym], params, source_id, run_id, refreshed
        )
        for sym in sorted(frames)
    ]
    return IngestReport(
        run_id=run_id,
        source_id=source_id,
        timeframe=timeframe,
        store_dir=str(store),
        symbols=tuple(reports),
    )


def _ingest_symbol(
    new: pd.DataFrame,
    sym: str,
    timeframe: str,
    store: Path,
    cal: SessionCalendar,
    params: DQParams,
    source_id: str,
    run_id: str,
    refreshed: str,
) -> SymbolIngestReport:
    incoming = new[["open", "high", "low", "close", "volume"]].copy()
    incoming["source_id"] = source_id
    incoming["ingest_run_id"] = run_id
    stored = _stored_raw(store, timeframe, sym)
    union = pd.concat([stored, incoming]) if len(stored) else incoming
    union = union.iloc[np.argsort(pd.DatetimeIndex(union.index).asi8, kind="stable")]
    dup = union.index.duplicated(keep="last")
    union = union.loc[~dup]

    res = apply_dq(union[["open", "high", "low", "close", "volume"]], cal, timeframe, params)
    parts = partition_dq(res, params)

    bars = res.bars.join(union[["source_id", "ingest_run_id"]], how="left")
    # an imputed row takes the source/run of the bar after its hole (the one that closed it)
    bars[["source_id", "ingest_run_id"]] = bars[["source_id", "ingest_run_id"]].bfill()
    bars.insert(0, "symbol", sym)
    bars.insert(1, "timeframe", timeframe)
    bars = bars.reset_index()
    month_of = pd.DatetimeIndex(bars["ts_utc"]).tz_localize(None).strftime("%Y-%m")
    dropped = res.dropped.join(union[["source_id", "ingest_run_id"]], how="left").reset_index()
    dropped_month = pd.DatetimeIndex(dropped["ts_utc"]).tz_localize(None).strftime("%Y-%m")
    missing_month = res.missing.tz_localize(None).strftime("%Y-%m")
    cal_desc = cal.describe()

    written = unchanged = 0
    quarantined: list[str] = []
    for month, row in parts.iterrows():
        m = str(month)
        rows_m = bars.loc[np.asarray(month_of == m)]
        data = st.bars_to_parquet_bytes(rows_m)
        drows = dropped.loc[np.asarray(dropped_month == m)]
        counts = {k: int(row[k]) for k in PARTITION_COUNT_COLUMNS}
        counts["ok"] = int((rows_m["quality_flag"] == "ok").sum())
        miss_m = res.missing[np.asarray(missing_month == m)]
        meta = {
            "symbol": sym,
            "timeframe": timeframe,
            "partition": m,
            "data_file": st.partition_file(store, timeframe, sym, m).name,
            "data_sha256": hashlib.sha256(data).hexdigest(),
            "first_ts": _iso(rows_m["ts_utc"].iloc[0]) if len(rows_m) else None,
            "last_ts": _iso(rows_m["ts_utc"].iloc[-1]) if len(rows_m) else None,
            "time_range": {"start": _iso(row["start"]), "end": _iso(row["end"])},
            "sources": sorted(set(rows_m["source_id"]) | set(drows["source_id"])),
            "ingest_run_ids": sorted(set(rows_m["ingest_run_id"]) | set(drows["ingest_run_id"])),
            "counts": counts,
            "dq": {
                "missing_rate": float(row["missing_rate"]),
                "outlier_rate": float(row["outlier_rate"]),
                "quarantined": bool(row["quarantined"]),
                "reason": str(row["reason"]),
            },
            "window_params": params.as_dict(),
            "calendar": cal_desc,
            "missing_ts": [_iso(t) for t in miss_m],
            "dropped_nonpositive_rows": _dropped_records(drows),
        }
        quarantine = None
        if bool(row["quarantined"]):
            quarantined.append(m)
            quarantine = {
                "symbol": sym,
                "timeframe": timeframe,
                "partition": m,
                "reason": str(row["reason"]),
                "missing_rate": float(row["missing_rate"]),
                "outlier_rate": float(row["outlier_rate"]),
                "thresholds": {
                    "missing_rate_max": params.missing_rate_max,
                    "outlier_rate_max": params.outlier_rate_max,
                },
                "time_range": {"start": _iso(row["start"]), "end": _iso(row["end"])},
                "counts": {
                    k: counts[k] for k in ("expected", "absent", "missing", "imputed", "outliers")
                },
            }
        if _write_partition(store, timeframe, sym, m, data, meta, quarantine, refreshed):
            written += 1
        else:
            unchanged += 1

    last_ts = pd.DatetimeIndex(union.index)[-1]
    wm_path = st.symbol_dir(store, timeframe, sym) / st.WATERMARK_FILE
    wm = st.json_bytes({"symbol": sym, "timeframe": timeframe, "last_ts": _iso(last_ts)})
    if not wm_path.is_file() or wm_path.read_bytes() != wm:
        st.atomic_write_bytes(wm_path, wm)

    c = res.counters
    idx = pd.DatetimeIndex(union.index)
    return SymbolIngestReport(
        symbol=sym,
        files=tuple(new.attrs.get("files", ())),
        rows_read=int(new.attrs.get("rows_read", len(new))),
        dedupe_drops=int(new.attrs.get("dedupe_drops", 0)),
        replaced_stored=int(dup.sum()),
        dropped_nonpositive=c.dropped_nonpositive,
        ohlc_inconsistent=c.ohlc_inconsistent,
        outliers=c.outliers,
        spikes=c.spikes,
        expected=c.expected,
        imputed=c.imputed,
        missing=c.missing,
        off_session=c.off_session,
        partitions_written=written,
        partitions_unchanged=unchanged,
        quarantined_months=tuple(quarantined),
        first_ts=_iso(idx[0]),
        last_ts=_iso(idx[-1]),
        watermark_ts=_iso(last_ts),
    )


def _write_partition(
    store: Path,
    timeframe: str,
    sym: str,
    month: str,
    data: bytes,
    meta: dict[str, Any],
    quarantine: dict[str, Any] | None,
    refreshed: str,
) -> bool:
    """Write one month (Parquet, then meta, then quarantine flag) if anything changed.

    Returns True when a file was written or removed. ``last_refreshed_ts`` is kept from the
    existing meta when the content is unchanged.
    """
    pdir = st.partition_dir(store, timeframe, sym, month)
    pfile = st.partition_file(store, timeframe, sym, month)
    mfile, qfile = pdir / st.META_FILE, pdir / st.QUARANTINE_FILE
    old_meta = st.read_json(mfile) or {}
    old_refreshed = old_meta.pop("last_refreshed_ts", None)
    same_data = pfile.is_file() and pfile.read_bytes() == data
    same_meta = old_meta == _json_roundtrip(meta)
    q_bytes = None if quarantine is None else st.json_bytes(quarantine)
    same_q = (q_bytes is None and not qfile.exists()) or (
        q_bytes is not None and qfile.is_file() and qfile.read_bytes() == q_bytes
    )
    if same_data and same_meta and same_q:
        return False
    stamp = old_refreshed if (same_data and same_meta and old_refreshed) else refreshed
    if not same_data:
        st.atomic_write_bytes(pfile, data)
    if not same_meta or not mfile.is_file():
        st.atomic_write_bytes(mfile, st.json_bytes({**meta, "last_refreshed_ts": stamp}))
    if not same_q:
        if q_bytes is None:
            qfile.unlink(missing_ok=True)
        else:
            st.atomic_write_bytes(qfile, q_bytes)
    return True


def _json_roundtrip(obj: Any) -> Any:
    """``obj`` as it reads back from :func:`store.json_bytes` (for change detection)."""
    return json.loads(st.json_bytes(obj))

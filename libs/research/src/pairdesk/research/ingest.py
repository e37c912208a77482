"""File-drop ingest: canonicalise -> DQ -> quarantine -> Parquet store (spec 004
§data-assets-pipeline 仕様 v1 ETL 手順 2-6, §監視・運用 (data pipeline) v1 隔離/セーフティ,
§データソース抽象化レイヤ v1 canonical_bar).

Input: a folder of ``<SYMBOL>_<timeframe>.csv``, ``.csv.gz`` or ``.parquet`` files with columns
``ts_utc, open, high, low, close[, volume]`` (names case-insensitive; others ignored), or
long-format files with a ``symbol`` column.

Choices where the spec is silent
--------------------------------
* **Timestamps** must be ISO-8601 text or Parquet timestamps; naive values are UTC, offsets are
  converted to UTC, a date alone is 00:00Z (the exchange trading date of a daily file). Each
  symbol's bars must sit on one bar grid -- declared (universe ``bar_anchor``) or inferred from
  the data (:func:`pairdesk.quant.sessions.infer_bar_anchor`, e.g. MetaTrader 4h/1d bars on
  New York + 7h); a file whose bars fit no grid is rejected rather than re-bucketed.
* **Symbols outside the universe** are ingested with the asset-class session defaults
  (:func:`pairdesk.quant.sessions.default_calendar`); the calendar used is recorded in each
  partition's ``__meta.json``.
* **Long format**: a file with a ``symbol`` column holds several symbols (see
  :func:`read_file_drop`).
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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pairdesk.quant.dq import PARTITION_COUNT_COLUMNS, DQParams, apply_dq, partition_dq
from pairdesk.quant.sessions import (
    BarAnchor,
    SessionCalendar,
    default_calendar,
    infer_bar_anchor,
    timeframe_to_timedelta,
)
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
_SYMBOL_RE = re.compile(r"\^?[A-Z0-9][A-Z0-9.\-]{0,31}")
#: File-name words that name a timeframe in long-format files (``sp500_subset_daily.csv.gz``).
_TF_WORDS = {
    "1d": ("1d", "d1", "daily", "day"),
    "1h": ("1h", "h1", "hourly", "60m"),
    "4h": ("4h", "h4"),
    "15m": ("15m", "m15"),
}


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


def _read_one(path: Path) -> pd.DataFrame:
    """One file -> frame indexed by ``ts_utc`` (file order kept), float64 prices/volume and, for
    a long-format file, a ``symbol`` column (upper-case)."""
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
    out.attrs["file"] = name
    if "symbol" in raw.columns:
        sym = raw["symbol"].astype(str).str.strip().str.upper().to_numpy()
        bad_sym = np.array([_SYMBOL_RE.fullmatch(x) is None for x in sym])
        if bad_sym.any():
            i = int(np.flatnonzero(bad_sym)[0])
            raise IngestError(f"{name}: invalid symbol at data row {i + 1}")
        out["symbol"] = sym
    return out


def _long_format_tf(name: str) -> str | None:
    """Timeframe named by a long-format file's words (``sp500_subset_daily.csv.gz`` -> 1d)."""
    stem = next((name[: -len(suf)] for suf in _SUFFIXES if name.lower().endswith(suf)), None)
    if stem is None:
        return None
    words = set(re.split(r"[_\-.\s]+", stem.lower()))
    hits = [tf for tf, names in _TF_WORDS.items() if words & set(names)]
    return hits[0] if len(hits) == 1 else None


def _check_grid(df: pd.DataFrame, files: Sequence[str], timeframe: str, anchor: BarAnchor) -> None:
    on = anchor.on_grid(df.index, timeframe)
    if not on.all():
        i = int(np.flatnonzero(~on)[0])
        a = anchor.describe()
        raise IngestError(
            f"{files[0] if len(files) == 1 else '/'.join(files)}: ts_utc {_iso(df.index[i])} "
            f"at data row {i + 1} is not on the {timeframe} grid of bar_anchor "
            f"{a['timezone']} {a['offset']}; wrong timeframe or bar_anchor?"
        )


def _grid_of(
    parts: Sequence[pd.DataFrame], timeframe: str, declared: BarAnchor | None
) -> BarAnchor:
    """The bar grid of one symbol's file parts: the declared anchor (every row checked) or the
    inferred one (:func:`pairdesk.quant.sessions.infer_bar_anchor`)."""
    if declared is not None:
        for part in parts:
            _check_grid(part, [str(part.attrs.get("file", "?"))], timeframe, declared)
        return declared
    us = np.concatenate([pd.DatetimeIndex(p.index).as_unit("us").asi8 for p in parts])
    idx = pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC")
    try:
        return infer_bar_anchor(idx, timeframe)
    except ValueError:
        # name the first row that is off the plain UTC grid, in its own file
        for part in parts:
            _check_grid(part, [str(part.attrs.get("file", "?"))], timeframe, BarAnchor())
        raise IngestError(f"timestamps are on no known {timeframe} bar grid") from None


def read_file_drop(
    path: Path,
    timeframe: str,
    symbols: Sequence[str] | None = None,
    bar_anchors: Mapping[str, BarAnchor | None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Read and canonicalise a file drop.

    Two layouts are read (column names case-insensitive, other columns ignored):

    * one file per symbol, ``<SYMBOL>_<timeframe>.csv|.csv.gz|.parquet`` with columns
      ``ts_utc, open, high, low, close[, volume]``;
    * long format: any file with a ``symbol`` column (rows are split by it). A file whose name
      is not ``<SYMBOL>_<tf>`` is taken as long format for ``timeframe`` when one word of its
      name names it (``daily``/``d1``/``1d``, ``hourly``/``h1``/``1h``, ``h4``/``4h``,
      ``m15``/``15m``), e.g. ``sp500_subset_daily.csv.gz``.

    ``ts_utc`` is ISO-8601 text (naive = UTC; a date alone = 00:00Z, the exchange trading date
    of a daily file) or a Parquet timestamp. Each symbol's bars must lie on one bar grid: the
    one declared in ``bar_anchors`` or else the one inferred from the data
    (:func:`pairdesk.quant.sessions.infer_bar_anchor`: UTC epoch, MetaTrader New York + 7h, ...).

    Parameters
    ----------
    path : Path
        The drop folder.
    timeframe : str
        Bar timeframe (``"15m"``, ``"1h"``, ``"4h"``, ``"1d"``); only files of it are read.
    symbols : list of str, optional
        Symbols to read (case-insensitive); ``None`` or empty = every symbol of the timeframe.
    bar_anchors : mapping SYMBOL -> BarAnchor or None, optional
        Declared grids (``None``/absent = infer).

    Returns
    -------
    dict SYMBOL -> DataFrame
        Index ``ts_utc`` (UTC, unit us, sorted, unique), float64 columns ``open, high, low,
        close, volume`` (volume NaN when absent). ``df.attrs`` holds ``symbol``, ``files``,
        ``rows_read`` (rows in the files), ``dedupe_drops`` (rows dropped by latest-wins
        dedupe on ``ts_utc``), ``bar_anchor`` (:class:`BarAnchor`) and ``bar_anchor_inferred``
        (bool). Rows with non-positive prices are kept (DQ drops them).

    Raises
    ------
    IngestError
        Missing folder, bad timeframe, no file for the timeframe, a requested symbol without
        data, missing columns, unparsable/off-grid timestamps, NaN/non-numeric/infinite prices,
        an empty file or a file whose every row has a non-positive price.
    """
    try:
        timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise IngestError(str(exc)) from exc
    folder = Path(path)
    if not folder.is_dir():
        raise IngestError(f"file-drop folder not found: {folder}")
    by_symbol: dict[str, list[Path]] = {}
    long_files: list[Path] = []
    other_tf: set[str] = set()
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        parsed = _split_name(f.name)
        if parsed is None:
            if _long_format_tf(f.name) == timeframe:
                long_files.append(f)
            continue
        sym, tf = parsed
        if tf == timeframe:
            by_symbol.setdefault(sym, []).append(f)
        else:
            other_tf.add(tf)
    if not by_symbol and not long_files:
        hint = f" (files exist for timeframe(s) {', '.join(sorted(other_tf))})" if other_tf else ""
        raise IngestError(f"no <SYMBOL>_{timeframe}.csv/.csv.gz/.parquet files in {folder}{hint}")
    wanted = [s.strip().upper() for s in symbols] if symbols else None
    if wanted and not long_files:
        unknown = [s for s in wanted if s not in by_symbol]
        if unknown:
            raise IngestError(
                f"unknown symbol(s) {', '.join(unknown)}: no {unknown[0]}_{timeframe}.csv/.csv.gz/.parquet in {folder}"
            )

    parts: dict[str, list[pd.DataFrame]] = {}
    names: dict[str, list[str]] = {}
    for f in sorted([*(p for ps in by_symbol.values() for p in ps), *long_files]):
        parsed = _split_name(f.name)
        if parsed is not None and wanted is not None and parsed[0] not in wanted:
            continue
        df = _read_one(f)
        if "symbol" in df.columns:
            if parsed is None and df.empty:
                continue
            for sym_obj, grp in df.groupby("symbol", sort=True):
                key = str(sym_obj)
                if wanted is not None and key not in wanted:
                    continue
                g = grp.drop(columns=["symbol"])
                g.attrs["file"] = f.name
                parts.setdefault(key, []).append(g)
                names.setdefault(key, []).append(f.name)
        elif parsed is None:
            raise IngestError(
                f"{f.name}: no symbol column and the name is not <SYMBOL>_<timeframe>"
            )
        else:
            parts.setdefault(parsed[0], []).append(df)
            names.setdefault(parsed[0], []).append(f.name)
    if wanted:
        unknown = [s for s in wanted if s not in parts]
        if unknown:
            raise IngestError(
                f"unknown symbol(s) {', '.join(unknown)}: no {unknown[0]}_{timeframe}.csv/.csv.gz/.parquet in {folder}"
            )
    order = list(dict.fromkeys(wanted)) if wanted else sorted(parts)
    if not order:
        raise IngestError(f"no <SYMBOL>_{timeframe} data in {folder}")

    anchors = {str(k).upper(): v for k, v in (bar_anchors or {}).items()}
    out: dict[str, pd.DataFrame] = {}
    for sym in order:
        sparts = parts[sym]
        declared = anchors.get(sym)
        grid = _grid_of(sparts, timeframe, declared)
        df = pd.concat(sparts) if len(sparts) > 1 else sparts[0]
        rows = len(df)
        # stable sort keeps file order among equal timestamps, so keep="last" = latest received
        df = df.iloc[np.argsort(pd.DatetimeIndex(df.index).asi8, kind="stable")]
        dup = df.index.duplicated(keep="last")
        df = df.loc[~dup].copy()
        df.attrs = {
            "symbol": sym,
            "files": list(dict.fromkeys(names[sym])),
            "rows_read": rows,
            "dedupe_drops": int(dup.sum()),
            "bar_anchor": grid,
            "bar_anchor_inferred": declared is None,
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
        Declared session calendars (from a universe file). A symbol not in it gets the
        asset-class defaults (:func:`pairdesk.quant.sessions.default_calendar`, class inferred
        from the symbol). A calendar's ``bar_anchor`` is checked against the data; when it is
        ``None`` the grid is inferred from the data (:func:`read_file_drop`).
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
        Any :func:`read_file_drop` error. Raised before anything is written.
    OSError
        A write failure; files already replaced are complete and consistent, the others keep
        their previous content, and no temporary file is left behind. Re-running repairs it.
    """
    params = dq_params or DQParams()
    if not source_id or not isinstance(source_id, str):
        raise IngestError("source_id must be a non-empty string")
    declared = {str(k).upper(): v for k, v in universe_calendars.items()}
    frames = read_file_drop(
        Path(source_dir),
        timeframe,
        symbols,
        bar_anchors={k: c.bar_anchor for k, c in declared.items()},
    )
    cals: dict[str, SessionCalendar] = {}
    for sym, df in frames.items():
        grid = df.attrs["bar_anchor"]
        if sym in declared:
            cals[sym] = replace(declared[sym], bar_anchor=grid)
        else:
            try:
                cals[sym] = default_calendar(sym, bar_anchor=grid, daily=timeframe == "1d")
            except ValueError as exc:
                raise IngestError(f"{sym}: no session calendar ({exc})") from exc
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

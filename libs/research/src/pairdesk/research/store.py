"""Parquet store of canonical bars (spec 004 §data-assets-pipeline 仕様 v1 "ストレージ/パーティション",
§監視・運用 (data pipeline) v1 "隔離", "セーフティ/一貫性").

Layout (one file per UTC month -- *choice*: the spec's example names files per day,
``{symbol}_{YYYY-MM-DD}.parquet``, but its partition key is ``timeframe / symbol / YYYY-MM`` and a
month of 1h bars is ~500 rows, so one file per partition keeps the meta, the quarantine flag and
the data of a partition together)::

    {store}/{timeframe}/{symbol}/__watermark.json                  {"last_ts": ...}
    {store}/{timeframe}/{symbol}/{YYYY}/{YYYY-MM}/{symbol}_{YYYY-MM}.parquet
    {store}/{timeframe}/{symbol}/{YYYY}/{YYYY-MM}/__meta.json      counts, DQ counters, params
    {store}/{timeframe}/{symbol}/{YYYY}/{YYYY-MM}/__quarantine.json  only while quarantined

Parquet columns (``canonical_bar``): ``ts_utc`` timestamp[us, UTC] (bar open), ``symbol``,
``timeframe``, ``open``, ``high``, ``low``, ``close`` (float64), ``volume`` (float64, null when
unknown), ``quality_flag``, ``imputed``, ``spike``, ``source_id``, ``ingest_run_id``.

Every file is written atomically (temporary file in the same folder, ``fsync``, ``os.replace``),
so a reader sees either the old or the new file, never a torn one. ``__meta.json`` records the
sha256 of its Parquet file; :func:`load_bars` refuses a partition whose file does not match (a
crash between the two renames), and re-running the ingest repairs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "BAR_SCHEMA",
    "META_FILE",
    "QUARANTINE_FILE",
    "WATERMARK_FILE",
    "StoreError",
    "atomic_write_bytes",
    "bars_to_parquet_bytes",
    "json_bytes",
    "list_partitions",
    "load_bars",
    "load_pair",
    "partition_dir",
    "partition_file",
    "read_json",
    "read_partition",
    "read_watermark",
    "symbol_dir",
]

META_FILE = "__meta.json"
QUARANTINE_FILE = "__quarantine.json"
WATERMARK_FILE = "__watermark.json"
_MONTH_RE = re.compile(r"^[0-9]{4}-[0-9]{2}$")
_USABLE_COLUMNS = ["open", "high", "low", "close", "volume"]

#: Arrow schema of a partition file (canonical_bar, spec 004 §データソース抽象化レイヤ v1).
BAR_SCHEMA = pa.schema(
    [
        pa.field("ts_utc", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64()),
        pa.field("quality_flag", pa.string(), nullable=False),
        pa.field("imputed", pa.bool_(), nullable=False),
        pa.field("spike", pa.bool_(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("ingest_run_id", pa.string(), nullable=False),
    ]
)


class StoreError(ValueError):
    """The store has no usable data for the request, or a partition is inconsistent."""


# ---------------------------------------------------------------------- paths
def symbol_dir(store_dir: str | Path, timeframe: str, symbol: str) -> Path:
    """``{store}/{timeframe}/{SYMBOL}``."""
    return Path(store_dir) / timeframe / symbol.upper()


def partition_dir(store_dir: str | Path, timeframe: str, symbol: str, month: str) -> Path:
    """``{store}/{timeframe}/{SYMBOL}/{YYYY}/{YYYY-MM}`` for ``month = "YYYY-MM"``."""
    if not _MONTH_RE.match(month):
        raise ValueError(f"partition month {month!r} is not YYYY-MM")
    return symbol_dir(store_dir, timeframe, symbol) / month[:4] / month


def partition_file(store_dir: str | Path, timeframe: str, symbol: str, month: str) -> Path:
    """``.../{YYYY}/{YYYY-MM}/{SYMBOL}_{YYYY-MM}.parquet``."""
    return partition_dir(store_dir, timeframe, symbol, month) / f"{symbol.upper()}_{month}.parquet"


def list_partitions(store_dir: str | Path, timeframe: str, symbol: str) -> list[str]:
    """Months (``"YYYY-MM"``, sorted) that have a partition folder with a ``__meta.json``."""
    root = symbol_dir(store_dir, timeframe, symbol)
    if not root.is_dir():
        return []
    out = []
    for year in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        for month in sorted(p for p in year.iterdir() if p.is_dir() and _MONTH_RE.match(p.name)):
            if (month / META_FILE).is_file():
                out.append(month.name)
    return out


# ---------------------------------------------------------------------- atomic IO
def _write_all(fh: io.BufferedWriter, data: bytes) -> None:
    """Write ``data`` to an open file (a separate function so tests can inject a failure)."""
    fh.write(data)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    On any failure the temporary file is removed and ``path`` keeps its previous content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            _write_all(fh, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_bytes(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, 2-space indent, UTF-8, trailing newline)."""
    return (
        json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    ).encode()


def read_json(path: Path) -> Any:
    """Parse a JSON file; ``None`` when it does not exist."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def bars_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialise canonical rows (columns of :data:`BAR_SCHEMA`, ``ts_utc`` as a column) to Parquet.

    The output is a deterministic function of the content (no pandas metadata, fixed row
    group, snappy compression), which is what makes re-ingesting the same input byte-identical.
    """
    cols = {}
    for f in BAR_SCHEMA:
        values = df[f.name]
        if f.name == "ts_utc":
            arr = pa.array(pd.DatetimeIndex(values).as_unit("us"), type=f.type)
        elif pa.types.is_floating(f.type):
            arr = pa.array(np.asarray(values, dtype=np.float64), type=f.type, from_pandas=True)
        elif pa.types.is_boolean(f.type):
            arr = pa.array(np.asarray(values, dtype=bool), type=f.type)
        else:
            arr = pa.array(pd.Series(values).astype(str).to_numpy(dtype=object), type=f.type)
        cols[f.name] = arr
    table = pa.Table.from_arrays(list(cols.values()), schema=BAR_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy", row_group_size=max(len(df), 1))
    return bytes(sink.getvalue().to_pybytes())


def read_partition(path: Path) -> pd.DataFrame:
    """Read one partition file into a DataFrame with a ``ts_utc`` column (UTC, unit us)."""
    df = pq.read_table(path).to_pandas()
    df["ts_utc"] = pd.DatetimeIndex(df["ts_utc"]).tz_convert("UTC").as_unit("us")
    return df


def read_watermark(store_dir: str | Path, timeframe: str, symbol: str) -> pd.Timestamp | None:
    """``last_ts`` of ``__watermark.json`` for symbol × timeframe, or ``None`` if absent."""
    wm = read_json(symbol_dir(store_dir, timeframe, symbol) / WATERMARK_FILE)
    return None if not wm else pd.Timestamp(wm["last_ts"]).tz_convert("UTC")


# ---------------------------------------------------------------------- loading
def _bound(x: Any, what: str) -> pd.Timestamp | None:
    if x is None:
        return None
    try:
        ts = pd.Timestamp(x)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} {x!r} is not a timestamp") from exc
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _iter_months(
    store_dir: str | Path,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> Iterator[str]:
    lo = None if start is None else str(start.tz_localize(None).to_period("M"))
    hi = (
        None
        if end is None
        else str((end - pd.Timedelta(microseconds=1)).tz_localize(None).to_period("M"))
    )
    for month in list_partitions(store_dir, timeframe, symbol):
        if (lo is None or month >= lo) and (hi is None or month <= hi):
            yield month


def load_bars(
    store_dir: str | Path,
    symbol: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
    include_quarantined: bool = False,
) -> pd.DataFrame:
    """Usable bars of one symbol from the store.

    Parameters
    ----------
    store_dir : path
        Store root.
    symbol, timeframe : str
        Canonical symbol (case-insensitive) and timeframe folder (``"1h"``).
    start, end : timestamp-like, optional
        Half-open UTC range ``[start, end)`` of bar-open times (naive values are read as UTC);
        ``None`` = unbounded. Same convention as ``provenance.Period``.
    include_quarantined : bool
        Also return rows of quarantined months (default: they are excluded, spec 004 §隔離).

    Returns
    -------
    DataFrame, index ``ts_utc`` (UTC, unit us, sorted)
        Columns ``open, high, low, close, volume`` (float64; volume NaN when unknown) of the rows
        with ``quality_flag == "ok"`` or imputed ``"missing"`` rows.

    Raises
    ------
    StoreError
        No stored data for the symbol/timeframe, none in the range (the message says when it was
        all quarantined), or a partition file that does not match its ``__meta.json``.
    """
    sym = symbol.upper()
    lo, hi = _bound(start, "start"), _bound(end, "end")
    root = symbol_dir(store_dir, timeframe, sym)
    if not list_partitions(store_dir, timeframe, sym):
        raise StoreError(f"no stored {timeframe} bars for {sym} under {root}")
    frames = []
    skipped: list[str] = []
    for month in _iter_months(store_dir, sym, timeframe, lo, hi):
        pdir = partition_dir(store_dir, timeframe, sym, month)
        if (pdir / QUARANTINE_FILE).is_file() and not include_quarantined:
            skipped.append(month)
            continue
        meta = read_json(pdir / META_FILE)
        path = partition_file(store_dir, timeframe, sym, month)
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != meta.get("data_sha256"):
            raise StoreError(
                f"partition {path} does not match its {META_FILE} (interrupted write?); re-run the ingest"
            )
        df = read_partition(path)
        usable = (df["quality_flag"] == "ok") | ((df["quality_flag"] == "missing") & df["imputed"])
        frames.append(df.loc[usable.to_numpy(), ["ts_utc", *_USABLE_COLUMNS]])
    out = (
        pd.concat(frames, ignore_index=True).set_index("ts_utc").sort_index()
        if frames
        else pd.DataFrame(
            columns=_USABLE_COLUMNS, index=pd.DatetimeIndex([], tz="UTC", name="ts_utc")
        )
    )
    if lo is not None:
        out = out.loc[out.index >= lo]
    if hi is not None:
        out = out.loc[out.index < hi]
    if out.empty:
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else '+inf'})"
        why = (
            f"; {len(skipped)} quarantined month(s) skipped ({', '.join(skipped)}), pass include_quarantined=True to read them"
            if skipped
            else ""
        )
        raise StoreError(f"no usable {timeframe} bars for {sym} in {rng} under {root}{why}")
    out = out.astype(np.float64)
    out.index = pd.DatetimeIndex(out.index).as_unit("us").rename("ts_utc")
    return out


def load_pair(
    store_dir: str | Path,
    sym_a: str,
    sym_b: str,
    timeframe: str,
    start: Any = None,
    end: Any = None,
    include_quarantined: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both legs of a pair aligned on their common bar-open times (inner join, no fill).

    Parameters are those of :func:`load_bars`. A month quarantined for one leg removes its bars
    from that leg only; the inner join then drops them from the pair.

    Returns
    -------
    (bars_a, bars_b) : DataFrames with identical ``ts_utc`` index.

    Raises
    ------
    StoreError
        Either leg has no usable data, or the legs share no timestamp in the range.
    """
    a = load_bars(store_dir, sym_a, timeframe, start, end, include_quarantined)
    b = load_bars(store_dir, sym_b, timeframe, start, end, include_quarantined)
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise StoreError(
            f"{sym_a.upper()} and {sym_b.upper()} share no {timeframe} bar in the requested range"
        )
    return a.loc[common], b.loc[common]

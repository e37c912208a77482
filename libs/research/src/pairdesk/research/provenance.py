"""Periods, hashes and run stamps for reproducible research runs (spec 004 §backtest 再現性/シード,
§閾値最適化 実装指針: seed, data hash and code hash are logged with every output)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PeriodError(ValueError):
    """A ``--period`` string that cannot be parsed or is empty/inverted."""


@dataclass(frozen=True)
class Period:
    """Half-open UTC interval ``[start, end)``."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d}:{(self.end - pd.Timedelta(days=1)):%Y-%m-%d}"


def parse_period(text: str) -> Period:
    """Parse ``START:END`` where each side is ``YYYY-MM`` or ``YYYY-MM-DD`` (spec 004 CLI form
    ``--period 2022-01:2024-06``). A month end means the whole month is included.

    Raises
    ------
    PeriodError
        Malformed text, or end not after start.
    """
    parts = text.split(":")
    if len(parts) != 2:
        raise PeriodError(f"period {text!r} must look like 2022-01:2024-06 or 2022-01-15:2024-06-30")
    s, e = (p.strip() for p in parts)

    def edge(x: str, is_end: bool) -> pd.Timestamp:
        if _MONTH.match(x):
            ts = pd.Timestamp(f"{x}-01", tz="UTC")
            return ts + pd.offsets.MonthBegin(1) if is_end else ts
        if _DAY.match(x):
            ts = pd.Timestamp(x, tz="UTC")
            return ts + pd.Timedelta(days=1) if is_end else ts
        raise PeriodError(f"period bound {x!r} is not YYYY-MM or YYYY-MM-DD")

    try:
        start, end = edge(s, False), edge(e, True)
    except ValueError as exc:
        raise PeriodError(f"period {text!r}: {exc}") from exc
    if end <= start:
        raise PeriodError(f"period {text!r} ends before it starts")
    return Period(start, end)


def sha256_json(obj: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace) of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def frame_hash(*frames: pd.DataFrame) -> str:
    """SHA-256 over index (int64 ns) and float64 values of the given frames — the ``data_hash``."""
    h = hashlib.sha256()
    for f in frames:
        idx = f.index.as_unit("ns").asi8 if isinstance(f.index, pd.DatetimeIndex) else np.asarray(f.index)
        h.update(np.asarray(idx).tobytes())
        h.update(np.ascontiguousarray(f.to_numpy(dtype=np.float64)).tobytes())
        h.update(",".join(map(str, f.columns)).encode())
    return h.hexdigest()


def code_hash() -> str:
    """SHA-256 of the source of ``pairdesk.quant`` and ``pairdesk.research`` (the ``code_hash``)."""
    import pairdesk.quant
    import pairdesk.research

    h = hashlib.sha256()
    for pkg in (pairdesk.quant, pairdesk.research):
        root = Path(next(iter(pkg.__path__)))
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()

"""Fixtures for the research pipeline: small real-data file drops and a trained model (module-scoped
so the CLI end-to-end tests share one ingest/train)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
METALS = REPO / "data" / "mt5_simom1_h1"


def write_drop(dest: Path, start: str, end: str, mutate: Callable[[str, pd.DataFrame], pd.DataFrame] | None = None) -> Path:
    """Copy the shipped XAUUSD/XAGUSD 1h files, sliced to [start, end), into a file-drop folder."""
    dest.mkdir(parents=True, exist_ok=True)
    for sym in ("XAUUSD", "XAGUSD"):
        df = pd.read_csv(METALS / f"{sym}_1h.csv.gz")
        ts = pd.to_datetime(df["ts_utc"], utc=True)
        df = df[(ts >= pd.Timestamp(start, tz="UTC")) & (ts < pd.Timestamp(end, tz="UTC"))].reset_index(drop=True)
        if mutate is not None:
            df = mutate(sym, df)
        df.to_csv(dest / f"{sym}_1h.csv", index=False)
    return dest

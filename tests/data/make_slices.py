"""Cut the test slices in tests/data/ from the project's shared data folder (real data, rows
copied byte for byte; see tests/data/README.md). Run from the repository root:

    python tests/data/make_slices.py /path/to/shared/data

Each slice keeps the source file's header and every data line whose ``ts_utc`` text lies in
``[start, end)`` (ISO-8601 text sorts in time order), and for the long-format equities file
only the listed symbols. Output: gzip (mtime 0, so re-cutting gives identical bytes) and
``manifest.json`` with rows, first/last ``ts_utc`` and sha256 of every slice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: folder -> (files, start, end, symbols for long format, why this window)
SLICES: dict[str, tuple[tuple[str, ...], str, str, tuple[str, ...], str]] = {
    "mt5_simom1_h1": (
        ("XAUUSD_1h", "XAGUSD_1h", "UKOIL_1h", "USOIL_1h", "NZDUSD_1h"),
        "2024-03-01",
        "2024-04-06",
        (),
        "US DST start 2024-03-10, EU 2024-03-31, Good Friday 2024-03-29, five weekends",
    ),
    "mt5_simom1_h4": (
        ("EURUSD_4h", "USDJPY_4h", "XAUUSD_4h"),
        "2018-10-22",
        "2018-11-30",
        (),
        "EU DST end 2018-10-28, US DST end 2018-11-04, Thanksgiving 2018-11-22",
    ),
    "mt5_simom1_d1": (
        ("XAUUSD_1d", "XAGUSD_1d"),
        "2019-02-15",
        "2019-05-15",
        (),
        "US DST start 2019-03-10, Good Friday 2019-04-19, weekends",
    ),
    "mt5_andre_h1": (
        ("EURUSD_1h", "GBPCAD_1h", "AUDJPY_1h", "XAGUSD_1h"),
        "2019-10-21",
        "2020-01-10",
        (),
        "EU DST end 2019-10-27, US DST end 2019-11-03, Thanksgiving, Christmas, New Year",
    ),
    "binance_spot_1h": (
        ("BTCUSDT_1h", "ETHUSDT_1h", "PAXGUSDT_1h"),
        "2025-03-24",
        "2025-04-07",
        (),
        "EU DST start 2025-03-30 (irrelevant for 24/7 UTC data), two weekends",
    ),
    "binance_spot_15m": (
        ("BTCUSDT_15m", "ETHUSDT_15m"),
        "2025-03-28",
        "2025-04-04",
        (),
        "EU DST start 2025-03-30, one weekend",
    ),
    "us_equities_daily_2013_2018": (
        ("sp500_subset_daily",),
        "2016-10-17",
        "2017-01-14",
        ("KO", "PEP", "GOOG", "GOOGL", "CL"),
        "Thanksgiving 2016-11-24, Christmas observed 2016-12-26, New Year observed 2017-01-02",
    ),
    "pypi_arch_daily": (
        ("SP500_1d", "NASDAQ_1d"),
        "2016-10-17",
        "2017-01-14",
        (),
        "Thanksgiving 2016-11-24, Christmas observed 2016-12-26, New Year observed 2017-01-02",
    ),
}


def cut(source: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for folder, (files, start, end, symbols, why) in SLICES.items():
        (HERE / folder).mkdir(exist_ok=True)
        for stem in files:
            rel = f"{folder}/{stem}.csv.gz"
            lines = gzip.decompress((source / rel).read_bytes()).decode().splitlines(True)
            header, body = lines[0], lines[1:]
            cols = header.strip().split(",")
            i_ts = cols.index("ts_utc")
            i_sym = cols.index("symbol") if "symbol" in cols else None
            keep = []
            for line in body:
                f = line.rstrip("\n").split(",")
                if not start <= f[i_ts] < end:
                    continue
                if i_sym is not None and symbols and f[i_sym] not in symbols:
                    continue
                keep.append(line)
            buf = io.BytesIO()
            with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
                gz.write((header + "".join(keep)).encode())
            data = buf.getvalue()
            (HERE / rel).write_bytes(data)
            first = keep[0].split(",")[i_ts]
            last = keep[-1].split(",")[i_ts]
            out.append(
                {
                    "file": rel,
                    "source_file": rel,
                    "ts_utc_from": start,
                    "ts_utc_to_exclusive": end,
                    "symbols": list(symbols),
                    "rows": len(keep),
                    "first_ts": first,
                    "last_ts": last,
                    "why": why,
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    (HERE / "manifest.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    for entry in cut(Path(sys.argv[1])):
        print(entry["file"], entry["rows"], entry["first_ts"], entry["last_ts"])

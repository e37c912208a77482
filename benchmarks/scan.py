"""Pair-discovery benchmark: ``scan_pairs`` vs a plain statsmodels loop, on real data.

Usage (from the repository root)::

    python3 -m uv run --frozen python benchmarks/scan.py [--sample-crypto 4] [--sample-equities 24]

Datasets (read straight from the CSV files; the Parquet store is not involved):

1. the 28 Binance spot 1h symbols of ``shared/data/binance_spot_1h`` (378 pairs, ~12.2k-12.6k
   bars each, every bar of every file) — target < 10 s;
2. the 48 US equities of ``shared/data/us_equities_daily_2013_2018`` (long format, 1,128 pairs,
   ~1,259 daily bars; GOOG/FOX/FOXA/NWS/NWSA shorter) — target < 5 s.

"ours" is :func:`pairdesk.quant.pairs.scan_pairs` on the wide log-close frame (alignment per pair,
both Engle–Granger orderings, Johansen, ADF of the spread, half-life, Hurst, costs, BH, ranking),
median of ``--repeats`` runs after a warm-up call that loads the numba cache (its time is printed
too). The plain loop does, per pair, the inner join, ``coint(a, b)``, ``coint(b, a)``,
``coint_johansen(det_order=0, k_ar_diff=1)`` and ``adfuller(spread, autolag="AIC")`` — the same
tests with default statsmodels calls. statsmodels needs ~2-6 s per 12k-bar ``coint``, so the
loop is timed on an evenly spaced sample of pairs and extrapolated to all pairs (the output says
so); the sample also checks that our p-values equal statsmodels' (max |Δ|).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from itertools import combinations
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import statsmodels
import yaml
from pairdesk.quant.costs import CostModel
from pairdesk.quant.pairs import ScanParams, scan_pairs
from statsmodels.tsa.stattools import adfuller, coint
from statsmodels.tsa.vector_ar.vecm import coint_johansen

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAIRDESK_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_binance() -> pd.DataFrame:
    cols = {}
    for f in sorted((SHARED / "binance_spot_1h").glob("*_1h.csv.gz")):
        df = pd.read_csv(f, usecols=["ts_utc", "close"])
        idx = pd.DatetimeIndex(pd.to_datetime(df["ts_utc"], utc=True))
        cols[f.name.split("_")[0]] = pd.Series(np.log(df["close"].to_numpy()), index=idx)
    return pd.concat(cols, axis=1).sort_index()


def load_equities() -> pd.DataFrame:
    df = pd.read_csv(
        SHARED / "us_equities_daily_2013_2018" / "sp500_subset_daily.csv.gz",
        usecols=["ts_utc", "symbol", "close"],
    )
    df["ts_utc"] = pd.to_datetime(df["ts_utc"], utc=True)
    wide = df.pivot(index="ts_utc", columns="symbol", values="close").sort_index()
    return wide.apply(np.log)


def plain_pair(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """The plain statsmodels loop body for one pair."""
    sub = pd.concat([a, b], axis=1, join="inner").dropna()
    x, y = sub.iloc[:, 0].to_numpy(), sub.iloc[:, 1].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_ab = coint(x, y)[1]
        p_ba = coint(y, x)[1]
        jo = coint_johansen(np.column_stack([x, y]), 0, 1)
        beta = np.polyfit(y, x, 1)[0]
        adf = adfuller(x - beta * y, regression="c", autolag="AIC")
    return {
        "eg_pvalue_ab": p_ab,
        "eg_pvalue_ba": p_ba,
        "johansen_trace": jo.lr1[0],
        "adf_pvalue": adf[1],
    }


def bench(name: str, wide: pd.DataFrame, target: float, sample: int, repeats: int) -> list[str]:
    costs = CostModel.from_mapping(
        yaml.safe_load((REPO / "config" / "cost_table.yaml").read_text()), wide.columns
    )
    params = ScanParams()
    t0 = time.perf_counter()
    res = scan_pairs(wide, params, costs)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = scan_pairs(wide, params, costs)
        times.append(time.perf_counter() - t0)
    ours = statistics.median(times)
    pairs = list(combinations(list(wide.columns), 2))
    step = max(1, len(pairs) // sample)
    chosen = pairs[::step][:sample]
    ours_rows = {str(r["pair_id"]): r for r in res.to_dict("records")}
    t0 = time.perf_counter()
    refs = {f"{a}_{b}": plain_pair(wide[a], wide[b]) for a, b in chosen}
    loop = time.perf_counter() - t0
    per_pair = loop / len(chosen)
    extrap = per_pair * len(pairs)
    dev = {
        k: max(abs(float(ours_rows[pid][k]) - v[k]) for pid, v in refs.items())
        for k in next(iter(refs.values()))
    }
    bars = res["n_bars"]
    return [
        f"{name}: {wide.shape[1]} symbols, {len(pairs)} pairs, common bars per pair "
        f"{bars.min()}..{bars.max()} (median {int(bars.median())})",
        f"  ours scan_pairs      : {ours:8.3f} s median of {repeats} (min {min(times):.3f} s; first call incl. "
        f"numba cache load {first:.3f} s)  target < {target:g} s  {'PASS' if ours < target else 'FAIL'}",
        f"  plain statsmodels    : {per_pair:8.3f} s per pair, timed on {len(chosen)} evenly spaced pairs "
        f"({loop:.1f} s) -> extrapolated {extrap:8.1f} s for {len(pairs)} pairs",
        f"  ratio plain / ours   : {extrap / ours:8.0f}x",
        "  check on the sample  : max |ours - statsmodels| "
        + ", ".join(f"{k} {v:.1e}" for k, v in dev.items()),
        f"  selected             : {int(res['selected'].sum())} pairs (BH q <= {params.alpha}); "
        f"top: {', '.join(res['pair_id'].head(3))}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample-crypto", type=int, default=4)
    ap.add_argument("--sample-equities", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not (SHARED / "binance_spot_1h").is_dir():
        sys.exit(f"error: shared data folder not found: {SHARED} (set PAIRDESK_SHARED_DATA)")
    load = os.getloadavg()
    print(
        f"nproc={len(os.sched_getaffinity(0))}  numba threads={numba.get_num_threads()}  "
        f"load avg={load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
    )
    print(
        f"python {platform.python_version()}  numpy {np.__version__}  numba {numba.__version__}  "
        f"pandas {pd.__version__}  statsmodels {statsmodels.__version__}"
    )
    for line in bench("binance_spot_1h", load_binance(), 10.0, args.sample_crypto, args.repeats):
        print(line)
    for line in bench(
        "us_equities_daily", load_equities(), 5.0, args.sample_equities, args.repeats
    ):
        print(line)


if __name__ == "__main__":
    main()

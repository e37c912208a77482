"""Numba compile-time benchmark: where the cold JIT time of ``pairdesk demo`` goes.

Usage (from the repository root)::

    python3 -m uv run --frozen python benchmarks/compile.py            # cold + warm demo, ~3-4 min
    python3 -m uv run --frozen python benchmarks/compile.py --json out.json

The parent process starts two children that each run the real ``pairdesk demo`` pipeline
(README command 1: ingest → bt scan → bt train → bt run on ``data/mt5_andre_h1``, the same call
as the CLI, output in a temporary folder) in-process:

1. **cold**: ``NUMBA_CACHE_DIR`` is a new, empty temporary directory, so every kernel is compiled;
2. **warm**: the same directory again, so every kernel is loaded from the on-disk cache.

Each child installs a listener on numba's ``numba:compile`` event (fired around each real
compilation, never around a cache load) and records, per dispatcher, the compilations and their
*exclusive* seconds (the time of a kernel's own compile minus that of the callees compiled while
it was being typed; helpers marked ``forceinline`` are compiled with their callers' LLVM module
and count to the callee). ``dispatcher.signatures`` gives the specialisations kept, and
``dispatcher.stats`` the cache hits/misses. The table groups the dispatchers by kernel family
(the module that defines them; ``other`` = numba's own library overloads such as ``np.empty``,
compiled once per argument type for the kernels) and prints the total compile seconds, i.e. the JIT time on the
critical path of the demo, and the wall time of each run.

Measured (2026-12-08, shared 2-core machine, other jobs running; compile seconds +-10 %):

=================== ============================ ============================
family              before: cold s (specs)       after: cold s (specs)
=================== ============================ ============================
pair scan           12.35 (17 for 10 kernels)    5.18 (10)
features            8.94 (33 for 31)             9.44 (31)  (noise; 2 copies fewer)
engine              9.38 (21 for 18)             8.59 (21)  (not changed here)
costs/metrics/stats 1.30 (17 for 11)             1.19 (17)  (costs not changed here)
labels, DQ          0.64                         0.70
numba overloads     3.97                         4.60
TOTAL               36.7                         29.8
demo wall cold/warm 116 s / 75 s                 106 s / 76 s
=================== ============================ ============================
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

FAMILIES = {
    "_feature_kernels": "features",
    "features": "features",
    "incremental": "features",
    "_pairs_kernels": "pair scan",
    "pairs": "pair scan",
    "labels": "labels",
    "dq": "DQ",
    "costs": "costs/metrics/stats",
    "metrics": "costs/metrics/stats",
    "stats": "costs/metrics/stats",
    "classification": "costs/metrics/stats",
    "cv": "costs/metrics/stats",
    "rule": "engine",
    "_portfolio_kernel": "engine",
    "portfolio": "engine",
    "backtest": "engine",
}


def _child(out_json: str) -> None:
    """Run the demo in this process under a compile listener; write the per-dispatcher record."""
    from numba.core import event

    stack: list[list[Any]] = []  # [key, t0, child seconds]
    rec: dict[str, dict[str, float]] = defaultdict(
        lambda: {"compiles": 0, "excl_s": 0.0, "incl_s": 0.0}
    )
    dispatchers: dict[str, Any] = {}
    roots = [0.0]

    def key_of(disp: Any) -> str:
        fn = disp.py_func
        return f"{fn.__module__}.{fn.__qualname__}"

    class Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            stack.append([key_of(ev.data["dispatcher"]), time.perf_counter(), 0.0])
            dispatchers[stack[-1][0]] = ev.data["dispatcher"]

        def on_end(self, ev: Any) -> None:
            key, t0, child = stack.pop()
            dur = time.perf_counter() - t0
            r = rec[key]
            r["compiles"] += 1
            r["incl_s"] += dur
            r["excl_s"] += dur - child
            if stack:
                stack[-1][2] += dur
            else:
                roots[0] += dur

    event.register("numba:compile", Listener())
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libs" / "research" / "src"))
    from pairdesk.research import cli

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        cli.demo(out=Path(out))
    wall = time.perf_counter() - t0

    # every dispatcher of pairdesk.quant, also those only loaded from the cache
    import pairdesk.quant as pq
    from numba.core.registry import CPUDispatcher

    for name in list(sys.modules):
        if not name.startswith("pairdesk.quant"):
            continue
        for obj in vars(sys.modules[name]).values():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == name:
                dispatchers.setdefault(key_of(obj), obj)
    del pq
    rows = {}
    for key, disp in dispatchers.items():
        st = disp.stats
        rows[key] = {
            **rec.get(key, {"compiles": 0, "excl_s": 0.0, "incl_s": 0.0}),
            "signatures": [str(s) for s in disp.signatures],
            "cache_hits": int(sum(st.cache_hits.values())),
            "cache_misses": int(sum(st.cache_misses.values())),
        }
    Path(out_json).write_text(json.dumps({"wall_s": wall, "compile_s": roots[0], "rows": rows}))


def _run(cache_dir: str, label: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        path = fh.name
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    print(
        f"[{label}] running the demo with NUMBA_CACHE_DIR={cache_dir} ...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    cpu0 = os.times()
    subprocess.run(
        [sys.executable, __file__, "--child", path], env=env, check=True, stdout=subprocess.DEVNULL
    )
    cpu1 = os.times()
    res = json.loads(Path(path).read_text())
    os.unlink(path)
    res["process_wall_s"] = time.perf_counter() - t0
    res["process_cpu_s"] = (cpu1.children_user - cpu0.children_user) + (
        cpu1.children_system - cpu0.children_system
    )
    return res


def _family(key: str) -> str:
    mod = key.split(".")[2] if key.startswith("pairdesk.quant.") else key
    return FAMILIES.get(mod, "other")


def _table(cold: dict[str, Any], warm: dict[str, Any]) -> str:
    lines = []
    fam_s: dict[str, float] = defaultdict(float)
    fam_sig: dict[str, int] = defaultdict(int)
    fam_n: dict[str, int] = defaultdict(int)
    rows = sorted(cold["rows"].items(), key=lambda kv: (_family(kv[0]), -kv[1]["excl_s"]))
    lines.append(f"{'family':<20} {'function':<52} {'cold s':>7} {'specs':>5} {'compiles':>8}")
    for key, r in rows:
        fam = _family(key)
        nsig = len(r["signatures"])
        if nsig == 0:
            continue
        fam_s[fam] += r["excl_s"]
        fam_sig[fam] += nsig
        fam_n[fam] += 1
        if fam == "other":  # numba's own overloads (np.empty, str, ...): one summary row below
            continue
        short = key.removeprefix("pairdesk.quant.")
        flag = "  <-- >1 specialisation" if nsig > 1 else ""
        lines.append(
            f"{fam:<20} {short:<52} {r['excl_s']:7.2f} {nsig:5d} {int(r['compiles']):8d}{flag}"
        )
    lines.append("")
    lines.append(
        f"{'family':<20} {'cold compile s':>14} {'dispatchers':>11} {'specialisations':>15}"
    )
    for fam in sorted(fam_s, key=lambda f: -fam_s[f]):
        lines.append(f"{fam:<20} {fam_s[fam]:14.2f} {fam_n[fam]:11d} {fam_sig[fam]:15d}")
    lines.append(f"{'TOTAL':<20} {sum(fam_s.values()):14.2f}")
    lines.append("(other = numba's own library overloads compiled for the kernels above)")
    lines.append("")
    lines.append(
        f"compile seconds on the critical path (all top-level numba compiles): cold "
        f"{cold['compile_s']:.2f} s, warm {warm['compile_s']:.2f} s"
    )
    lines.append(
        f"demo wall (in-process): cold {cold['wall_s']:.1f} s, warm {warm['wall_s']:.1f} s; "
        f"process wall incl. imports: cold {cold['process_wall_s']:.1f} s, "
        f"warm {warm['process_wall_s']:.1f} s"
    )
    lines.append(
        f"process CPU (user+sys): cold {cold['process_cpu_s']:.1f} s, warm {warm['process_cpu_s']:.1f} s"
    )
    recompiled = [k for k, r in warm["rows"].items() if r["compiles"]]
    lines.append(
        f"warm run: {len(recompiled)} dispatcher(s) compiled again"
        + (f": {', '.join(recompiled)}" if recompiled else " (everything loaded from the cache)")
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the raw cold/warm records to this file")
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as cache:
        cold = _run(cache, "cold")
        warm = _run(cache, "warm")
    print(_table(cold, warm))
    if args.json:
        Path(args.json).write_text(json.dumps({"cold": cold, "warm": warm}, indent=1))


if __name__ == "__main__":
    main()

"""Pairdesk pure numerics (DESIGN.md §2, §4): arrays/DataFrames in, arrays/DataFrames/dataclasses out.

Compiled kernels are cached on disk (numba ``cache=True``). Numba keys a cached function on the
content of *its own* source file only, so a kernel that calls a function from another module
would keep running the old callee after that module changes (seen: a cached bootstrap kept an
old KPI formula). Importing this package therefore points numba's cache at a directory named
after the SHA-256 of every module of ``pairdesk.quant``: any source change starts a fresh cache,
and older cache directories are pruned. A user-set ``NUMBA_CACHE_DIR`` is left alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numba


def _point_numba_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    root = here / "__pycache__"
    target = root / f"numba-{digest.hexdigest()[:16]}"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only install: numba falls back to its own locators
        return
    setattr(numba.config, "CACHE_DIR", str(target))  # noqa: B010 - numba.config is untyped
    for old in root.glob("numba-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


_point_numba_cache()

"""One test module for everything that runs against the started platform (``platform`` fixture).

One module, so ``pytest -n 2 --dist loadfile`` (the test command) runs it on one worker and
starts the platform once. The cases live in ``flows.py`` (the desk's three daily flows),
``rbac.py`` (role matrix over every route) and ``api_fuzz.py`` (schemathesis on openapi.yaml);
they are collected here in that order.
"""

# ruff: noqa: I001  (import order = test order: the flows first, the fuzzing last)
from __future__ import annotations

from .flows import (
    test_ops_halt_blocks_entries_and_resume_restores_them,
    test_prometheus_scrapes_all_six,
    test_researcher_backtest_equals_bt_run,
)
from .rbac import test_matrix_covers_every_route, test_rbac_matrix
from .api_fuzz import test_no_server_errors

__all__ = [
    "test_matrix_covers_every_route",
    "test_no_server_errors",
    "test_ops_halt_blocks_entries_and_resume_restores_them",
    "test_prometheus_scrapes_all_six",
    "test_rbac_matrix",
    "test_researcher_backtest_equals_bt_run",
]

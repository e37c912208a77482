"""ops_api app factory (DESIGN.md §2, §5): ``uvicorn --factory pairdesk.ops_api.main:create_app``."""

from __future__ import annotations

from fastapi import FastAPI
from pairdesk.common.service import create_service_app
from pairdesk.common.settings import Settings
from pairdesk.ops_api.api import router
from pairdesk.ops_api.settings import OpsSettings, load_ops_config

__all__ = ["create_app"]

DESCRIPTION = """Trading ops kill switch (spec 004 §運用Runbook 仕様 v1).

Halt (soft: no new entries; hard: no signals) and flatten write the Redis hash `core:ops:flags`
that inference enforces, announcing every change on `core:ops:flags:changed`. Resume is guarded
(drawdown below DD_WARN for `stability_days` business days, rolling correlation ≥
`corr_threshold`, fresh live metrics, completed checklist, approver). Rollback re-activates a
registered model or its θ. Every call is audited in `audit.analytics_actions` (halt/flatten
also in `incident_logs`). A halt is written to Redis before the audit and is never blocked by
the database.
"""


def create_app(
    settings: Settings | None = None, *, ops_settings: OpsSettings | None = None
) -> FastAPI:
    """Build the ops_api app (nothing connects until it starts).

    Parameters
    ----------
    settings : Settings, optional
        Platform settings (URLs, JWT, bus namespace); default: the environment.
    ops_settings : OpsSettings, optional
        ``PAIRDESK_OPS_*`` settings; default: the environment.

    Returns
    -------
    FastAPI

    Raises
    ------
    pairdesk.research.config.ConfigError
        If the universe, runbook or drawdown policy file is missing or invalid.
    """
    config = load_ops_config(ops_settings)
    app = create_service_app(
        name="ops_api",
        domain="OPS",
        title="Pairdesk ops_api",
        description=DESCRIPTION,
        routers=[router],
        settings=settings,
    )
    app.state.ops_config = config
    return app

"""analytics app factory (DESIGN.md §3/§5; spec 004 §ml-assets-analytics 仕様 v1).

Run with ``uvicorn --factory pairdesk.analytics.main:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI
from pairdesk.analytics.api import router
from pairdesk.common.service import create_service_app
from pairdesk.common.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the analytics FastAPI app.

    Parameters
    ----------
    settings : Settings, optional
        Shared settings (default: the environment).

    Returns
    -------
    FastAPI
        ``/api/v1/metrics/...`` plus ``/healthz``, ``/readyz``, ``/metrics``.
    """
    return create_service_app(
        name="analytics",
        domain="ANALYTICS",
        title="Pairdesk analytics",
        description="Trading, model, data-quality and risk metrics "
        "(spec 004 §ml-assets-analytics 仕様 v1).",
        routers=[router],
        settings=settings,
    )

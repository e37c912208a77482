"""data_pipeline app factory (DESIGN.md §3/§5; spec 004 §data-assets-pipeline 仕様 v1).

Run with ``uvicorn --factory pairdesk.data_pipeline.main:create_app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pairdesk.common.service import ServiceResources, create_service_app
from pairdesk.common.settings import Settings
from pairdesk.data_pipeline.api import router
from pairdesk.data_pipeline.settings import DataPipelineSettings

__all__ = ["create_app"]


@asynccontextmanager
async def _lifespan(app: FastAPI, resources: ServiceResources) -> AsyncIterator[None]:
    # one lock per running app, created on the app's event loop
    app.state.ingest_lock = asyncio.Lock()
    yield


def create_app(
    settings: Settings | None = None, *, pipeline_settings: DataPipelineSettings | None = None
) -> FastAPI:
    """Build the data_pipeline FastAPI app.

    Parameters
    ----------
    settings : Settings, optional
        Shared settings (default: the environment).
    pipeline_settings : DataPipelineSettings, optional
        Drop roots, store and universe files (default: ``PAIRDESK_*`` environment variables).

    Returns
    -------
    FastAPI
        ``/api/v1/data/...`` plus ``/healthz``, ``/readyz``, ``/metrics``.
    """
    app = create_service_app(
        name="data_pipeline",
        domain="DATA",
        title="Pairdesk data_pipeline",
        description="File-drop ingest (canonicalise → DQ → quarantine → store), canonical bars, "
        "watermarks and quarantine (spec 004 §data-assets-pipeline 仕様 v1).",
        routers=[router],
        settings=settings,
        lifespan_hook=_lifespan,
    )
    app.state.pipeline_settings = pipeline_settings or DataPipelineSettings()
    return app

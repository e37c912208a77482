"""core_inference app factory (DESIGN.md §2/§5): live signals from the active model.

Run with ``uvicorn --factory pairdesk.core_inference.main:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI
from pairdesk.common.service import create_service_app
from pairdesk.common.settings import Settings
from pairdesk.core_inference.api import router
from pairdesk.core_inference.service import lifespan_hook
from pairdesk.core_inference.settings import CoreSettings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, core: CoreSettings | None = None) -> FastAPI:
    """Build the core_inference FastAPI app.

    Parameters
    ----------
    settings : Settings, optional
        Platform settings (``POSTGRES_URL``, ``REDIS_URL``, JWT, bus namespace); default the
        environment.
    core : CoreSettings, optional
        Service settings (``PAIRDESK_CORE_*``); default the environment.

    Returns
    -------
    FastAPI
        Its lifespan starts the inference loop; nothing connects before startup.
    """
    return create_service_app(
        name="core_inference",
        domain="CORE",
        title="Pairdesk core_inference",
        description=(
            "Live AI1/AI2 inference on closed bars: signals to PostgreSQL (signals_live, "
            "signals_history) and Redis (stream + pub/sub), model registry and activation."
        ),
        routers=[router],
        settings=settings,
        lifespan_hook=lifespan_hook(core if core is not None else CoreSettings()),
    )

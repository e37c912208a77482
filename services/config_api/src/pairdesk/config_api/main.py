"""config_api app factory (DESIGN.md §3/§5/§6; spec 004 §設定変更ワークフロー仕様 v1).

Run with ``uvicorn --factory pairdesk.config_api.main:create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI
from pairdesk.common.service import create_service_app
from pairdesk.common.settings import Settings
from pairdesk.config_api.api import auth_router, configs_router
from pairdesk.config_api.settings import ConfigApiSettings

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None, *, config_api_settings: ConfigApiSettings | None = None
) -> FastAPI:
    """Build the config_api FastAPI app.

    Parameters
    ----------
    settings : Settings, optional
        Shared settings (default: the environment); its JWT key signs issued tokens.
    config_api_settings : ConfigApiSettings, optional
        Config folder (default: ``PAIRDESK_CONFIG_DIR`` or the repository's ``config/``).

    Returns
    -------
    FastAPI
        ``/api/v1/auth/token``, ``/api/v1/configs...`` plus ``/healthz``, ``/readyz``,
        ``/metrics``.
    """
    app = create_service_app(
        name="config_api",
        domain="UI",
        title="Pairdesk config_api",
        description="Tokens, policy configs and their validation/audit "
        "(spec 004 §設定変更ワークフロー仕様 v1).",
        routers=[auth_router, configs_router],
        settings=settings,
    )
    app.state.config_api_settings = config_api_settings or ConfigApiSettings()
    return app

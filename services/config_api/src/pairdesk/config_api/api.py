"""config_api routers (DESIGN.md §5/§6; spec 004 §設定変更ワークフロー仕様 v1 API):
``POST /auth/token`` (the only unauthenticated ``/api/v1`` route), ``GET /configs``,
``GET /configs/audit``, ``GET /configs/{name}``, ``POST /configs/validate``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pairdesk.common.api import ApiResponse, RequestId, ok
from pairdesk.common.auth import Permission, SettingsDep, TokenClaims, require
from pairdesk.common.models import ConfigChangeState
from pairdesk.common.service import OffsetQuery, SessionDep
from pairdesk.config_api import service
from pairdesk.config_api.schemas import (
    CONFIG_NAME_PATTERN,
    ConfigChangePage,
    ConfigDetailRead,
    ConfigFileRead,
    ConfigValidateCreate,
    ConfigValidateRead,
    TokenCreate,
    TokenRead,
)
from pairdesk.config_api.settings import ConfigApiSettings

__all__ = ["auth_router", "configs_router"]

Viewer = Annotated[TokenClaims, Depends(require(Permission.READ))]
Editor = Annotated[TokenClaims, Depends(require(Permission.CONFIG_PR_CREATE))]


def _config_settings(request: Request) -> ConfigApiSettings:
    cfg = getattr(request.app.state, "config_api_settings", None)
    return cfg if isinstance(cfg, ConfigApiSettings) else ConfigApiSettings()


ConfigSettingsDep = Annotated[ConfigApiSettings, Depends(_config_settings)]
ConfigName = Annotated[str, Path(pattern=CONFIG_NAME_PATTERN, description="Config file stem")]

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiResponse[None], "description": "Missing or invalid token"},
    403: {"model": ApiResponse[None], "description": "Role lacks the permission"},
    422: {"model": ApiResponse[None], "description": "Invalid request"},
}

auth_router = APIRouter(prefix="/auth", tags=["auth"])
configs_router = APIRouter(prefix="/configs", tags=["configs"], responses=_AUTH_ERRORS)


@auth_router.post(
    "/token",
    summary="Exchange username and password for a bearer token",
    responses={
        401: {"model": ApiResponse[None], "description": "UI_AUTH_INVALID"},
        422: {"model": ApiResponse[None], "description": "Malformed body"},
    },
)
async def post_token(
    body: TokenCreate, session: SessionDep, settings: SettingsDep, request_id: RequestId
) -> ApiResponse[TokenRead]:
    """JSON body ``{username, password}`` (the OAuth2 form variant needs python-multipart, which
    the workspace does not ship). Unknown user, inactive user and wrong password all answer 401
    ``UI_AUTH_INVALID`` with the same message."""
    token = await service.issue_token(
        session=session, settings=settings, username=body.username, password=body.password
    )
    return ok(token, request_id)


@configs_router.get("", summary="Every policy YAML with checksum and last audited change")
async def get_configs(
    _: Viewer, session: SessionDep, cfg: ConfigSettingsDep, request_id: RequestId
) -> ApiResponse[list[ConfigFileRead]]:
    """Files ``<name>.yaml`` of ``PAIRDESK_CONFIG_DIR``."""
    return ok(await service.list_configs(session=session, config_dir=cfg.config_path), request_id)


@configs_router.get("/audit", summary="audit.config_changes, newest first (paged)")
async def get_audit(
    _: Viewer,
    session: SessionDep,
    request_id: RequestId,
    config_name: Annotated[str | None, Query(pattern=CONFIG_NAME_PATTERN)] = None,
    state: ConfigChangeState | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: OffsetQuery = 0,
) -> ApiResponse[ConfigChangePage]:
    """Spec 004 ``GET /configs/audit?status=&config_name=&from=&to=`` (``state`` = status)."""
    page = await service.audit_page(
        session=session,
        config_name=config_name,
        state=state,
        start=start,
        end=end,
        limit=limit,
        offset=offset,
    )
    return ok(page, request_id)


@configs_router.get(
    "/{name}",
    summary="A config's parsed content, text and checksum",
    responses={404: {"model": ApiResponse[None], "description": "UI_CONFIG_NOTFOUND"}},
)
async def get_config(
    _: Viewer, name: ConfigName, cfg: ConfigSettingsDep, request_id: RequestId
) -> ApiResponse[ConfigDetailRead]:
    """404 ``UI_CONFIG_NOTFOUND`` for an unknown name."""
    return ok(service.get_config(config_dir=cfg.config_path, name=name), request_id)


@configs_router.post(
    "/validate",
    summary="Validate a proposed config and diff it against the current file (editor)",
    responses={404: {"model": ApiResponse[None], "description": "UI_CONFIG_NOTFOUND"}},
)
async def post_validate(
    body: ConfigValidateCreate,
    user: Editor,
    session: SessionDep,
    cfg: ConfigSettingsDep,
    request_id: RequestId,
) -> ApiResponse[ConfigValidateRead]:
    """Parse, shape-check (keys, kinds, ``{value: ...}`` wrappers), cross-check and diff; the
    outcome is written to ``audit.config_changes`` (``draft`` or ``rejected``). Invalid → 422
    ``UI_CONFIG_INVALID`` with ``details.problems``."""
    result = await service.validate_config(
        session=session, config_dir=cfg.config_path, body=body, user=user, request_id=request_id
    )
    return ok(result, request_id)

"""HTTP routes of ops_api under ``/api/v1`` (spec 004 §運用Runbook 操作 API; DESIGN.md §5, §6).

Thin: each route checks the role, then calls :mod:`pairdesk.ops_api.service`.

======================  =========  ===================================================
route                   role       effect
======================  =========  ===================================================
POST /ops/halt          editor     ``global_halt`` (portfolio) or ``halted_pairs``
POST /ops/flatten       editor     ``flatten_pairs`` + ``halted_pairs``
POST /ops/resume        approver   guarded resume (409 ``OPS_RESUME_GUARD``)
POST /ops/rollback      approver   model / θ rollback
GET  /ops/state         viewer     flags, live metrics, active models, recent actions
GET  /ops/actions       viewer     the ops audit trail, paged
======================  =========  ===================================================
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pairdesk.common.api import ApiResponse, RequestId, ok
from pairdesk.common.auth import Permission, TokenClaims, require
from pairdesk.common.service import BusDep, OffsetQuery, Page, SessionDep
from pairdesk.ops_api import service
from pairdesk.ops_api.schemas import (
    OpsActionRead,
    OpsFlagChangeRead,
    OpsFlattenCreate,
    OpsHaltCreate,
    OpsResumeCreate,
    OpsResumeRead,
    OpsRollbackCreate,
    OpsRollbackRead,
    OpsStateRead,
)
from pairdesk.ops_api.settings import OpsConfig

__all__ = ["get_ops_config", "router"]


def get_ops_config(request: Request) -> OpsConfig:
    """The :class:`OpsConfig` the app factory loaded (``app.state.ops_config``)."""
    config: OpsConfig = request.app.state.ops_config
    return config


ConfigDep = Annotated[OpsConfig, Depends(get_ops_config)]
Viewer = Annotated[TokenClaims, Depends(require(Permission.READ))]
Halter = Annotated[TokenClaims, Depends(require(Permission.OPS_HALT))]
Flattener = Annotated[TokenClaims, Depends(require(Permission.OPS_FLATTEN))]
Resumer = Annotated[TokenClaims, Depends(require(Permission.OPS_RESUME))]
RollbackRole = Annotated[TokenClaims, Depends(require(Permission.OPS_ROLLBACK))]

_ERR: dict[str, Any] = {"model": ApiResponse[None]}
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "Missing or invalid bearer token (OPS_AUTH_*)"},
    403: {**_ERR, "description": "Role lacks the permission (OPS_AUTH_FORBIDDEN)"},
}
_CHANGE: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    422: {
        **_ERR,
        "description": "Invalid body (OPS_API_VALIDATION) or unknown pair (OPS_PAIR_UNKNOWN)",
    },
    503: {
        **_ERR,
        "description": "Redis unreachable, nothing changed (OPS_BUS_UNAVAIL); or the change is "
        "in force but its audit could not be written (OPS_AUDIT_UNAVAIL, details.applied=true)",
    },
}

router = APIRouter(prefix="/ops", tags=["ops"])


@router.post(
    "/halt",
    summary="Halt new entries (soft) or signal generation (hard), portfolio-wide or for one pair",
    responses=_CHANGE,
)
async def post_halt(
    body: OpsHaltCreate,
    user: Halter,
    bus: BusDep,
    session: SessionDep,
    config: ConfigDep,
    request_id: RequestId,
) -> ApiResponse[OpsFlagChangeRead]:
    """Write the halt into ``core:ops:flags`` (announced to subscribers), then audit it."""
    result = await service.halt(
        bus=bus, session=session, config=config, user=user, request_id=request_id, body=body
    )
    return ok(result, request_id)


@router.post(
    "/flatten",
    summary="Flatten one pair or every universe pair (and stop their new entries)",
    responses=_CHANGE,
)
async def post_flatten(
    body: OpsFlattenCreate,
    user: Flattener,
    bus: BusDep,
    session: SessionDep,
    config: ConfigDep,
    request_id: RequestId,
) -> ApiResponse[OpsFlagChangeRead]:
    """Add the pairs to ``flatten_pairs`` and ``halted_pairs``, then audit it."""
    result = await service.flatten(
        bus=bus, session=session, config=config, user=user, request_id=request_id, body=body
    )
    return ok(result, request_id)


@router.post(
    "/resume",
    summary="Resume after the runbook's guards pass (DD, stability days, correlation, checklist)",
    responses={
        **_CHANGE,
        409: {
            **_ERR,
            "description": "A resume guard failed (OPS_RESUME_GUARD, details.failed_guards)",
        },
    },
)
async def post_resume(
    body: OpsResumeCreate,
    user: Resumer,
    bus: BusDep,
    session: SessionDep,
    config: ConfigDep,
    request_id: RequestId,
) -> ApiResponse[OpsResumeRead]:
    """Check the resume guards on the live pair metrics, then clear the halt and audit it."""
    result = await service.resume(
        bus=bus, session=session, config=config, user=user, request_id=request_id, body=body
    )
    return ok(result, request_id)


@router.post(
    "/rollback",
    summary="Roll the active model, or θ, back to a registered model version",
    responses={
        **_AUTH,
        404: {**_ERR, "description": "Unknown model version (OPS_ROLLBACK_NOTFOUND)"},
        409: {
            **_ERR,
            "description": "target=config (OPS_ROLLBACK_UNSUPPORT: use config_api), changed "
            "bundle (OPS_ROLLBACK_BUNDLE), no θ (OPS_ROLLBACK_NOTHETA) or no active model "
            "(OPS_ROLLBACK_NOACTIVE)",
        },
        422: {**_ERR, "description": "Invalid body (OPS_API_VALIDATION)"},
        503: {**_ERR, "description": "OPS_DB_UNAVAIL, OPS_BUS_UNAVAIL or OPS_AUDIT_UNAVAIL"},
    },
)
async def post_rollback(
    body: OpsRollbackCreate,
    user: RollbackRole,
    bus: BusDep,
    session: SessionDep,
    request_id: RequestId,
) -> ApiResponse[OpsRollbackRead]:
    """Model: re-activate ``version``. θ: apply its θ1/θ2 as the active model's override."""
    result = await service.rollback(
        bus=bus, session=session, user=user, request_id=request_id, body=body
    )
    return ok(result, request_id)


@router.get(
    "/state",
    summary="Ops flags, live pair metrics, active models, θ overrides and recent ops actions",
    responses={**_AUTH, 503: {**_ERR, "description": "OPS_BUS_UNAVAIL / OPS_DB_UNAVAIL"}},
)
async def get_state(
    user: Viewer,
    bus: BusDep,
    session: SessionDep,
    config: ConfigDep,
    request_id: RequestId,
    actions: Annotated[
        int | None,
        Query(ge=1, le=200, description="Recent actions to list (default from settings)"),
    ] = None,
) -> ApiResponse[OpsStateRead]:
    """Everything an operator needs on one screen (spec: 常時表示)."""
    limit = actions if actions is not None else config.settings.state_actions
    result = await service.get_state(bus=bus, session=session, config=config, actions_limit=limit)
    return ok(result, request_id)


@router.get(
    "/actions",
    summary="The ops audit trail (audit.analytics_actions, ops.* only), newest first",
    responses={**_AUTH, 503: {**_ERR, "description": "OPS_DB_UNAVAIL"}},
)
async def get_actions(
    user: Viewer,
    session: SessionDep,
    request_id: RequestId,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: OffsetQuery = 0,
) -> ApiResponse[Page[OpsActionRead]]:
    """One page of ``audit.analytics_actions`` rows whose action starts with ``ops.``."""
    result = await service.list_ops_actions(session=session, limit=limit, offset=offset)
    return ok(result, request_id)

"""HTTP endpoints of core_inference (DESIGN.md §5; thin: the logic is in :mod:`.service`).

Every route needs at least a viewer token; activating a model needs
``Permission.MODEL_ACTIVATE`` (approver, DESIGN.md §6) and is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pairdesk.common.api import ApiResponse, RequestId, ok
from pairdesk.common.auth import Permission, TokenClaims, require
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.service import OffsetQuery, SessionDep
from pairdesk.core_inference import service
from pairdesk.core_inference.schemas import (
    InferenceStatus,
    ModelActivate,
    ModelActivation,
    ModelRead,
    SignalLiveRead,
    SignalPage,
)
from pairdesk.core_inference.service import InferenceWorker

__all__ = ["router"]

Viewer = Annotated[TokenClaims, Depends(require(Permission.READ))]
Activator = Annotated[TokenClaims, Depends(require(Permission.MODEL_ACTIVATE))]
PairId = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
Timeframe = Annotated[str | None, Query(pattern=r"^(15m|1h|4h)$")]

router = APIRouter(tags=["core_inference"])


def _worker(request: Request) -> InferenceWorker:
    worker = getattr(request.app.state, "worker", None)
    if not isinstance(worker, InferenceWorker):
        raise ApiError(
            error_id("CORE", "DEP", "UNAVAIL"), "Inference loop is not running", status_code=503
        )
    return worker


WorkerDep = Annotated[InferenceWorker, Depends(_worker)]


@router.get("/signals/latest", summary="Latest signal per pair (signals_live)")
async def signals_latest(
    session: SessionDep,
    request_id: RequestId,
    _user: Viewer,
    pair_id: PairId = None,
    timeframe: Timeframe = None,
) -> ApiResponse[list[SignalLiveRead]]:
    """The current signal of every pair (or of ``pair_id``; 404 ``CORE_SIGNAL_NOTFOUND``)."""
    return ok(await service.latest(session, pair_id=pair_id, timeframe=timeframe), request_id)


@router.get("/signals/history", summary="Emitted signals, newest first (paged)")
async def signals_history(
    session: SessionDep,
    request_id: RequestId,
    _user: Viewer,
    pair_id: PairId = None,
    timeframe: Timeframe = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{2,32}$")] = None,
    since: Annotated[datetime | None, Query(description="Bars from (RFC 3339, inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="Bars before (RFC 3339)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> ApiResponse[SignalPage]:
    """``signals_history`` filtered by pair, timeframe, action and bar time."""
    page = await service.history(
        session,
        pair_id=pair_id,
        timeframe=timeframe,
        action=action,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return ok(page, request_id)


@router.get("/models", summary="Model registry")
async def models(
    session: SessionDep, request_id: RequestId, _user: Viewer, timeframe: Timeframe = None
) -> ApiResponse[list[ModelRead]]:
    """Registered models, newest first."""
    return ok(await service.list_models(session, timeframe=timeframe), request_id)


@router.post("/models/{version}/activate", summary="Make a registered model the active one")
async def activate_model(
    session: SessionDep,
    request_id: RequestId,
    user: Activator,
    worker: WorkerDep,
    body: ModelActivate,
    version: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")],
) -> ApiResponse[ModelActivation]:
    """Activate ``version`` (previous one retired), audit it and switch the loop to it."""
    result = await service.activate(
        session, version=version, user=user, reason=body.reason, request_id=request_id
    )
    worker.wake()
    return ok(result, request_id)


@router.get("/inference/status", summary="State of the inference loop")
async def inference_status(
    request_id: RequestId, _user: Viewer, worker: WorkerDep
) -> ApiResponse[InferenceStatus]:
    """Loaded model, θ, per-pair watermark and position, last error, unpublished signals."""
    return ok(await worker.status(), request_id)

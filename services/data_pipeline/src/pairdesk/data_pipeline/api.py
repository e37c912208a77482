"""data_pipeline routers (DESIGN.md §5): ``POST /data/ingest/runs``, ``GET /data/watermarks``,
``GET /data/quarantine``, ``GET /data/bars``. Thin: parsing and auth here, logic in
:mod:`pairdesk.data_pipeline.service`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pairdesk.common.api import ApiResponse, RequestId, ok
from pairdesk.common.auth import Permission, Role, TokenClaims, require, require_role
from pairdesk.common.service import BusDep, OffsetQuery, SessionDep
from pairdesk.data_pipeline import service
from pairdesk.data_pipeline.schemas import (
    BarPage,
    IngestRunCreate,
    IngestRunRead,
    QuarantineRead,
    WatermarkRead,
)
from pairdesk.data_pipeline.settings import DataPipelineSettings

__all__ = ["router"]

Viewer = Annotated[TokenClaims, Depends(require(Permission.READ))]
Editor = Annotated[TokenClaims, Depends(require_role(Role.EDITOR))]


def _pipeline_settings(request: Request) -> DataPipelineSettings:
    cfg = getattr(request.app.state, "pipeline_settings", None)
    return cfg if isinstance(cfg, DataPipelineSettings) else DataPipelineSettings()


def _ingest_lock(request: Request) -> asyncio.Lock:
    lock = getattr(request.app.state, "ingest_lock", None)
    if not isinstance(lock, asyncio.Lock):
        lock = asyncio.Lock()
        request.app.state.ingest_lock = lock
    return lock


PipelineSettingsDep = Annotated[DataPipelineSettings, Depends(_pipeline_settings)]
IngestLockDep = Annotated[asyncio.Lock, Depends(_ingest_lock)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiResponse[None], "description": "Missing or invalid token"},
    403: {"model": ApiResponse[None], "description": "Role lacks the permission"},
    422: {"model": ApiResponse[None], "description": "Invalid request"},
}

router = APIRouter(prefix="/data", tags=["data"], responses=_ERRORS)


@router.post(
    "/ingest/runs",
    summary="Ingest a file drop into the Parquet store and canonical_bars (editor)",
    responses={
        503: {
            "model": ApiResponse[None],
            "description": "DATA_STORAGE_WRITE / DATA_STORAGE_DBWRITE: retry with the same drop",
        }
    },
)
async def create_ingest_run(
    body: IngestRunCreate,
    user: Editor,
    session: SessionDep,
    bus: BusDep,
    cfg: PipelineSettingsDep,
    lock: IngestLockDep,
    request_id: RequestId,
) -> ApiResponse[IngestRunRead]:
    """Run the ingest synchronously and return its report (spec 004 §data-assets-pipeline).

    Idempotent: posting the same drop again changes no row (``rows_changed == 0``). Errors:
    422 ``DATA_REQ_PATH`` (folder outside ``PAIRDESK_DROP_DIRS``), 422 ``DATA_INGEST_*`` (bad
    drop: missing file, columns, timestamps, prices...; nothing is written).
    """
    report = await service.run_file_ingest(
        session=session,
        bus=bus,
        cfg=cfg,
        lock=lock,
        body=body,
        actor=user.sub,
        request_id=request_id,
    )
    return ok(report, request_id)


@router.get("/watermarks", summary="Latest bar per symbol × timeframe (PostgreSQL and store)")
async def get_watermarks(
    _: Viewer,
    session: SessionDep,
    cfg: PipelineSettingsDep,
    request_id: RequestId,
    symbol: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9.\-]+$")] = None,
    timeframe: Annotated[str | None, Query(pattern=r"^[0-9]{1,4}[mhd]$")] = None,
) -> ApiResponse[list[WatermarkRead]]:
    """Watermarks, bar counts and lag (spec 004 §運用考慮 ウォーターマーク)."""
    marks = await service.list_watermarks(
        session=session, cfg=cfg, symbol=symbol, timeframe=timeframe
    )
    return ok(marks, request_id)


@router.get("/quarantine", summary="Quarantined store partitions with reasons")
async def get_quarantine(
    _: Viewer,
    cfg: PipelineSettingsDep,
    request_id: RequestId,
    symbol: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9.\-]+$")] = None,
    timeframe: Annotated[str | None, Query(pattern=r"^[0-9]{1,4}[mhd]$")] = None,
) -> ApiResponse[list[QuarantineRead]]:
    """Partitions excluded from training/backtests (spec 004 §監視・運用 隔離)."""
    return ok(
        await service.list_quarantine(cfg=cfg, symbol=symbol, timeframe=timeframe), request_id
    )


@router.get("/bars", summary="Canonical bars of one symbol × timeframe (paged)")
async def get_bars(
    _: Viewer,
    session: SessionDep,
    request_id: RequestId,
    symbol: Annotated[str, Query(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.\-]+$")],
    timeframe: Annotated[str, Query(pattern=r"^[0-9]{1,4}[mhd]$")],
    start: Annotated[datetime | None, Query(description="Inclusive bar open time (UTC)")] = None,
    end: Annotated[datetime | None, Query(description="Exclusive bar open time (UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: OffsetQuery = 0,
) -> ApiResponse[BarPage]:
    """Bars in ``[start, end)`` ordered by ``ts_utc``; 422 ``DATA_REQ_RANGE`` if start > end."""
    page = await service.get_bars(
        session=session,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        limit=limit,
        offset=offset,
    )
    return ok(page, request_id)

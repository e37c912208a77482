"""Backtest API routes (DESIGN.md §5; spec 004 §OpenAPI 概要 v1 ``POST /bt/runs``,
``GET /bt/summary``, ``GET /bt/trades``). Thin: every route calls :mod:`pairdesk.backtest.service`.

Reads need a viewer token; ``POST /bt/runs`` needs ``backtest:launch`` (editor and above).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pairdesk.backtest import service
from pairdesk.backtest.schemas import (
    BtDailyEquityRead,
    BtRunCreate,
    BtRunRead,
    BtSummaryRead,
    BtTradeRead,
)
from pairdesk.backtest.settings import BacktestSettings
from pairdesk.common.api import ApiResponse, RequestId, ok
from pairdesk.common.auth import Permission, TokenClaims, require
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.models import BtRunStatus
from pairdesk.common.service import OffsetQuery, Page, SessionDep

__all__ = ["BacktestRuntime", "RuntimeDep", "router"]


@dataclass(frozen=True)
class BacktestRuntime:
    """What the lifespan adds for the routes: service settings and the queue publisher."""

    settings: BacktestSettings
    publish: service.Publish


def _runtime(request: Request) -> BacktestRuntime:
    runtime = getattr(request.app.state, "bt_runtime", None)
    if not isinstance(runtime, BacktestRuntime):
        raise ApiError(
            error_id("BT", "DEP", "UNAVAIL"), "Backtest service is not started", status_code=503
        )
    return runtime


RuntimeDep = Annotated[BacktestRuntime, Depends(_runtime)]
Launcher = Annotated[TokenClaims, Depends(require(Permission.BACKTEST_LAUNCH))]
RunIdQuery = Annotated[str, Query(min_length=1, max_length=64, description="bt_runs.run_id")]
PairQuery = Annotated[str | None, Query(max_length=64, description="Only this pair")]
Limit = Annotated[int, Query(ge=1, le=1000)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:\-]+$",
        description="Re-posting with the same key returns the same run (200); the same key "
        "with a different body is a 409 BT_IDEMP_CONFLICT",
    ),
]

router = APIRouter(
    prefix="/bt",
    tags=["backtest"],
    dependencies=[Depends(require(Permission.READ))],
    responses={
        401: {"model": ApiResponse[None], "description": "BT_AUTH_MISSING / INVALID / EXPIRED"},
        403: {"model": ApiResponse[None], "description": "BT_AUTH_FORBIDDEN"},
    },
)

_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiResponse[None], "description": "BT_RUN_NOTFOUND"},
    409: {"model": ApiResponse[None], "description": "BT_RUN_NOTREADY: run not succeeded"},
}


@router.post(
    "/runs",
    status_code=202,
    summary="Launch a backtest run (asynchronous; poll GET /bt/runs/{run_id})",
    responses={
        200: {"model": ApiResponse[BtRunRead], "description": "Idempotent replay"},
        409: {"model": ApiResponse[None], "description": "BT_IDEMP_CONFLICT"},
        422: {"model": ApiResponse[None], "description": "Invalid request (ids BT_*)"},
    },
)
async def create_run(
    body: BtRunCreate,
    user: Launcher,
    session: SessionDep,
    runtime: RuntimeDep,
    request_id: RequestId,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ApiResponse[BtRunRead]:
    """Queue a run of ``bt run`` over the body's pairs, period and registered model."""
    run, created = await service.submit_run(
        session,
        body=body,
        requested_by=user.sub,
        idempotency_key=idempotency_key,
        publish=runtime.publish,
    )
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/api/v1/bt/runs/{run.run_id}"
    return ok(run, request_id)


@router.get("/runs", summary="List backtest runs, newest first")
async def list_runs(
    session: SessionDep,
    request_id: RequestId,
    status: Annotated[BtRunStatus | None, Query()] = None,
    limit: Limit = 50,
    offset: OffsetQuery = 0,
) -> ApiResponse[Page[BtRunRead]]:
    """One page of runs, optionally of one status."""
    items, total = await service.list_runs(session, status=status, limit=limit, offset=offset)
    return ok(Page(items=items, total=total, limit=limit, offset=offset), request_id)


@router.get("/runs/{run_id}", summary="One backtest run", responses={404: _RUN_ERRORS[404]})
async def get_run(
    run_id: Annotated[str, Path(max_length=64)], session: SessionDep, request_id: RequestId
) -> ApiResponse[BtRunRead]:
    """Status, request, error and provenance of a run."""
    return ok(await service.get_run(session, run_id=run_id), request_id)


@router.get("/summary", summary="KPI summary of a run (bt_summary)", responses=_RUN_ERRORS)
async def get_summary(
    run_id: RunIdQuery, session: SessionDep, request_id: RequestId
) -> ApiResponse[list[BtSummaryRead]]:
    """One row per pair with KPIs and their block-bootstrap 95 % CIs."""
    return ok(await service.get_summary(session, run_id=run_id), request_id)


@router.get("/trades", summary="Trades of a run (bt_trades), paged", responses=_RUN_ERRORS)
async def list_trades(
    run_id: RunIdQuery,
    session: SessionDep,
    request_id: RequestId,
    pair_id: PairQuery = None,
    limit: Limit = 100,
    offset: OffsetQuery = 0,
) -> ApiResponse[Page[BtTradeRead]]:
    """One page of trades ordered by pair and entry time."""
    items, total = await service.list_trades(
        session, run_id=run_id, pair_id=pair_id, limit=limit, offset=offset
    )
    return ok(Page(items=items, total=total, limit=limit, offset=offset), request_id)


@router.get("/equity", summary="Daily equity of a run (bt_daily_equity)", responses=_RUN_ERRORS)
async def get_equity(
    run_id: RunIdQuery, session: SessionDep, request_id: RequestId, pair_id: PairQuery = None
) -> ApiResponse[list[BtDailyEquityRead]]:
    """End-of-day equity (USD) and drawdown per pair."""
    return ok(await service.get_equity(session, run_id=run_id, pair_id=pair_id), request_id)

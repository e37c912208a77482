"""analytics routers (DESIGN.md §5; spec 004 §ml-assets-analytics 仕様 v1 バックエンドAPI):
``GET /metrics/trading``, ``/metrics/model``, ``/metrics/data_quality``, ``/metrics/risk``.
Every route needs a viewer token; logic lives in :mod:`pairdesk.analytics.service`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pairdesk.analytics import service
from pairdesk.analytics.schemas import (
    DataQualityRead,
    ModelMetricsRead,
    RiskMetricsRead,
    TradingMetricsRead,
)
from pairdesk.common.api import ApiResponse, RequestId, ok
from pairdesk.common.auth import Permission, TokenClaims, require
from pairdesk.common.service import BusDep, SessionDep

__all__ = ["router"]

Viewer = Annotated[TokenClaims, Depends(require(Permission.READ))]
RunIdQ = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="Backtest run (default: latest succeeded)"),
]
PairIdQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
TimeframeQ = Annotated[str | None, Query(pattern=r"^[0-9]{1,4}[mhd]$")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiResponse[None], "description": "Missing or invalid token"},
    403: {"model": ApiResponse[None], "description": "Role lacks the permission"},
    404: {"model": ApiResponse[None], "description": "Run, pair or model not found"},
    422: {"model": ApiResponse[None], "description": "Invalid query"},
}

router = APIRouter(prefix="/metrics", tags=["metrics"], responses=_ERRORS)


@router.get("/trading", summary="KPIs with 95 % CIs and daily equity of a backtest run")
async def get_trading(
    _: Viewer,
    session: SessionDep,
    request_id: RequestId,
    run_id: RunIdQ = None,
    pair_id: PairIdQ = None,
) -> ApiResponse[TradingMetricsRead]:
    """``bt_summary`` KPIs (annualised return, Sharpe, MaxDD, Calmar, win rate, E/trade,
    trades/yr, halt rate, PnL σ) with block-bootstrap intervals; 409 ``ANALYTICS_RUN_NOTREADY``
    for a run that has not succeeded."""
    data = await service.trading_metrics(session=session, run_id=run_id, pair_id=pair_id)
    return ok(data, request_id)


@router.get("/model", summary="Walk-forward metrics of the active or a named model")
async def get_model_metrics(
    _: Viewer,
    session: SessionDep,
    request_id: RequestId,
    model_version: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    timeframe: Annotated[str, Query(pattern=r"^[0-9]{1,4}[mhd]$")] = "1h",
) -> ApiResponse[ModelMetricsRead]:
    """Registry row, AUC/Brier/PR-AUC/ECE (AI1) and F1/PR-AUC/recall (AI2) out of sample, and
    the adoption history of the timeframe."""
    data = await service.model_metrics(
        session=session, model_version=model_version, timeframe=timeframe
    )
    return ok(data, request_id)


@router.get("/data_quality", summary="Quality-flag counts and rates of canonical bars per month")
async def get_data_quality(
    _: Viewer,
    session: SessionDep,
    request_id: RequestId,
    symbol: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9.\-]+$")] = None,
    timeframe: TimeframeQ = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="Inclusive bar open time (UTC)")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Exclusive bar open time (UTC)")
    ] = None,
) -> ApiResponse[DataQualityRead]:
    """Missing (imputed) / outlier / ok counts and rates per symbol × timeframe × UTC month."""
    data = await service.data_quality_metrics(
        session=session, symbol=symbol, timeframe=timeframe, start=start, end=end
    )
    return ok(data, request_id)


@router.get("/risk", summary="Drawdowns and daily historical VaR/ES, plus live pair metrics")
async def get_risk(
    _: Viewer,
    session: SessionDep,
    bus: BusDep,
    request_id: RequestId,
    run_id: RunIdQ = None,
    pair_id: PairIdQ = None,
    confidence: Annotated[float, Query(gt=0.5, lt=1.0)] = 0.95,
) -> ApiResponse[RiskMetricsRead]:
    """Max / current drawdown and daily VaR / ES (historical) from ``bt_daily_equity``, the AI2
    halt rate, and the live ``core:pair_metrics`` and ops flags from Redis."""
    data = await service.risk_metrics(
        session=session, bus=bus, run_id=run_id, pair_id=pair_id, confidence=confidence
    )
    return ok(data, request_id)

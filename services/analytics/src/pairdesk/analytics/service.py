"""analytics logic: trading KPIs, model metrics, data quality and risk (spec 004
§ml-assets-analytics 仕様 v1 バックエンドAPI / KPI 設計, §OpenAPI 概要 v1 Analytics).

Sources: ``bt_runs`` / ``bt_summary`` / ``bt_daily_equity`` (backtest service), ``model_registry``
(:mod:`pairdesk.common.registry`), ``canonical_bars`` (data_pipeline) and, for the live part of
``/metrics/risk``, the Redis hash ``core:pair_metrics`` and ``core:ops:flags``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from pairdesk.analytics import repository as repo
from pairdesk.analytics.risk import equity_risk
from pairdesk.analytics.schemas import (
    DataQualityMonth,
    DataQualityRead,
    DataQualityTotal,
    EquityPoint,
    ModelHistoryItem,
    ModelMetricsRead,
    OpsFlagsRead,
    PairRiskRead,
    PairTradingRead,
    RiskMetricsRead,
    RunInfo,
    TradingKpis,
    TradingMetricsRead,
)
from pairdesk.common.bus import SignalBus
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import get_logger
from pairdesk.common.models import BtRun, BtRunStatus, BtSummary, ModelRegistry
from pairdesk.common.registry import active_model, get_model, list_models
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "DOMAIN",
    "data_quality_metrics",
    "model_metrics",
    "risk_metrics",
    "trading_metrics",
]

DOMAIN: Final = "ANALYTICS"
_log = get_logger("pairdesk.analytics")

#: ``bt_summary.ci`` keys as the backtest writes them -> the KPI names of :class:`TradingKpis`.
_CI_ALIASES: Final = {
    "ann_return": "annualized_return",
    "max_dd": "max_drawdown",
    "pnl_sigma": "pnl_std",
}


def _f(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _run_info(run: BtRun) -> RunInfo:
    request = run.request or {}
    tf = request.get("timeframe")
    return RunInfo(
        run_id=run.run_id,
        status=str(run.status),
        timeframe=str(tf) if tf is not None else None,
        requested_by=run.requested_by,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


async def _resolve_run(session: AsyncSession, run_id: str | None) -> BtRun:
    """The requested run, or the latest succeeded one.

    Raises
    ------
    ApiError
        404 ``ANALYTICS_RUN_NOTFOUND`` (unknown id, or no succeeded run yet); 409
        ``ANALYTICS_RUN_NOTREADY`` when the run has not succeeded.
    """
    if run_id is None:
        run = await repo.latest_succeeded_run(session)
        if run is None:
            raise ApiError(
                error_id(DOMAIN, "RUN", "NOTFOUND"),
                "No succeeded backtest run yet",
                status_code=404,
            )
        return run
    run = await repo.get_run(session, run_id)
    if run is None:
        raise ApiError(
            error_id(DOMAIN, "RUN", "NOTFOUND"), f"Backtest run {run_id} not found", status_code=404
        )
    if run.status != BtRunStatus.SUCCEEDED:
        raise ApiError(
            error_id(DOMAIN, "RUN", "NOTREADY"),
            f"Backtest run {run_id} is {run.status.value}; metrics exist once it succeeded",
            status_code=409,
            details={"status": run.status.value},
        )
    return run


def _ci(raw: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    out: dict[str, tuple[float | None, float | None]] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, (list, tuple)) and len(value) == 2:
            lo, hi = value
            out[_CI_ALIASES.get(key, key)] = (
                None if lo is None else float(lo),
                None if hi is None else float(hi),
            )
    return out


def _kpis(s: BtSummary) -> TradingKpis:
    return TradingKpis(
        trades=s.trades,
        annualized_return=_f(s.ann_return),
        sharpe=_f(s.sharpe),
        max_drawdown=_f(s.max_dd),
        calmar=_f(s.calmar),
        win_rate=_f(s.win_rate),
        e_per_trade=_f(s.e_per_trade),
        trades_per_year=_f(s.trades_per_year),
        halt_rate=_f(s.halt_rate),
        pnl_std=_f(s.pnl_std),
    )


async def trading_metrics(
    *, session: AsyncSession, run_id: str | None, pair_id: str | None
) -> TradingMetricsRead:
    """KPIs with CIs and daily equity of a backtest run (latest succeeded when ``run_id`` is None).

    Raises
    ------
    ApiError
        404 ``ANALYTICS_RUN_NOTFOUND`` / 409 ``ANALYTICS_RUN_NOTREADY`` (see ``_resolve_run``);
        404 ``ANALYTICS_PAIR_NOTFOUND`` when ``pair_id`` has no summary in the run.
    """
    run = await _resolve_run(session, run_id)
    rows = await repo.summaries(session, run.run_id, pair_id)
    if pair_id is not None and not rows:
        raise ApiError(
            error_id(DOMAIN, "PAIR", "NOTFOUND"),
            f"Pair {pair_id} is not in backtest run {run.run_id}",
            status_code=404,
        )
    series: dict[str, list[EquityPoint]] = defaultdict(list)
    for e in await repo.daily_equity(session, run.run_id, pair_id):
        series[e.pair_id].append(EquityPoint(date=e.date, equity=float(e.equity), dd=float(e.dd)))
    pairs = [
        PairTradingRead(
            pair_id=s.pair_id,
            period=s.period,
            theta1=_f(s.theta1),
            theta2=_f(s.theta2),
            kpis=_kpis(s),
            ci=_ci(s.ci),
            provenance={
                "model_version": s.model_version,
                "feature_schema_hash": s.feature_schema_hash,
                "data_hash": s.data_hash,
                "code_hash": s.code_hash,
                "params_hash": s.params_hash,
                "seed": s.seed,
            },
            equity_daily=series.get(s.pair_id, []),
        )
        for s in rows
    ]
    return TradingMetricsRead(run=_run_info(run), pairs=pairs)


async def model_metrics(
    *, session: AsyncSession, model_version: str | None, timeframe: str
) -> ModelMetricsRead:
    """Registry metrics of ``model_version`` or of the active model of ``timeframe``.

    Raises
    ------
    ApiError
        404 ``ANALYTICS_MODEL_NOTFOUND`` for an unknown version or no active model.
    """
    row: ModelRegistry | None
    if model_version is not None:
        row = await get_model(session, model_version)
        missing = f"Model {model_version} is not registered"
    else:
        row = await active_model(session, timeframe)
        missing = f"No active model for timeframe {timeframe}"
    if row is None:
        raise ApiError(error_id(DOMAIN, "MODEL", "NOTFOUND"), missing, status_code=404)
    metrics = row.metrics or {}
    history = [
        ModelHistoryItem(
            model_version=m.model_version,
            status=str(m.status),
            created_at=m.created_at,
            activated_at=m.activated_at,
            activated_by=m.activated_by,
        )
        for m in await list_models(session, row.timeframe)
    ]
    wf = metrics.get("walk_forward") or {}
    return ModelMetricsRead(
        model_version=row.model_version,
        timeframe=row.timeframe,
        status=str(row.status),
        train_start=row.train_start,
        train_end=row.train_end,
        theta1=_f(row.theta1),
        theta2=_f(row.theta2),
        artifact_sha256=row.artifact_sha256,
        feature_schema_hash=row.feature_schema_hash,
        params_hash=row.params_hash,
        data_hash=row.data_hash,
        code_hash=row.code_hash,
        seed=row.seed,
        created_at=row.created_at,
        activated_at=row.activated_at,
        activated_by=row.activated_by,
        walk_forward={k: v for k, v in wf.items() if isinstance(v, dict)},
        summary=metrics.get("summary") or {},
        history=history,
    )


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


async def data_quality_metrics(
    *,
    session: AsyncSession,
    symbol: str | None,
    timeframe: str | None,
    start: datetime | None,
    end: datetime | None,
) -> DataQualityRead:
    """Quality-flag counts and rates of ``canonical_bars`` per symbol × timeframe × UTC month.

    Rates are over the stored bars of the month (``missing`` = imputed bars; bars the pipeline
    excluded are not in ``canonical_bars`` and are reported by data_pipeline's store metadata).

    Raises
    ------
    ApiError
        422 ``ANALYTICS_REQ_RANGE`` when ``start > end``.
    """
    lo, hi = _utc(start), _utc(end)
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(
            error_id(DOMAIN, "REQ", "RANGE"), "from must not be after to", status_code=422
        )
    rows = await repo.flag_counts_by_month(
        session,
        symbol=symbol.upper() if symbol else None,
        timeframe=timeframe,
        start=lo,
        end=hi,
    )
    months = []
    totals: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        other = r.bars - r.ok - r.missing - r.outlier
        months.append(
            DataQualityMonth(
                symbol=r.symbol,
                timeframe=r.timeframe,
                month=f"{r.month.year:04d}-{r.month.month:02d}",
                bars=r.bars,
                ok=r.ok,
                missing=r.missing,
                outlier=r.outlier,
                other=other,
                missing_rate=_rate(r.missing, r.bars),
                outlier_rate=_rate(r.outlier, r.bars),
                quarantined=r.quarantined,
            )
        )
        t = totals.setdefault((r.symbol, r.timeframe), [0] * 7)
        for i, v in enumerate((1, int(r.quarantined), r.bars, r.ok, r.missing, r.outlier, other)):
            t[i] += v
    return DataQualityRead(
        totals=[
            DataQualityTotal(
                symbol=sym,
                timeframe=tf,
                months=t[0],
                quarantined_months=t[1],
                bars=t[2],
                ok=t[3],
                missing=t[4],
                outlier=t[5],
                other=t[6],
                missing_rate=_rate(t[4], t[2]),
                outlier_rate=_rate(t[5], t[2]),
            )
            for (sym, tf), t in totals.items()
        ],
        months=months,
    )


async def risk_metrics(
    *,
    session: AsyncSession,
    bus: SignalBus,
    run_id: str | None,
    pair_id: str | None,
    confidence: float,
) -> RiskMetricsRead:
    """Backtest drawdowns and daily historical VaR/ES per pair, plus the live Redis state.

    Parameters
    ----------
    session : AsyncSession
    bus : SignalBus
        Source of ``core:pair_metrics`` and ``core:ops:flags``.
    run_id : str, optional
        Backtest run (default: latest succeeded).
    pair_id : str, optional
        Restrict the backtest part to one pair.
    confidence : float
        VaR/ES level in (0, 1) (spec default 0.95).

    Raises
    ------
    ApiError
        As :func:`trading_metrics` for the run and pair.
    """
    run = await _resolve_run(session, run_id)
    halt = {s.pair_id: _f(s.halt_rate) for s in await repo.summaries(session, run.run_id, pair_id)}
    curves: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for e in await repo.daily_equity(session, run.run_id, pair_id):
        curves[e.pair_id].append((e.date, float(e.equity)))
    if pair_id is not None and not curves and pair_id not in halt:
        raise ApiError(
            error_id(DOMAIN, "PAIR", "NOTFOUND"),
            f"Pair {pair_id} is not in backtest run {run.run_id}",
            status_code=404,
        )
    pairs = []
    for pid, points in curves.items():
        risk = equity_risk([v for _, v in points], confidence)
        pairs.append(
            PairRiskRead(
                pair_id=pid,
                days=risk.days,
                first_date=points[0][0],
                last_date=points[-1][0],
                max_drawdown=risk.max_drawdown,
                current_drawdown=risk.current_drawdown,
                var=risk.var,
                es=risk.es,
                worst_day=risk.worst_day,
                halt_rate=halt.get(pid),
            )
        )
    live_status = "ok"
    try:
        live = await bus.get_pair_metrics()
    except (RedisError, OSError) as exc:
        _log.warning("pair_metrics_unavailable", error=type(exc).__name__)
        live, live_status = {}, "unavailable"
    reading = await bus.read_flags_failsafe()
    flags = None
    if reading.status == "ok" and reading.flags is not None:
        f = reading.flags
        flags = OpsFlagsRead(
            global_halt=f.global_halt.value,
            halted_pairs=sorted(f.halted_pairs),
            flatten_pairs=sorted(f.flatten_pairs),
            leverage_scale=f.leverage_scale,
            updated_at=f.updated_at,
            updated_by=f.updated_by,
        )
    else:
        live_status = "unavailable"
    return RiskMetricsRead(
        run=_run_info(run),
        confidence=confidence,
        pairs=pairs,
        live_status=live_status,
        live_pair_metrics=live,
        ops_flags=flags,
    )

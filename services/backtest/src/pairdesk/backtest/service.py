"""Backtest runs: submit, execute, recover, read (DESIGN.md §5, spec 004 §backtest-assets-engine).

Life cycle of a run (PostgreSQL ``bt_runs`` is the source of truth; Redis only carries the
"execute ``run_id``" message):

1. :func:`submit_run` (``POST /bt/runs``) validates the request, inserts the run ``queued`` and
   commits, then publishes the task. A failed publish leaves the run ``queued``: the sweep
   publishes it again.
2. :func:`execute_run` (the Celery task) takes the run's PostgreSQL advisory lock, claims the run
   (``queued → running``, ``started_at``), runs the research engine
   (:func:`pairdesk.research.pipeline.run_backtest_cli`, output ``<bt_out_dir>/<run_id>``), loads
   the engine's ``bt_summary`` / ``bt_trades`` / ``bt_daily_equity`` Parquet files and writes them
   **in one transaction together with** ``status = succeeded``. A run of two or more pairs also
   stores the portfolio rows (``bt_summary`` / ``bt_daily_equity`` with ``pair_id =
   'PORTFOLIO'``, :data:`pairdesk.quant.portfolio.PORTFOLIO_ID`) next to the per-pair rows. A
   period overlapping the model's training period is refused by the engine
   (``BT_PERIOD_INSAMPLE``); the service never runs in-sample. Any failure sets ``failed`` with
   an error id and a caller-safe message (the traceback goes to the worker log only).
3. :func:`sweep_runs` (worker start-up, and every ``bt_sweep_interval_s`` in the API process)
   applies the recovery rule below.

Recovery rule (spec 004 §安定運用要件; runs are never left ``running``):

- A ``running`` run whose advisory lock is free has lost its worker (process killed, hard time
  limit, machine lost): the worker holds that lock from before the claim until after the final
  status commit, and PostgreSQL drops it when the worker's connection dies. Such a run is set
  ``failed`` with ``BT_RUN_ORPHANED``; it is **not** re-run automatically, so a run that kills its
  worker (memory) cannot crash-loop the fleet. Re-submit it (new ``Idempotency-Key``).
- A ``queued`` run whose task was last published more than ``bt_requeue_after_s`` ago is
  published again (its message may have died with a Redis restart). Duplicate messages are
  harmless: a second delivery finds the lock held or the run no longer ``queued`` and does
  nothing.
"""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pandas as pd
from pairdesk.backtest import repository as repo
from pairdesk.backtest.schemas import (
    BtDailyEquityRead,
    BtRunCreate,
    BtRunRead,
    BtSummaryRead,
    BtTradeRead,
)
from pairdesk.backtest.settings import BacktestSettings
from pairdesk.common.db import create_engine, create_session_factory, session_scope
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import get_logger
from pairdesk.common.models import BtRun, BtRunStatus
from pairdesk.common.registry import BundleError, get_model, verify_bundle
from pairdesk.common.settings import Settings
from pairdesk.quant.costs import CostModel
from pairdesk.quant.portfolio import PORTFOLIO_ID
from pairdesk.research.config import CONFIG_DIR, REPO_ROOT, ConfigError, load_yaml
from pairdesk.research.pipeline import KPI_ROWS, run_backtest_cli
from pairdesk.research.provenance import sha256_json
from pairdesk.research.settings import load_settings
from pairdesk.research.store import StoreError
from pairdesk.research.universe import load_universe
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = [
    "Publish",
    "RunFailure",
    "SweepResult",
    "classify_failure",
    "execute_run",
    "fail_running",
    "get_equity",
    "get_run",
    "get_summary",
    "list_runs",
    "list_trades",
    "resolve_config_file",
    "result_rows",
    "submit_run",
    "sweep_runs",
    "trade_uuid",
    "validate_request",
]

Publish = Callable[[str], Awaitable[None]]
"""Async callable handing ``run_id`` to the queue (:class:`pairdesk.backtest.queue.RunPublisher`)."""

_log = get_logger("pairdesk.backtest")

# Error ids (spec 004 §エラーコード: {DOMAIN}_{CATEGORY}_{CODE}).
RUN_NOTFOUND: Final = error_id("BT", "RUN", "NOTFOUND")
RUN_NOTREADY: Final = error_id("BT", "RUN", "NOTREADY")
RUN_FAILED: Final = error_id("BT", "RUN", "FAILED")
RUN_TIMEOUT: Final = error_id("BT", "RUN", "TIMEOUT")
RUN_ORPHANED: Final = error_id("BT", "RUN", "ORPHANED")
IDEMP_CONFLICT: Final = error_id("BT", "IDEMP", "CONFLICT")
PAIR_UNKNOWN: Final = error_id("BT", "PAIR", "UNKNOWN")
PAIR_TIMEFRAME: Final = error_id("BT", "PAIR", "TIMEFRAME")
CONFIG_NOTFOUND: Final = error_id("BT", "CONFIG", "NOTFOUND")
CONFIG_INVALID: Final = error_id("BT", "CONFIG", "INVALID")
MODEL_NOTFOUND: Final = error_id("BT", "MODEL", "NOTFOUND")
MODEL_TIMEFRAME: Final = error_id("BT", "MODEL", "TIMEFRAME")
MODEL_INVALID: Final = error_id("BT", "MODEL", "INVALID")
DATA_NODATA: Final = error_id("BT", "DATA", "NODATA")
DATA_FEWBARS: Final = error_id("BT", "DATA", "FEWBARS")
PERIOD_INSAMPLE: Final = error_id("BT", "PERIOD", "INSAMPLE")

# Engine messages meaning "the store has bars, but too few for this period" (pairdesk.research
# inputs.load_pair_inputs / pipeline.run_backtest_cli raise plain ValueErrors for these).
_FEW_BARS: Final = re.compile(r"fewer than \d+ bars|warm-up needs at least")
_SCHEMA_MISMATCH: Final = re.compile(r"feature schema")
# run_backtest_cli's honesty guard: the period overlaps the model's training period (+/- M bars).
_IN_SAMPLE: Final = re.compile(r"overlaps the model's training period")

RUNS_SUBMITTED: Final = Counter(
    "pairdesk_bt_runs_submitted_total",
    "POST /bt/runs outcomes: created, replayed (same Idempotency-Key), publish_failed",
    ["outcome"],
)
RUNS_RECOVERED: Final = Counter(
    "pairdesk_bt_runs_recovered_total",
    "Runs handled by the recovery sweep: orphaned (failed) or requeued",
    ["action"],
)


class RunFailure(Exception):
    """A run failure with a known error id and caller-safe message."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


# --------------------------------------------------------------------------------------------
# request validation
# --------------------------------------------------------------------------------------------


def resolve_config_file(value: str) -> Path:
    """Return the absolute path of a config YAML given relative to the repository root.

    Parameters
    ----------
    value : str
        ``config/<name>.yaml`` (already shape-checked by :class:`BtRunCreate`).

    Raises
    ------
    ApiError
        422 ``BT_CONFIG_NOTFOUND`` when the file does not exist or resolves (symlinks
        included) outside the repository's ``config/`` folder.
    """
    root = CONFIG_DIR.resolve()
    path = (REPO_ROOT / value).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(
            CONFIG_NOTFOUND,
            f"{value} is not a file under config/",
            status_code=422,
            details={"path": value},
        )
    return path


def validate_request(body: BtRunCreate) -> None:
    """Check a run request against the config files (blocking file I/O; run in a thread).

    Raises
    ------
    ApiError
        422 ``BT_CONFIG_NOTFOUND`` (universe/cost table path), ``BT_CONFIG_INVALID``
        (unparsable universe, cost table or timeframe policy), ``BT_PAIR_UNKNOWN`` (a pair id
        not in the universe), ``BT_PAIR_TIMEFRAME`` (timeframe not allowed for a pair).
    """
    universe = resolve_config_file(body.universe)
    cost_path = resolve_config_file(body.cost_table)
    try:
        load_settings(body.timeframe)
        pairs = load_universe(universe)
        cost_table = load_yaml(cost_path)
    except ConfigError:
        raise ApiError(
            CONFIG_INVALID,
            f"The configuration for timeframe {body.timeframe} ({body.universe}, "
            f"{body.cost_table}) is invalid",
            status_code=422,
        ) from None
    known = {p.pair_id: p for p in pairs}
    unknown = [pid for pid in body.pair_ids if pid not in known]
    if unknown:
        raise ApiError(
            PAIR_UNKNOWN,
            f"Unknown pair id(s) {unknown} for {body.universe}",
            status_code=422,
            details={"unknown": unknown, "known": sorted(known)},
        )
    for pid in body.pair_ids:
        pair = known[pid]
        if body.timeframe not in pair.allowed_timeframes:
            raise ApiError(
                PAIR_TIMEFRAME,
                f"Timeframe {body.timeframe} is not allowed for {pid}",
                status_code=422,
                details={"pair_id": pid, "allowed": list(pair.allowed_timeframes)},
            )
        try:
            CostModel.from_mapping(cost_table, [pair.leg_a.symbol, pair.leg_b.symbol])
        except (KeyError, TypeError, ValueError):
            raise ApiError(
                CONFIG_INVALID,
                f"{body.cost_table} has no usable costs for {pid}",
                status_code=422,
            ) from None


async def _model_dir(session: AsyncSession, *, version: str, timeframe: str) -> Path:
    """Registry lookup + bundle check of ``version``; raises :class:`RunFailure` on failure."""
    row = await get_model(session, version)
    if row is None:
        raise RunFailure(MODEL_NOTFOUND, f"Model {version} is not registered")
    if row.timeframe != timeframe:
        raise RunFailure(
            MODEL_TIMEFRAME,
            f"Model {version} was trained on {row.timeframe} bars, not {timeframe}",
        )
    try:
        return await asyncio.to_thread(verify_bundle, row)
    except (BundleError, OSError):
        raise RunFailure(
            MODEL_INVALID,
            f"Model {version}: its artefacts are missing or changed since registration",
        ) from None


# --------------------------------------------------------------------------------------------
# submit
# --------------------------------------------------------------------------------------------


def _replay(existing: BtRun, request: dict[str, Any], requested_by: str) -> BtRun:
    if existing.request != request or existing.requested_by != requested_by:
        raise ApiError(
            IDEMP_CONFLICT,
            "Idempotency-Key was already used with a different request",
            status_code=409,
            details={"run_id": existing.run_id} if existing.requested_by == requested_by else None,
        )
    return existing


async def submit_run(
    session: AsyncSession,
    *,
    body: BtRunCreate,
    requested_by: str,
    idempotency_key: str | None,
    publish: Publish,
) -> tuple[BtRunRead, bool]:
    """Create a ``queued`` run and publish its task (``POST /bt/runs``).

    Parameters
    ----------
    session : AsyncSession
        A session with no transaction begun.
    body : BtRunCreate
        The validated request.
    requested_by : str
        Token subject of the caller.
    idempotency_key : str, optional
        ``Idempotency-Key`` header. The same key with the same request (and caller) returns the
        existing run; with a different request or caller it is a conflict.
    publish : Publish
        Hands the run to the queue; its failure is logged and leaves the run ``queued``.

    Returns
    -------
    (BtRunRead, bool)
        The run and whether it was created now (``False``: idempotent replay).

    Raises
    ------
    ApiError
        409 ``BT_IDEMP_CONFLICT``; 422 as :func:`validate_request`, ``BT_MODEL_NOTFOUND``,
        ``BT_MODEL_TIMEFRAME``, ``BT_MODEL_INVALID``.
    """
    request = body.model_dump(mode="json")
    run_id = str(uuid.uuid4())
    try:
        async with session.begin():
            if idempotency_key is not None:
                existing = await repo.get_run_by_idempotency_key(session, idempotency_key)
                if existing is not None:
                    RUNS_SUBMITTED.labels("replayed").inc()
                    return BtRunRead.model_validate(_replay(existing, request, requested_by)), False
            await asyncio.to_thread(validate_request, body)
            try:
                await _model_dir(session, version=body.model_version, timeframe=body.timeframe)
            except RunFailure as exc:
                raise ApiError(exc.error_id, exc.message, status_code=422) from None
            run = await repo.insert_run(
                session,
                run_id=run_id,
                request=request,
                idempotency_key=idempotency_key,
                requested_by=requested_by,
                model_version=body.model_version,
            )
            created = BtRunRead.model_validate(run)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert.
        if idempotency_key is None:
            raise
        async with session.begin():
            existing = await repo.get_run_by_idempotency_key(session, idempotency_key)
            if existing is None:
                raise
            RUNS_SUBMITTED.labels("replayed").inc()
            return BtRunRead.model_validate(_replay(existing, request, requested_by)), False
    try:
        await publish(run_id)
        RUNS_SUBMITTED.labels("created").inc()
    except Exception as exc:  # broker down: the run stays queued, the sweep republishes it
        RUNS_SUBMITTED.labels("publish_failed").inc()
        _log.warning("bt_publish_failed", run_id=run_id, error=type(exc).__name__)
    return created, True


# --------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------


async def get_run(session: AsyncSession, *, run_id: str) -> BtRunRead:
    """Return one run.

    Raises
    ------
    ApiError
        404 ``BT_RUN_NOTFOUND``.
    """
    run = await repo.get_run(session, run_id)
    if run is None:
        raise ApiError(RUN_NOTFOUND, f"Backtest run {run_id} not found", status_code=404)
    return BtRunRead.model_validate(run)


async def list_runs(
    session: AsyncSession, *, status: BtRunStatus | None, limit: int, offset: int
) -> tuple[list[BtRunRead], int]:
    """One page of runs (newest first) and the total."""
    rows, total = await repo.list_runs(session, status=status, limit=limit, offset=offset)
    return [BtRunRead.model_validate(r) for r in rows], total


async def _succeeded(session: AsyncSession, run_id: str) -> None:
    run = await get_run(session, run_id=run_id)
    if run.status != BtRunStatus.SUCCEEDED:
        raise ApiError(
            RUN_NOTREADY,
            f"Backtest run {run_id} is {run.status.value}; results exist only for succeeded runs",
            status_code=409,
            details={"status": run.status.value, "error_id": run.error_id},
        )


async def get_summary(session: AsyncSession, *, run_id: str) -> list[BtSummaryRead]:
    """KPI rows of a succeeded run.

    Raises
    ------
    ApiError
        404 ``BT_RUN_NOTFOUND``; 409 ``BT_RUN_NOTREADY`` when the run has not succeeded.
    """
    await _succeeded(session, run_id)
    return [BtSummaryRead.model_validate(r) for r in await repo.list_summary(session, run_id)]


async def list_trades(
    session: AsyncSession, *, run_id: str, pair_id: str | None, limit: int, offset: int
) -> tuple[list[BtTradeRead], int]:
    """One page of a succeeded run's trades and the total (errors as :func:`get_summary`)."""
    await _succeeded(session, run_id)
    rows, total = await repo.list_trades(
        session, run_id=run_id, pair_id=pair_id, limit=limit, offset=offset
    )
    return [BtTradeRead.model_validate(r) for r in rows], total


async def get_equity(
    session: AsyncSession, *, run_id: str, pair_id: str | None
) -> list[BtDailyEquityRead]:
    """Daily equity rows of a succeeded run (errors as :func:`get_summary`)."""
    await _succeeded(session, run_id)
    rows = await repo.list_equity(session, run_id=run_id, pair_id=pair_id)
    return [BtDailyEquityRead.model_validate(r) for r in rows]


# --------------------------------------------------------------------------------------------
# engine output -> database rows
# --------------------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (NaN/inf/missing have no numeric column value)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _num(value: Any) -> Decimal | None:
    """``value`` as a Decimal of its shortest float repr (the column rounds to its scale)."""
    out = _float(value)
    return None if out is None else Decimal(repr(out))


def _abs_num(value: Any) -> Decimal | None:
    out = _num(value)
    return None if out is None else abs(out)


def _ts(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def _day(value: Any) -> date:
    return pd.Timestamp(value).date()


_PROVENANCE: Final = (
    "model_version",
    "feature_schema_hash",
    "data_hash",
    "code_hash",
    "params_hash",
)


def _provenance(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: (None if pd.isna(row.get(k)) else str(row[k])) for k in _PROVENANCE}
    out["seed"] = None if pd.isna(row.get("seed")) else int(row["seed"])
    return out


def trade_uuid(run_id: str, pair_id: str, trade_no: int) -> str:
    """Deterministic ``bt_trades.trade_id`` of the engine's ``trade_no``-th trade of a pair."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pairdesk:bt:{run_id}:{pair_id}:{trade_no}"))


def _records(df: pd.DataFrame) -> Iterable[dict[str, Any]]:
    return (dict(zip(df.columns, values, strict=True)) for values in df.itertuples(index=False))


def result_rows(out_dir: Path, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Read the engine's Parquet outputs in ``out_dir`` as ``bt_summary/bt_trades/bt_daily_equity``
    rows ready to insert.

    Mapping (spec 004 §backtest 出力 / §データディクショナリ): ``pnl_sigma → pnl_std``; every
    ``<kpi>_ci_low/high`` pair → ``ci[kpi] = [low, high]``; trades ``price_a_entry → price_a``,
    ``price_a_exit → exit_price_a`` (B alike), signed lots → ``abs`` (``side`` carries the
    direction), engine trade number → a uuid5 ``trade_id``. Non-finite values become NULL.

    Raises
    ------
    FileNotFoundError
        An output file is missing.
    """
    summary_df = pd.read_parquet(out_dir / "bt_summary.parquet")
    trades_df = pd.read_parquet(out_dir / "bt_trades.parquet")
    equity_df = pd.read_parquet(out_dir / "bt_daily_equity.parquet")
    summary = []
    for r in _records(summary_df):
        ci = {key: [_float(r[f"{key}_ci_low"]), _float(r[f"{key}_ci_high"])] for key, _ in KPI_ROWS}
        summary.append(
            {
                "run_id": run_id,
                "pair_id": str(r["pair_id"]),
                "period": str(r["period"]),
                "trades": int(r["trades"]),
                "win_rate": _num(r["win_rate"]),
                "e_per_trade": _num(r["e_per_trade"]),
                "ann_return": _num(r["ann_return"]),
                "sharpe": _num(r["sharpe"]),
                "max_dd": _num(r["max_dd"]),
                "calmar": _num(r["calmar"]),
                "trades_per_year": _num(r["trades_per_year"]),
                "pnl_std": _num(r["pnl_sigma"]),
                "halt_rate": _num(r["halt_rate"]),
                "theta1": _num(r["theta1"]),
                "theta2": _num(r["theta2"]),
                "ci": ci,
                **_provenance(r),
            }
        )
    trades = [
        {
            "trade_id": trade_uuid(run_id, str(r["pair_id"]), int(r["trade_id"])),
            "run_id": run_id,
            "pair_id": str(r["pair_id"]),
            "timestamp_entry": _ts(r["timestamp_entry"]),
            "timestamp_exit": _ts(r["timestamp_exit"]),
            "side": str(r["side"]),
            "qty_a": _abs_num(r["qty_a"]),
            "qty_b": _abs_num(r["qty_b"]),
            "price_a": _num(r["price_a_entry"]),
            "price_b": _num(r["price_b_entry"]),
            "exit_price_a": _num(r["price_a_exit"]),
            "exit_price_b": _num(r["price_b_exit"]),
            "z_at_entry": _num(r["z_at_entry"]),
            "z_at_exit": _num(r["z_at_exit"]),
            "return_prob": _num(r["return_prob"]),
            "risk_score": _num(r["risk_score"]),
            "cost_commission": _num(r["cost_commission"]),
            "cost_slippage": _num(r["cost_slippage"]),
            "cost_spread": _num(r["cost_spread"]),
            "cost_swap": _num(r["cost_swap"]),
            "exit_reason": str(r["exit_reason"]),
            "pnl": _num(r["pnl"]),
            **_provenance(r),
        }
        for r in _records(trades_df)
    ]
    equity = [
        {
            "run_id": run_id,
            "pair_id": str(r["pair_id"]),
            "date": _day(r["date"]),
            "equity": _num(r["equity"]),
            "dd": _num(r["dd"]),
            **_provenance(r),
        }
        for r in _records(equity_df)
    ]
    return {"summary": summary, "trades": trades, "equity": equity}


def _run_provenance(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """``bt_runs`` provenance: the stamps shared by every pair; ``data_hash`` is the pair's
    own for a one-pair run, else the SHA-256 of ``{pair_id: data_hash}`` over the pair rows
    (the ``PORTFOLIO`` row of a multi-pair run carries that same hash)."""
    first = summary[0]
    out = {
        k: first[k]
        for k in ("model_version", "feature_schema_hash", "code_hash", "params_hash", "seed")
    }
    hashes = {r["pair_id"]: r["data_hash"] for r in summary if r["pair_id"] != PORTFOLIO_ID}
    out["data_hash"] = next(iter(hashes.values())) if len(hashes) == 1 else sha256_json(hashes)
    return out


# --------------------------------------------------------------------------------------------
# execute (Celery task body)
# --------------------------------------------------------------------------------------------


def classify_failure(exc: BaseException, request: dict[str, Any]) -> tuple[str, str]:
    """Map an exception of a run to ``(error_id, caller-safe message)``.

    The message names only what the caller submitted (pairs, period, timeframe, model); paths,
    hosts and tracebacks stay in the worker log.
    """
    pairs = ", ".join(request.get("pair_ids", []))
    period = request.get("period")
    tf = request.get("timeframe")
    if isinstance(exc, RunFailure):
        return exc.error_id, exc.message
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return RUN_TIMEOUT, "The backtest exceeded its time limit and was stopped"
    if isinstance(exc, StoreError):
        return DATA_NODATA, f"No usable {tf} bars in the store for {pairs} in {period}"
    if isinstance(exc, BundleError):
        return MODEL_INVALID, f"Model {request.get('model_version')} cannot be loaded"
    if isinstance(exc, ConfigError):
        return CONFIG_INVALID, "The run's configuration files are invalid"
    if isinstance(exc, ValueError) and _FEW_BARS.search(str(exc)):
        return DATA_FEWBARS, f"Too few {tf} bars for {pairs} in {period} to run the backtest"
    if isinstance(exc, ValueError) and _IN_SAMPLE.search(str(exc)):
        return PERIOD_INSAMPLE, (
            f"Period {period} overlaps the training period of model "
            f"{request.get('model_version')} (widened by M bars); choose a later period"
        )
    if isinstance(exc, ValueError) and _SCHEMA_MISMATCH.search(str(exc)):
        return MODEL_INVALID, (
            f"Model {request.get('model_version')} was trained with another feature schema"
        )
    return RUN_FAILED, "The backtest failed with an internal error (see the worker log)"


@dataclass
class _Claim:
    outcome: str
    request: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None


async def _claim(sessions: async_sessionmaker[AsyncSession], run_id: str) -> _Claim:
    async with session_scope(sessions) as session:
        run = await repo.lock_run(session, run_id)
        if run is None:
            return _Claim("missing")
        if run.status == BtRunStatus.QUEUED:
            started = await repo.claim_queued(session, run_id)
            return _Claim("claimed", dict(run.request), started)
        if run.status == BtRunStatus.RUNNING:
            # We hold the run's lock, so the attempt that set it running is dead.
            await repo.mark_failed(
                session, run_id=run_id, error_id=RUN_ORPHANED, message=_ORPHANED_MESSAGE
            )
            return _Claim("orphaned")
        return _Claim("duplicate")


_ORPHANED_MESSAGE: Final = (
    "The worker executing this run stopped before it finished; submit the run again"
)


async def execute_run(*, run_id: str, settings: Settings, bt: BacktestSettings) -> str:
    """Execute one run end to end (the Celery task body; see the module docstring).

    Parameters
    ----------
    run_id : str
        A ``bt_runs`` row.
    settings : Settings
        ``POSTGRES_URL``.
    bt : BacktestSettings
        ``store_dir``, ``bt_out_dir``.

    Returns
    -------
    str
        ``succeeded`` / ``failed`` for an executed run; ``busy`` (another live worker holds
        it), ``duplicate`` (already finished), ``missing`` (no such run), ``orphaned`` (a dead
        attempt was failed) or ``superseded`` (the sweep failed it meanwhile) otherwise.

    Raises
    ------
    Exception
        Only when PostgreSQL itself fails; the run is then left to the sweep.
    """
    if not settings.postgres_url:
        raise RuntimeError("backtest worker: POSTGRES_URL is not set")
    engine = create_engine(settings.postgres_url, pool=False)
    sessions = create_session_factory(engine)
    try:
        async with engine.connect() as lock_conn:
            if not await repo.try_hold_run_lock(lock_conn, run_id):
                _log.info("bt_run_busy", run_id=run_id)
                return "busy"
            try:
                claim = await _claim(sessions, run_id)
                if claim.outcome != "claimed" or claim.started_at is None:
                    _log.info("bt_run_skipped", run_id=run_id, outcome=claim.outcome)
                    return claim.outcome
                return await _run_claimed(sessions, run_id, claim, bt)
            finally:
                await repo.release_run_lock(lock_conn, run_id)
    finally:
        await engine.dispose()


async def _run_claimed(
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    claim: _Claim,
    bt: BacktestSettings,
) -> str:
    request = claim.request
    assert claim.started_at is not None
    _log.info("bt_run_started", run_id=run_id, request=request)
    try:
        async with sessions() as session:
            model_dir = await _model_dir(
                session, version=str(request["model_version"]), timeframe=str(request["timeframe"])
            )
        out = bt.bt_out_dir / run_id
        # Blocking numeric work in this (worker child) thread: the soft time limit signal
        # interrupts it here.
        run_backtest_cli(
            universe=_config_file_for_worker(str(request["universe"])),
            period=str(request["period"]),
            timeframe=str(request["timeframe"]),
            model_dir=model_dir,
            cost=_config_file_for_worker(str(request["cost_table"])),
            store=bt.store_dir,
            out=out,
            theta1=request.get("theta1"),
            theta2=request.get("theta2"),
            latency_bars=request.get("latency_bars"),
            pair_ids=list(request["pair_ids"]),
            run_id=run_id,
        )
        rows = result_rows(out, run_id)
        async with session_scope(sessions) as session:
            stored = await repo.store_results(
                session,
                run_id=run_id,
                started_at=claim.started_at,
                provenance=_run_provenance(rows["summary"]),
                summary=rows["summary"],
                trades=rows["trades"],
                equity=rows["equity"],
            )
            if not stored:
                raise _Superseded
    except _Superseded:
        _log.warning("bt_run_superseded", run_id=run_id)
        return "superseded"
    except Exception as exc:
        eid, message = classify_failure(exc, request)
        _log.error("bt_run_failed", run_id=run_id, error_id=eid, exc_info=True)
        async with session_scope(sessions) as session:
            await repo.mark_failed(
                session, run_id=run_id, error_id=eid, message=message, started_at=claim.started_at
            )
        return "failed"
    _log.info(
        "bt_run_succeeded",
        run_id=run_id,
        trades=len(rows["trades"]),
        pairs=len(rows["summary"]),
    )
    return "succeeded"


class _Superseded(Exception):
    """The run was failed by the sweep while this attempt ran; its results are dropped."""


def _config_file_for_worker(value: str) -> Path:
    try:
        return resolve_config_file(value)
    except ApiError:
        raise RunFailure(CONFIG_NOTFOUND, f"{value} is not a file under config/") from None


async def fail_running(*, run_id: str, settings: Settings, error_id: str, message: str) -> bool:
    """Fail ``run_id`` if it is still queued/running (last resort of the task wrapper)."""
    if not settings.postgres_url:
        return False
    engine = create_engine(settings.postgres_url, pool=False)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            return await repo.mark_failed(
                session, run_id=run_id, error_id=error_id, message=message
            )
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------
# recovery sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """Runs the sweep failed as orphaned and runs it published again."""

    orphaned: list[str]
    requeued: list[str]


async def sweep_runs(
    sessions: async_sessionmaker[AsyncSession],
    *,
    requeue_after_s: float,
    publish: Publish,
) -> SweepResult:
    """Apply the recovery rule of the module docstring once.

    Parameters
    ----------
    sessions : async_sessionmaker
        Sessions on the platform database.
    requeue_after_s : float
        Publish again runs ``queued`` for this long since their last publish.
    publish : Publish
        Queue hand-off; a failure is logged and retried by a later sweep.

    Returns
    -------
    SweepResult
    """
    orphaned: list[str] = []
    async with session_scope(sessions) as session:
        for run_id in await repo.running_run_ids(session):
            if await repo.try_probe_run_lock(session, run_id):
                await repo.mark_failed(
                    session, run_id=run_id, error_id=RUN_ORPHANED, message=_ORPHANED_MESSAGE
                )
                orphaned.append(run_id)
    async with session_scope(sessions) as session:
        stale = await repo.stale_queued_run_ids(session, older_than_s=requeue_after_s)
    requeued: list[str] = []
    for run_id in stale:
        try:
            await publish(run_id)
        except Exception as exc:  # broker still down: a later sweep retries
            _log.warning("bt_requeue_failed", run_id=run_id, error=type(exc).__name__)
            continue
        requeued.append(run_id)
    if orphaned or requeued:
        RUNS_RECOVERED.labels("orphaned").inc(len(orphaned))
        RUNS_RECOVERED.labels("requeued").inc(len(requeued))
        _log.warning("bt_sweep", orphaned=orphaned, requeued=requeued)
    return SweepResult(orphaned=orphaned, requeued=requeued)

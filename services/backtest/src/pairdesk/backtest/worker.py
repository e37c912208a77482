"""Celery worker of backtest runs (DESIGN.md §3: jobs fan out as Celery tasks over Redis).

Start it with::

    celery -A pairdesk.backtest.worker worker -Q "${PAIRDESK_BT_QUEUE:-backtest}" --concurrency 1

Environment: ``POSTGRES_URL``, ``REDIS_URL``, ``PAIRDESK_BUS_NAMESPACE`` (optional),
``PAIRDESK_STORE_DIR``, ``PAIRDESK_BT_OUT_DIR``, ``PAIRDESK_BT_QUEUE``,
``PAIRDESK_BT_TASK_TIME_LIMIT_S`` (see :class:`pairdesk.backtest.settings.BacktestSettings`).
Use the default prefork pool in production: Celery enforces time limits only there.

The task body is :func:`pairdesk.backtest.service.execute_run`; it writes the run's status to
PostgreSQL itself, so a Redis outage during a run does not leave it ``running``. When the worker
starts it runs the recovery sweep once (:func:`pairdesk.backtest.service.sweep_runs`: orphaned
``running`` runs are failed ``BT_RUN_ORPHANED``, stale ``queued`` runs are published again).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import setup_logging, worker_ready
from pairdesk.backtest.queue import TASK_NAME, RunPublisher, make_celery
from pairdesk.backtest.service import (
    RUN_TIMEOUT,
    execute_run,
    fail_running,
    sweep_runs,
)
from pairdesk.backtest.settings import BacktestSettings
from pairdesk.common.db import create_engine, create_session_factory
from pairdesk.common.logs import bind_context, clear_context, configure_logging, get_logger
from pairdesk.common.settings import get_settings

__all__ = ["celery_app", "run_backtest"]

_settings: Final = get_settings()
_bt: Final = BacktestSettings()
_log = get_logger("pairdesk.backtest.worker")

#: The worker's Celery app (``celery -A pairdesk.backtest.worker``).
celery_app = make_celery(_settings, _bt)


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """JSON log lines in spec 003's format instead of Celery's own logging setup."""
    configure_logging("backtest_worker", _settings.log_level, environment=_settings.service_env)


@celery_app.task(name=TASK_NAME)
def run_backtest(run_id: str) -> str:
    """Execute backtest run ``run_id`` (see :func:`pairdesk.backtest.service.execute_run`).

    Returns
    -------
    str
        The outcome (``succeeded``, ``failed``, ``busy``, ``duplicate``...), for the log.
    """
    bind_context(run_id=run_id)
    try:
        return asyncio.run(execute_run(run_id=run_id, settings=_settings, bt=_bt))
    except SoftTimeLimitExceeded:
        # The limit fired outside the engine call (e.g. during a database round trip).
        _log.error("bt_run_timeout", run_id=run_id)
        asyncio.run(
            fail_running(
                run_id=run_id,
                settings=_settings,
                error_id=RUN_TIMEOUT,
                message="The backtest exceeded its time limit and was stopped",
            )
        )
        return "failed"
    finally:
        clear_context()


async def _sweep_once() -> None:
    if not _settings.postgres_url:
        return
    engine = create_engine(_settings.postgres_url, pool=False)
    publisher = RunPublisher(celery_app, queue=_bt.bt_queue, timeout_s=_bt.bt_publish_timeout_s)
    try:
        await sweep_runs(
            create_session_factory(engine),
            requeue_after_s=_bt.bt_requeue_after_s,
            publish=publisher,
        )
    finally:
        await engine.dispose()


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """Run the recovery sweep once when the worker is ready to consume."""
    try:
        asyncio.run(_sweep_once())
    except Exception:  # never keep the worker from starting; the API sweeps periodically too
        _log.exception("bt_startup_sweep_failed")

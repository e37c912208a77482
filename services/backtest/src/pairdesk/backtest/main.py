"""Backtest service app factory (DESIGN.md §5: ``POST /bt/runs`` · ``GET /bt/runs/{id}`` ·
``GET /bt/summary`` · ``GET /bt/trades``; spec 004 §backtest-assets-engine API/CLI).

The lifespan (besides the shared engine/Redis of
:func:`pairdesk.common.service.create_service_app`) owns a Celery producer that publishes runs to
the backtest queue, and a background task that runs the recovery sweep every
``PAIRDESK_BT_SWEEP_INTERVAL_S`` seconds (:func:`pairdesk.backtest.service.sweep_runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pairdesk.backtest.api import BacktestRuntime, router
from pairdesk.backtest.queue import RunPublisher, make_celery
from pairdesk.backtest.service import sweep_runs
from pairdesk.backtest.settings import BacktestSettings
from pairdesk.common.logs import get_logger
from pairdesk.common.service import ServiceResources, create_service_app
from pairdesk.common.settings import Settings, get_settings

__all__ = ["create_app"]

_log = get_logger("pairdesk.backtest")


async def _sweep_forever(
    resources: ServiceResources, bt: BacktestSettings, publisher: RunPublisher
) -> None:
    while True:
        await asyncio.sleep(bt.bt_sweep_interval_s)
        try:
            await sweep_runs(
                resources.sessions, requeue_after_s=bt.bt_requeue_after_s, publish=publisher
            )
        except Exception as exc:  # database down: try again next interval
            _log.warning("bt_sweep_failed", error=type(exc).__name__)


def create_app(
    settings: Settings | None = None, backtest_settings: BacktestSettings | None = None
) -> FastAPI:
    """Build the backtest service app.

    Parameters
    ----------
    settings : Settings, optional
        Process settings (default: the environment).
    backtest_settings : BacktestSettings, optional
        Queue, folders and sweep timing (default: ``PAIRDESK_*`` environment variables).

    Returns
    -------
    FastAPI
        Needs ``POSTGRES_URL`` and ``REDIS_URL`` when it starts.
    """
    cfg = settings if settings is not None else get_settings()
    bt = backtest_settings if backtest_settings is not None else BacktestSettings()

    @contextlib.asynccontextmanager
    async def lifespan_hook(app: FastAPI, resources: ServiceResources) -> AsyncIterator[None]:
        publisher = RunPublisher(
            make_celery(cfg, bt), queue=bt.bt_queue, timeout_s=bt.bt_publish_timeout_s
        )
        app.state.bt_runtime = BacktestRuntime(settings=bt, publish=publisher)
        sweeper = (
            asyncio.create_task(_sweep_forever(resources, bt, publisher))
            if bt.bt_sweep_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            app.state.bt_runtime = None
            await asyncio.to_thread(publisher.close)

    return create_service_app(
        name="backtest",
        domain="BT",
        title="Pairdesk backtest API",
        description="Launch backtests of the AI1/AI2 pair strategy asynchronously and read "
        "their KPIs, trades and daily equity (spec 004 §backtest-assets-engine).",
        routers=[router],
        settings=cfg,
        lifespan_hook=lifespan_hook,
    )

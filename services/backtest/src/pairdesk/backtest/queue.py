"""The Celery app of backtest runs and the publisher the API hands runs to (DESIGN.md §3).

Broker and result backend are ``REDIS_URL``. Redis only carries "run this ``run_id``" messages:
PostgreSQL ``bt_runs`` is the source of truth of every run's status, so the task writes its
status to PostgreSQL itself and stores no Celery result (``task_ignore_result``). A lost message
(Redis restarted without persistence, publish failed) leaves the run ``queued`` in PostgreSQL,
and the recovery sweep publishes it again (:func:`pairdesk.backtest.service.sweep_runs`).

Reliability options (spec 004 §安定運用要件):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after the
  task returns, so a worker that dies before or while running it does not lose it; the
  redelivered message then finds the run ``queued`` (runs it) or ``running`` with no live
  worker (fails it ``BT_RUN_ORPHANED``).
- ``task_time_limit`` / ``task_soft_time_limit`` from :class:`BacktestSettings`; the soft limit
  fails the run ``BT_RUN_TIMEOUT``; a run killed by the hard limit is failed by the sweep.
- ``visibility_timeout`` above the hard limit, so Redis never redelivers a message whose task
  is still running.
- ``worker_cancel_long_running_tasks_on_connection_loss = False``: a Redis outage does not
  cancel the running backtest; it finishes and writes its status to PostgreSQL.
- ``PAIRDESK_BUS_NAMESPACE`` becomes the transport's ``global_keyprefix`` (every Redis key of the
  queue is behind the namespace, like the signal bus).
"""

from __future__ import annotations

import asyncio
from typing import Final

from celery import Celery
from pairdesk.backtest.settings import BacktestSettings
from pairdesk.common.settings import Settings

__all__ = ["TASK_NAME", "RunPublisher", "celery_redis_url", "make_celery"]

#: Name of the task that executes one run (``args=[run_id]``).
TASK_NAME: Final = "pairdesk.backtest.run"

#: Publish retries when the broker connection fails (seconds); bounded so a dead Redis fails fast.
_PUBLISH_RETRY: Final = {
    "max_retries": 2,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.5,
}


def celery_redis_url(url: str) -> str:
    """Return ``REDIS_URL`` in kombu's spelling (``unix:///p`` becomes ``redis+socket:///p``)."""
    if url.startswith("unix://"):
        return "redis+socket://" + url.removeprefix("unix://")
    return url


def make_celery(settings: Settings, bt: BacktestSettings) -> Celery:
    """Build the Celery app of backtest runs (no connection is opened).

    Parameters
    ----------
    settings : Settings
        ``REDIS_URL`` (broker and result backend) and ``PAIRDESK_BUS_NAMESPACE``.
    bt : BacktestSettings
        Queue name and time limits.

    Returns
    -------
    Celery

    Raises
    ------
    RuntimeError
        ``REDIS_URL`` is unset.
    """
    if not settings.redis_url:
        raise RuntimeError(
            "backtest: REDIS_URL is not set; the backtest queue needs Redis (start the "
            "platform with `pairdesk up` or set REDIS_URL)"
        )
    url = celery_redis_url(settings.redis_url)
    app = Celery("pairdesk_backtest", broker=url, backend=url, set_as_current=False)
    transport: dict[str, object] = {
        "visibility_timeout": bt.bt_task_time_limit_s + 600,
        "socket_timeout": 5,
        "socket_connect_timeout": 3,
    }
    backend_transport: dict[str, object] = {}
    if settings.pairdesk_bus_namespace:
        transport["global_keyprefix"] = f"{settings.pairdesk_bus_namespace}:"
        backend_transport["global_keyprefix"] = f"{settings.pairdesk_bus_namespace}:"
    app.conf.update(
        task_default_queue=bt.bt_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_time_limit=bt.bt_task_time_limit_s,
        task_soft_time_limit=bt.bt_soft_time_limit_s,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options=transport,
        result_backend_transport_options=backend_transport,
        enable_utc=True,
        timezone="UTC",
    )
    return app


class RunPublisher:
    """Async callable that publishes "execute run ``run_id``" to the backtest queue.

    Parameters
    ----------
    app : Celery
        A producer app from :func:`make_celery`.
    queue : str
        Queue name (``PAIRDESK_BT_QUEUE``).
    timeout_s : float
        Upper bound of one publish in seconds.
    """

    def __init__(self, app: Celery, *, queue: str, timeout_s: float) -> None:
        self.app = app
        self.queue = queue
        self.timeout_s = timeout_s

    async def __call__(self, run_id: str) -> None:
        """Publish the task of ``run_id``.

        Raises
        ------
        TimeoutError
            The broker did not accept the message within ``timeout_s``.
        Exception
            kombu/redis connection errors when the broker is unreachable.
        """
        await asyncio.wait_for(asyncio.to_thread(self.publish_sync, run_id), self.timeout_s)

    def publish_sync(self, run_id: str) -> None:
        """Blocking publish (used from the worker's start-up sweep and by :meth:`__call__`)."""
        self.app.send_task(
            TASK_NAME,
            args=[run_id],
            task_id=run_id,
            queue=self.queue,
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )

    def close(self) -> None:
        """Close the producer's broker connections."""
        self.app.close()

"""Settings of the backtest service and its Celery worker (spec 004 §環境変数・設定キー一覧 v1).

Process-wide values (``POSTGRES_URL``, ``REDIS_URL``, JWT, ``PAIRDESK_BUS_NAMESPACE``) come from
:class:`pairdesk.common.settings.Settings`; the backtest-only ones below are read from
``PAIRDESK_``-prefixed environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BacktestSettings"]


class BacktestSettings(BaseSettings):
    """Backtest service settings (environment variables ``PAIRDESK_<FIELD>``).

    Attributes
    ----------
    store_dir : Path
        ``PAIRDESK_STORE_DIR``: the research Parquet store the engine reads bars from
        (written by ``pairdesk ingest``). Default ``./var/store``.
    bt_out_dir : Path
        ``PAIRDESK_BT_OUT_DIR``: each run writes its files to ``<bt_out_dir>/<run_id>``
        (bt_summary / bt_trades / bt_daily_equity CSV + Parquet, report.html, run.json).
        Default ``./var/bt_runs``.
    bt_queue : str
        ``PAIRDESK_BT_QUEUE``: Celery queue of backtest tasks (``backtest``). Tests give every
        worker its own queue so parallel runs never steal each other's tasks.
    bt_task_time_limit_s : int
        ``PAIRDESK_BT_TASK_TIME_LIMIT_S``: hard limit of one run in seconds (the worker child is
        killed after it). The soft limit, which fails the run cleanly with ``BT_RUN_TIMEOUT``,
        is :attr:`bt_soft_time_limit_s`. Default 3600.
    bt_sweep_interval_s : float
        ``PAIRDESK_BT_SWEEP_INTERVAL_S``: seconds between two recovery sweeps run by the API
        process (see :func:`pairdesk.backtest.service.sweep_runs`); 0 disables the periodic
        sweep (the worker still sweeps when it starts). Default 30.
    bt_requeue_after_s : float
        ``PAIRDESK_BT_REQUEUE_AFTER_S``: a run still ``queued`` this many seconds after its
        task was last published is published again (its message may have been lost with a
        Redis restart). Default 300.
    bt_publish_timeout_s : float
        ``PAIRDESK_BT_PUBLISH_TIMEOUT_S``: upper bound on one attempt to hand a task to the
        broker; a slower or failed publish leaves the run ``queued`` for the sweep. Default 5.
    """

    model_config = SettingsConfigDict(
        env_prefix="PAIRDESK_", case_sensitive=False, extra="ignore", frozen=True, env_file=None
    )

    store_dir: Path = Path("./var/store")
    bt_out_dir: Path = Path("./var/bt_runs")
    bt_queue: str = Field(
        default="backtest", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$"
    )
    bt_task_time_limit_s: int = Field(default=3600, ge=2, le=7 * 24 * 3600)
    bt_sweep_interval_s: float = Field(default=30.0, ge=0)
    bt_requeue_after_s: float = Field(default=300.0, ge=0)
    bt_publish_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _absolute_dirs(self) -> BacktestSettings:
        """Resolve the folders once, so the API and the worker agree whatever their cwd."""
        object.__setattr__(self, "store_dir", self.store_dir.expanduser().resolve())
        object.__setattr__(self, "bt_out_dir", self.bt_out_dir.expanduser().resolve())
        return self

    @property
    def bt_soft_time_limit_s(self) -> float:
        """Soft time limit in seconds: 30 s (or 10 % for short limits) before the hard limit."""
        hard = float(self.bt_task_time_limit_s)
        return hard - min(30.0, 0.1 * hard)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BacktestSettings:
        """Build from explicit values (``{"store_dir": ...}``), environment still read for the rest.

        Parameters
        ----------
        values : Mapping[str, Any]
            Field names (``store_dir``) or environment names (``PAIRDESK_STORE_DIR``).

        Raises
        ------
        pydantic.ValidationError
            On an invalid value.
        """
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).lower()
            clean[name.removeprefix("pairdesk_")] = value
        return cls(**clean)

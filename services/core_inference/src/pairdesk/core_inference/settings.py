"""Settings of the core_inference service (environment variables ``PAIRDESK_CORE_*``).

The trading rule, features, labels and costs are *not* settings of this service: they are read
from the policy YAMLs in ``config_dir`` through :func:`pairdesk.research.settings.load_settings`,
exactly as ``bt train`` / ``bt run`` read them (spec 004 §最終整合チェックリスト: training,
backtest and inference use the same numbers).
"""

from __future__ import annotations

from pathlib import Path

from pairdesk.research.config import CONFIG_DIR
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CoreSettings"]


class CoreSettings(BaseSettings):
    """Process settings of core_inference (prefix ``PAIRDESK_CORE_``).

    Attributes
    ----------
    timeframe : str
        Timeframe served (spec 004 §時間足設定ポリシー ``timeframe_default`` 1h); the active model
        of this timeframe in ``model_registry`` is the one loaded.
    poll_s : float
        Seconds between two reads of ``canonical_bars`` when no closed-bar notice arrives
        (``PAIRDESK_CORE_POLL_S``, default 5).
    theta1, theta2 : float or None
        Research override of θ1/θ2 in ``[0, 1]`` (``PAIRDESK_CORE_THETA1/2``); wins over the
        ops hash ``core:ops:theta`` and over the registry row.
    pairs : str
        Comma-separated pair ids this process serves (spec 004 §並列処理モデル: 5–10 pairs per
        process); empty = every pair of the universe allowing ``timeframe``.
    config_dir : Path
        Folder of the policy YAMLs (``core_policy``, ``backtest_policy``, ``pipeline_policy``,
        ``retrain_policy``, ``dd_policy``).
    universe, cost_table : Path or None
        ``universe.yaml`` / ``cost_table.yaml``; default: the ones in ``config_dir``.
    replay_bars : int
        Aligned bars read per pair when a model is (re)loaded: the feature warm-up plus the
        history over which the trading rule is replayed to rebuild the position, paper equity
        and drawdown (must exceed the feature warm-up, 377 bars with the spec's windows).
    max_catchup_bars : int
        After a restart, at most this many stored bars newer than the pair's last recorded
        signal are emitted as signals; older ones are replayed silently (stale for trading).
    usable_quality_flags : str
        Comma-separated ``canonical_bars.quality_flag`` values the loop uses (default
        ``ok,resampled``).
    use_imputed_bars : bool
        Also use ``missing`` bars filled by the DQ step (``metadata.imputed``), as the research
        store does (default true), so live features see the bars training and backtests saw.
    flags_timeout_s : float
        Deadline in seconds of the fail-safe read of ``core:ops:flags``.
    latency_budget_ms : float
        Per pair-bar inference budget (spec 004 §NFR 推論レイテンシ < 200 ms); slower bars are
        logged with ``CORE_INFER_LATENCY``.
    publish_batch : int
        Unpublished signals pushed to Redis per publisher pass.
    """

    model_config = SettingsConfigDict(
        env_prefix="PAIRDESK_CORE_", case_sensitive=False, extra="ignore", frozen=True
    )

    timeframe: str = Field(default="1h", pattern=r"^(15m|1h|4h)$")
    poll_s: float = Field(default=5.0, gt=0, le=3600)
    theta1: float | None = Field(default=None, ge=0, le=1)
    theta2: float | None = Field(default=None, ge=0, le=1)
    pairs: str = ""
    config_dir: Path = CONFIG_DIR
    universe: Path | None = None
    cost_table: Path | None = None
    replay_bars: int = Field(default=2000, ge=400, le=200_000)
    max_catchup_bars: int = Field(default=24, ge=0, le=10_000)
    usable_quality_flags: str = "ok,resampled"
    use_imputed_bars: bool = True
    flags_timeout_s: float = Field(default=0.5, gt=0, le=30)
    latency_budget_ms: float = Field(default=200.0, gt=0)
    publish_batch: int = Field(default=500, ge=1, le=100_000)

    @field_validator("pairs", "usable_quality_flags")
    @classmethod
    def _strip_list(cls, value: str) -> str:
        return ",".join(p.strip() for p in value.split(",") if p.strip())

    @field_validator("usable_quality_flags")
    @classmethod
    def _known_flags(cls, value: str) -> str:
        from pairdesk.common.models import QualityFlag

        known = {f.value for f in QualityFlag}
        bad = [f for f in value.split(",") if f and f not in known]
        if bad or not value:
            raise ValueError(f"usable_quality_flags must be a non-empty subset of {sorted(known)}")
        return value

    @property
    def pair_ids(self) -> list[str]:
        """The configured pair ids (empty list = all pairs of the universe)."""
        return [p for p in self.pairs.split(",") if p]

    @property
    def quality_flags(self) -> tuple[str, ...]:
        """Usable ``quality_flag`` values as a tuple."""
        return tuple(self.usable_quality_flags.split(","))

    @property
    def universe_path(self) -> Path:
        """``universe.yaml`` actually used."""
        return self.universe if self.universe is not None else self.config_dir / "universe.yaml"

    @property
    def cost_table_path(self) -> Path:
        """``cost_table.yaml`` actually used."""
        return (
            self.cost_table if self.cost_table is not None else self.config_dir / "cost_table.yaml"
        )

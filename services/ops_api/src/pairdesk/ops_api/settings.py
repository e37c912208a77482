"""ops_api settings and the runbook configuration it enforces.

Environment (prefix ``PAIRDESK_OPS_``, read by :class:`OpsSettings`):

========================================  ===============================================  =========
variable                                  meaning                                          default
========================================  ===============================================  =========
``PAIRDESK_OPS_METRICS_MAX_AGE_S``        max age in seconds of a pair's live metrics      259200
                                          (``as_of`` = last bar) for the resume guard;      (3 days)
                                          3 days so Friday's last bar still counts on
                                          Monday morning
``PAIRDESK_OPS_METRICS_MAX_SKEW_S``       how far ``as_of`` may lie in the future (clock   300
                                          skew) before the metrics count as malformed
``PAIRDESK_OPS_STATE_ACTIONS``            ops actions listed by ``GET /ops/state``         20
``PAIRDESK_OPS_UNIVERSE_PATH``            universe file (pairs ops may act on)             config/universe.yaml
``PAIRDESK_OPS_RUNBOOK_POLICY_PATH``      runbook policy (resume guard thresholds)         config/runbook_policy.yaml
``PAIRDESK_OPS_DD_POLICY_PATH``           drawdown policy (``dd_warn_portfolio``)          config/dd_policy.yaml
========================================  ===============================================  =========

The YAML files are read once, when the app is built (:func:`load_ops_config`), so a broken
policy stops the service at startup instead of at the first halt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairdesk.research.config import CONFIG_DIR, ConfigError, load_policy
from pairdesk.research.universe import load_universe
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OpsConfig", "OpsSettings", "ResumePolicy", "load_ops_config"]


class OpsSettings(BaseSettings):
    """Service-specific settings of ops_api (environment prefix ``PAIRDESK_OPS_``).

    Attributes
    ----------
    metrics_max_age_s : float
        Seconds a pair's live metrics stay fresh, measured from their ``as_of`` (last bar)
        to now. Default 259,200 s (3 days, to span a weekend market closure).
    metrics_max_skew_s : float
        Seconds ``as_of`` may lie ahead of this server's clock; further ahead is malformed.
    state_actions : int
        Number of recent ops actions ``GET /ops/state`` returns by default.
    universe_path, runbook_policy_path, dd_policy_path : Path
        Configuration files (defaults under the repository's ``config/``).
    """

    model_config = SettingsConfigDict(
        env_prefix="PAIRDESK_OPS_", case_sensitive=False, extra="ignore", frozen=True
    )

    metrics_max_age_s: float = Field(default=3 * 86400.0, gt=0)
    metrics_max_skew_s: float = Field(default=300.0, ge=0)
    state_actions: int = Field(default=20, ge=1, le=200)
    universe_path: Path = CONFIG_DIR / "universe.yaml"
    runbook_policy_path: Path = CONFIG_DIR / "runbook_policy.yaml"
    dd_policy_path: Path = CONFIG_DIR / "dd_policy.yaml"


@dataclass(frozen=True)
class ResumePolicy:
    """Technical resume guard thresholds (spec 004 §運用Runbook 再開手順, runbook_policy.yaml).

    Attributes
    ----------
    stability_days : int
        Consecutive business days the pair's drawdown must have stayed below ``dd_warn``.
    corr_threshold : float
        Minimum rolling correlation of the pair's legs.
    canary_ratio : float
        Fraction in ``(0, 1]`` of the universe's pairs a portfolio resume re-enables at once
        (rounded up, universe order); the others stay in ``halted_pairs``.
    dd_warn : float
        ``DD_WARN`` as a drawdown fraction (``dd_policy.yaml`` ``dd_warn_portfolio``).
    """

    stability_days: int
    corr_threshold: float
    canary_ratio: float
    dd_warn: float


@dataclass(frozen=True)
class OpsConfig:
    """Everything ops_api reads from ``config/`` plus its settings.

    Attributes
    ----------
    settings : OpsSettings
    pair_ids : tuple of str
        Pairs of the universe, in file order.
    resume : ResumePolicy
    halt_policy, rollback_policy : dict
        The other runbook sections, reported by ``GET /ops/state``.
    """

    settings: OpsSettings
    pair_ids: tuple[str, ...]
    resume: ResumePolicy
    halt_policy: dict[str, Any]
    rollback_policy: dict[str, Any]

    def canary_pairs(self) -> tuple[str, ...]:
        """First ``ceil(canary_ratio * n)`` universe pairs (at least one)."""
        k = max(1, math.ceil(self.resume.canary_ratio * len(self.pair_ids) - 1e-9))
        return self.pair_ids[:k]


def _number(section: dict[str, Any], key: str, where: str) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def load_ops_config(settings: OpsSettings | None = None) -> OpsConfig:
    """Read the universe, runbook and drawdown policies named by ``settings``.

    Parameters
    ----------
    settings : OpsSettings, optional
        Default: read from the environment.

    Returns
    -------
    OpsConfig

    Raises
    ------
    ConfigError
        A file is missing or malformed, or a threshold is out of range
        (``stability_days`` a non-negative integer, ``corr_threshold`` in ``[-1, 1]``,
        ``canary_ratio`` in ``(0, 1]``, ``dd_warn_portfolio`` in ``(0, 1)``).
    """
    cfg = settings if settings is not None else OpsSettings()
    runbook = load_policy(cfg.runbook_policy_path)
    dd = load_policy(cfg.dd_policy_path)
    where = str(cfg.runbook_policy_path)
    resume = runbook.get("resume_policy")
    if not isinstance(resume, dict):
        raise ConfigError(f"{where}: resume_policy must be a mapping")
    days = resume.get("stability_days")
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ConfigError(f"{where}: stability_days must be an integer >= 0, got {days!r}")
    corr = _number(resume, "corr_threshold", where)
    canary = _number(resume, "canary_ratio", where)
    dd_warn = _number(dd, "dd_warn_portfolio", str(cfg.dd_policy_path))
    if not -1.0 <= corr <= 1.0:
        raise ConfigError(f"{where}: corr_threshold must be in [-1, 1], got {corr}")
    if not 0.0 < canary <= 1.0:
        raise ConfigError(f"{where}: canary_ratio must be in (0, 1], got {canary}")
    if not 0.0 < dd_warn < 1.0:
        raise ConfigError(f"{cfg.dd_policy_path}: dd_warn_portfolio must be in (0, 1)")
    pairs = tuple(p.pair_id for p in load_universe(cfg.universe_path))
    return OpsConfig(
        settings=cfg,
        pair_ids=pairs,
        resume=ResumePolicy(
            stability_days=days, corr_threshold=corr, canary_ratio=canary, dd_warn=dd_warn
        ),
        halt_policy=dict(runbook.get("halt_policy") or {}),
        rollback_policy=dict(runbook.get("rollback_policy") or {}),
    )

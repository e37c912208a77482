"""Request and response models of ops_api (spec 004 §運用Runbook 仕様 v1 操作 API).

Request bodies refuse unknown fields (a typo such as ``levle`` must not silently halt at the
default level) and are checked for scope consistency: ``scope="pair"`` needs ``pair_id``,
``scope="portfolio"`` must not carry one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

__all__ = [
    "OpsActionRead",
    "OpsFlagChangeRead",
    "OpsFlagsRead",
    "OpsFlattenCreate",
    "OpsGuardRead",
    "OpsHaltCreate",
    "OpsModelRead",
    "OpsPairMetricsRead",
    "OpsPolicyRead",
    "OpsResumeCreate",
    "OpsResumeRead",
    "OpsRollbackCreate",
    "OpsRollbackRead",
    "OpsStateRead",
    "OpsThetaOverrideRead",
]

Scope = Literal["portfolio", "pair"]
PairId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Reason = Annotated[
    str, Field(min_length=3, max_length=2000, description="Operator's grounds (audited)")
]
Attachments = Annotated[
    list[HttpUrl],
    Field(
        max_length=20,
        description="Screenshot/file/dashboard links stored with the incident (spec 手順 4)",
    ),
]


class _Scoped(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope
    pair_id: PairId | None = None

    @model_validator(mode="after")
    def _scope_matches_pair(self) -> _Scoped:
        if self.scope == "pair" and self.pair_id is None:
            raise ValueError("scope 'pair' requires pair_id")
        if self.scope == "portfolio" and self.pair_id is not None:
            raise ValueError("scope 'portfolio' takes no pair_id")
        return self


class OpsHaltCreate(_Scoped):
    """``POST /ops/halt`` body.

    ``level=soft`` stops new entries, ``hard`` stops signal generation (spec 停止レベル). A pair
    halt adds the pair to ``halted_pairs`` (the flags hash has no per-pair level; the level is
    recorded in the audit and the incident log).
    """

    level: Literal["soft", "hard"]
    reason: Reason
    attachments: Attachments = []


class OpsFlattenCreate(_Scoped):
    """``POST /ops/flatten`` body; ``mode=graceful`` (recommended) or ``immediate``."""

    mode: Literal["immediate", "graceful"]
    reason: Reason
    attachments: Attachments = []


class OpsResumeCreate(_Scoped):
    """``POST /ops/resume`` body; ``checklist_url`` is the completed resume checklist."""

    reason: Reason
    checklist_url: HttpUrl | None = Field(
        default=None, description="resume_checklist_url: the completed resume checklist"
    )


class OpsRollbackCreate(BaseModel):
    """``POST /ops/rollback`` body.

    ``target=model``: make registered model ``version`` active again (the current one becomes
    ``rolled_back``). ``target=theta``: apply θ1/θ2 of registered model ``version`` as the θ
    override of the active model of that timeframe. ``target=config``: config_api's job.
    """

    model_config = ConfigDict(extra="forbid")

    target: Literal["theta", "model", "config"]
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    reason: Reason


class OpsFlagsRead(BaseModel):
    """The ``core:ops:flags`` hash (spec ランタイムフラグ)."""

    global_halt: Literal["none", "soft", "hard"]
    halted_pairs: list[str]
    flatten_pairs: list[str]
    leverage_scale: float = Field(ge=0, le=1, description="Position-size multiplier, fraction")
    updated_at: datetime | None = Field(default=None, description="Last write, UTC")
    updated_by: str | None = None


class OpsGuardRead(BaseModel):
    """One resume guard evaluated for one pair (``pair_id=None``: procedural guard)."""

    guard: str
    pair_id: str | None
    passed: bool
    observed: Any = Field(description="Value seen (metric, age in s, url, role...)")
    threshold: Any = Field(description="Value required")
    message: str


class OpsFlagChangeRead(BaseModel):
    """Outcome of a halt or flatten: the flags before/after and the audit/incident rows."""

    action_id: int = Field(description="audit.analytics_actions id")
    incident_id: int | None = Field(default=None, description="incident_logs id")
    action: str
    scope: Scope
    pair_ids: list[str] = Field(description="Pairs the action applied to")
    level: str | None = Field(default=None, description="Effective global halt level")
    mode: str | None = None
    before: OpsFlagsRead
    after: OpsFlagsRead


class OpsResumeRead(OpsFlagChangeRead):
    """Outcome of a resume: every guard checked, the canary pairs re-enabled, the approver."""

    guards: list[OpsGuardRead]
    canary_pairs: list[str] = Field(
        description="Pairs re-enabled by a portfolio resume (canary_ratio of the universe)"
    )
    checklist_url: str
    approved_by: str


class OpsModelRead(BaseModel):
    """A model registry row as ops sees it."""

    model_version: str
    timeframe: str
    status: str
    theta1: float | None
    theta2: float | None
    activated_at: datetime | None
    activated_by: str | None


class OpsThetaOverrideRead(BaseModel):
    """A θ override in Redis hash ``core:ops:theta`` (field = timeframe).

    core_inference uses ``theta1``/``theta2`` instead of the active model's θ while its active
    model version equals ``applies_to_model_version`` (``in_effect``).
    """

    timeframe: str
    theta1: float
    theta2: float
    source_model_version: str
    applies_to_model_version: str
    set_at: datetime
    set_by: str
    in_effect: bool


class OpsRollbackRead(BaseModel):
    """Outcome of a rollback."""

    action_id: int
    target: Literal["theta", "model"]
    version: str
    timeframe: str
    active_model: OpsModelRead
    previous_model: OpsModelRead | None = Field(
        default=None, description="Model that was active before (target=model)"
    )
    theta_override: OpsThetaOverrideRead | None = Field(
        default=None, description="Override now in force (target=theta)"
    )
    previous_theta_override: OpsThetaOverrideRead | None = None


class OpsPairMetricsRead(BaseModel):
    """Live per-pair metrics written by core_inference (``core:pair_metrics``)."""

    pair_id: str
    status: Literal["ok", "stale", "malformed"]
    as_of: datetime | None
    age_s: float | None = Field(description="Seconds since as_of")
    dd: float | None = Field(description="Drawdown, fraction")
    days_below_dd_warn: int | None
    corr: float | None
    updated_at: datetime | None
    error: str | None = None


class OpsPolicyRead(BaseModel):
    """Thresholds the resume guards use."""

    stability_days: int
    corr_threshold: float
    canary_ratio: float
    dd_warn: float
    metrics_max_age_s: float
    halt_policy: dict[str, Any]
    rollback_policy: dict[str, Any]


class OpsActionRead(BaseModel):
    """An ``audit.analytics_actions`` row of an ``/ops/*`` call."""

    id: int
    occurred_at: datetime
    action: str
    result: str | None
    actor: str
    actor_role: str | None
    scope: str | None
    pair_id: str | None
    reason: str
    request_id: str | None
    diff: dict[str, Any]


class OpsStateRead(BaseModel):
    """``GET /ops/state``: flags, live metrics, active models, θ overrides, recent actions."""

    flags: OpsFlagsRead
    universe: list[str]
    pair_metrics: list[OpsPairMetricsRead]
    active_models: list[OpsModelRead]
    theta_overrides: list[OpsThetaOverrideRead]
    policy: OpsPolicyRead
    recent_actions: list[OpsActionRead]

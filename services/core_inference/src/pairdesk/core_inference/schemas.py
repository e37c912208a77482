"""Request/response models of the core_inference API (DESIGN.md §5, spec 004 §OpenAPI 概要 v1).

Times are RFC 3339 UTC; probabilities and drawdowns are fractions in ``[0, 1]``; equity is USD.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pairdesk.common.service import Page
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "InferenceStatus",
    "ModelActivate",
    "ModelActivation",
    "ModelRead",
    "PairStatus",
    "SignalHistoryRead",
    "SignalLiveRead",
    "SignalPage",
]


class SignalLiveRead(BaseModel):
    """A signal (``signals_live`` row: the latest signal of a pair and timeframe).

    ``action`` is one of ``enter_long_spread`` (buy A, sell B), ``enter_short_spread`` (sell A,
    buy B), ``exit``, ``hold``, ``none``, ``entry_blocked`` (the rule said enter, the ops flags
    said no) or ``halted`` (hard halt / flags unreadable: no decision). ``payload`` is exactly
    what was published on the Redis stream/channel (minus ``signal_id``).
    """

    model_config = ConfigDict(from_attributes=True)

    pair_id: str
    timeframe: str
    ts_utc: datetime = Field(description="Open time of the closed bar the signal was computed on")
    action: str
    z: float | None = None
    return_prob: float | None = Field(default=None, description="AI1 output (candidates only)")
    risk_score: float | None = Field(default=None, description="AI2 output")
    position_scale: float | None = None
    model_version: str | None = None
    stream_id: str | None = Field(
        default=None, description="Entry id in the Redis stream; null until published"
    )
    payload: dict[str, Any]


class SignalHistoryRead(SignalLiveRead):
    """A ``signals_history`` row: every emitted signal, with its id and storage time."""

    id: int
    created_at: datetime


SignalPage = Page[SignalHistoryRead]


class ModelRead(BaseModel):
    """A ``model_registry`` row."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    model_version: str
    timeframe: str
    status: str
    artifact_uri: str
    artifact_sha256: str | None = None
    feature_schema_hash: str | None = None
    params_hash: str | None = None
    data_hash: str | None = None
    code_hash: str | None = None
    seed: int | None = None
    theta1: float | None = None
    theta2: float | None = None
    train_start: datetime | None = None
    train_end: datetime | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    activated_at: datetime | None = None
    activated_by: str | None = None
    created_at: datetime


class ModelActivate(BaseModel):
    """Body of ``POST /models/{version}/activate``: why (written to the audit trail)."""

    reason: str = Field(min_length=3, max_length=2000)


class ModelActivation(BaseModel):
    """Result of an activation: the active model, the one it replaced and the audit row id."""

    model_config = ConfigDict(protected_namespaces=())

    model: ModelRead
    previous_version: str | None
    changed: bool = Field(description="False when the version was already active")
    audit_id: int


class PairStatus(BaseModel):
    """Live state of one pair in the inference loop."""

    pair_id: str
    loaded: bool = Field(description="State rebuilt from stored bars for the current model")
    ready: bool = Field(description="Past the feature warm-up")
    bars: int = Field(ge=0, description="Aligned bars consumed since the state was rebuilt")
    watermark: datetime | None = Field(description="Open time of the last consumed bar")
    position: str = Field(description="flat | entry_pending | open | exit_pending")
    side: int = Field(description="+1 long spread, -1 short spread, 0 flat")
    equity: float | None = Field(description="Paper equity, USD")
    dd: float | None = Field(description="Drawdown of the paper equity from its peak, fraction")
    days_below_dd_warn: int | None = None
    last_action: str | None = None
    last_signal_ts: datetime | None = None


class InferenceStatus(BaseModel):
    """``GET /inference/status``: what the loop runs and how far it got."""

    model_config = ConfigDict(protected_namespaces=())

    state: str = Field(description="starting | running | no_active_model | error")
    timeframe: str
    model_version: str | None
    model_dir: str | None
    theta1: float | None
    theta2: float | None
    theta_source: dict[str, str] = Field(
        description="Where each θ came from: settings | ops | registry | policy"
    )
    flags_status: str | None = Field(description="ok | unknown (Redis unreadable → hard halt)")
    global_halt: str | None
    subscribed: bool = Field(description="Listening to closed-bar notices (else polling only)")
    poll_s: float
    pairs: list[PairStatus]
    pending_unpublished: int = Field(ge=0, description="Stored signals not yet in the stream")
    last_cycle_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None

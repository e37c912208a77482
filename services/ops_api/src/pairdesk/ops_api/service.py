"""ops_api logic: halt, flatten, guarded resume, rollback, state (spec 004 §運用Runbook 仕様 v1).

Order of every state change: **validate → write Redis → write the audit**.

- Flags live in the Redis hash ``core:ops:flags`` and are changed through
  :meth:`pairdesk.common.bus.SignalBus.update_flags` (``WATCH``/``MULTI``), which also
  announces the new flags on ``core:ops:flags:changed``; inference enforces them.
- The audit of one call — an ``audit.analytics_actions`` row with ``diff = {before, after}``
  and, for halt/flatten, an ``incident_logs`` row (spec 手順 4 記録) — is written in ONE
  PostgreSQL transaction after the flags changed.
- **A halt is never blocked by the database.** If the audit write fails after the flags were
  written, the change stays in force and the caller gets 503 ``OPS_AUDIT_UNAVAIL`` whose
  details carry ``applied: true`` and the flags now in force; the full audit record is logged
  (``ops_audit_write_failed``) so it can be re-entered.
- Redis unreachable: 503 ``OPS_BUS_UNAVAIL``; an audit row with ``result="failed"`` (and for
  halt/flatten an incident carrying the error id) is written if PostgreSQL is up.

Halts only ever tighten: a soft portfolio halt while a hard one is in force leaves it hard
(lowering the level is what the guarded resume is for).

Resume guards (spec 再開手順, ``config/runbook_policy.yaml`` ``resume_policy``,
``config/dd_policy.yaml`` ``dd_warn_portfolio``), for every pair in scope, on the live metrics
core_inference writes to ``core:pair_metrics`` (JSON ``{"as_of", "dd", "days_below_dd_warn",
"corr", "updated_at"}``):

============================  ================================================================
guard                         passes when
============================  ================================================================
``metrics_available``         metrics exist, parse, and ``as_of`` is at most
                              ``PAIRDESK_OPS_METRICS_MAX_AGE_S`` old (fail closed otherwise)
``dd_below_warn``             ``|dd| < DD_WARN``
``stability_days``            ``days_below_dd_warn >= stability_days`` (business days)
``corr_threshold``            ``corr >= corr_threshold``
``resume_checklist``          ``checklist_url`` given (``resume_checklist_url``)
``resume_approved``           caller's role is approver or admin (``resume_approved_by``)
============================  ================================================================

Any failing guard refuses the resume with 409 ``OPS_RESUME_GUARD`` (``details.failed_guards``:
guard, pair, observed value, threshold); the refusal is audited with ``result="refused"``.
A portfolio resume clears ``global_halt``, resets ``leverage_scale`` to 1.0, clears the
universe's ``flatten_pairs`` and re-enables the canary pairs only (``canary_ratio`` of the
universe, rounded up, universe order); the other pairs stay in ``halted_pairs`` until resumed
one by one (spec: カナリア再開 → KPI良好なら全体).

Rollback: ``model`` re-activates a registered model (the current one becomes ``rolled_back``)
in the same transaction as its audit row; ``theta`` writes θ1/θ2 of a registered model into the
Redis hash ``core:ops:theta`` as the override of the active model of that timeframe (see
:mod:`pairdesk.ops_api.repository`); ``config`` is refused (config_api owns config rollback).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pairdesk.common.auth import Role, TokenClaims
from pairdesk.common.bus import HaltLevel, OpsFlags, SignalBus
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import get_logger
from pairdesk.common.models import ModelRegistry, ModelStatus
from pairdesk.common.registry import BundleError, activate_model, active_model, get_model
from pairdesk.common.service import Page
from pairdesk.ops_api import repository as repo
from pairdesk.ops_api.schemas import (
    OpsActionRead,
    OpsFlagChangeRead,
    OpsFlagsRead,
    OpsFlattenCreate,
    OpsGuardRead,
    OpsHaltCreate,
    OpsModelRead,
    OpsPairMetricsRead,
    OpsPolicyRead,
    OpsResumeCreate,
    OpsResumeRead,
    OpsRollbackCreate,
    OpsRollbackRead,
    OpsStateRead,
    OpsThetaOverrideRead,
)
from pairdesk.ops_api.settings import OpsConfig, ResumePolicy
from prometheus_client import Counter
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "ERR_AUDIT_UNAVAIL",
    "ERR_BUS_INVALID",
    "ERR_BUS_UNAVAIL",
    "ERR_DB_UNAVAIL",
    "ERR_PAIR_UNKNOWN",
    "ERR_RESUME_GUARD",
    "ERR_ROLLBACK_BUNDLE",
    "ERR_ROLLBACK_NOACTIVE",
    "ERR_ROLLBACK_NOTFOUND",
    "ERR_ROLLBACK_NOTHETA",
    "ERR_ROLLBACK_UNSUPPORT",
    "OPS_ACTIONS_TOTAL",
    "evaluate_resume_guards",
    "flatten",
    "get_state",
    "halt",
    "list_ops_actions",
    "parse_pair_metrics",
    "resume",
    "rollback",
]

ERR_PAIR_UNKNOWN: Final = error_id("OPS", "PAIR", "UNKNOWN")
ERR_BUS_UNAVAIL: Final = error_id("OPS", "BUS", "UNAVAIL")
ERR_BUS_INVALID: Final = error_id("OPS", "BUS", "INVALID")
ERR_AUDIT_UNAVAIL: Final = error_id("OPS", "AUDIT", "UNAVAIL")
ERR_DB_UNAVAIL: Final = error_id("OPS", "DB", "UNAVAIL")
ERR_RESUME_GUARD: Final = error_id("OPS", "RESUME", "GUARD")
ERR_ROLLBACK_NOTFOUND: Final = error_id("OPS", "ROLLBACK", "NOTFOUND")
ERR_ROLLBACK_UNSUPPORT: Final = error_id("OPS", "ROLLBACK", "UNSUPPORT")
ERR_ROLLBACK_NOTHETA: Final = error_id("OPS", "ROLLBACK", "NOTHETA")
ERR_ROLLBACK_NOACTIVE: Final = error_id("OPS", "ROLLBACK", "NOACTIVE")
ERR_ROLLBACK_BUNDLE: Final = error_id("OPS", "ROLLBACK", "BUNDLE")

#: Ops calls by action and outcome (``applied``, ``refused``, ``failed``).
OPS_ACTIONS_TOTAL: Final = Counter(
    "pairdesk_ops_actions_total",
    "POST /ops/* calls by action (halt|flatten|resume|rollback) and result",
    ["action", "result"],
)

_BUS_ERRORS: Final = (RedisError, OSError, TimeoutError)
_DB_ERRORS: Final = (SQLAlchemyError, OSError, TimeoutError)
_LEVEL_RANK: Final = {HaltLevel.NONE: 0, HaltLevel.SOFT: 1, HaltLevel.HARD: 2}

_log = get_logger("pairdesk.ops_api")


# --------------------------------------------------------------------------------- helpers


def _flags_read(flags: OpsFlags) -> OpsFlagsRead:
    return OpsFlagsRead(
        global_halt=flags.global_halt.value,
        halted_pairs=sorted(flags.halted_pairs),
        flatten_pairs=sorted(flags.flatten_pairs),
        leverage_scale=flags.leverage_scale,
        updated_at=(
            datetime.fromtimestamp(flags.updated_at, UTC) if flags.updated_at is not None else None
        ),
        updated_by=flags.updated_by,
    )


def _json(model: Any) -> Any:
    return model.model_dump(mode="json") if model is not None else None


def _model_read(row: ModelRegistry) -> OpsModelRead:
    return OpsModelRead(
        model_version=row.model_version,
        timeframe=row.timeframe,
        status=ModelStatus(row.status).value,
        theta1=float(row.theta1) if row.theta1 is not None else None,
        theta2=float(row.theta2) if row.theta2 is not None else None,
        activated_at=row.activated_at,
        activated_by=row.activated_by,
    )


def _action_read(row: Any) -> OpsActionRead:
    return OpsActionRead(
        id=row.id,
        occurred_at=row.occurred_at,
        action=row.action,
        result=row.result,
        actor=row.actor,
        actor_role=row.actor_role,
        scope=row.scope,
        pair_id=row.pair_id,
        reason=row.reason,
        request_id=row.request_id,
        diff=row.diff,
    )


def _scope_pairs(config: OpsConfig, scope: str, pair_id: str | None) -> tuple[str, ...]:
    """Pairs a call acts on: the whole universe, or one universe pair (else 422)."""
    if scope == "portfolio":
        return config.pair_ids
    if pair_id is None or pair_id not in config.pair_ids:
        raise ApiError(
            ERR_PAIR_UNKNOWN,
            f"pair_id {pair_id!r} is not in the universe",
            status_code=422,
            details={"pair_id": pair_id, "universe": list(config.pair_ids)},
        )
    return (pair_id,)


def _bus_unavailable(exc: BaseException) -> ApiError:
    return ApiError(
        ERR_BUS_UNAVAIL,
        "Redis (ops flags) is unreachable; nothing was changed",
        status_code=503,
        details={"error": type(exc).__name__},
    )


async def _write_flags(
    bus: SignalBus,
    change: Callable[[OpsFlags], OpsFlags],
    *,
    actor: str,
    repair: bool,
) -> tuple[OpsFlags | None, OpsFlags]:
    """Apply ``change`` atomically; return (flags before, flags after).

    ``before`` is ``None`` when the stored hash was unreadable and ``repair`` allowed
    overwriting it with ``change(defaults)`` (halt/flatten: a halt must land even on a
    corrupted hash; consumers already treat an unreadable hash as a hard halt).

    Raises
    ------
    ApiError
        503 ``OPS_BUS_INVALID`` for an unreadable hash without ``repair``.
    redis.exceptions.RedisError, OSError, TimeoutError
        Redis unreachable.
    RuntimeError
        The hash kept changing under concurrent writers (every ``WATCH`` attempt failed).
    """
    seen: list[OpsFlags] = []

    def recorded(current: OpsFlags) -> OpsFlags:
        seen.append(current)
        return change(current)

    try:
        after = await bus.update_flags(recorded, updated_by=actor)
    except ValueError as exc:
        if not repair:
            raise ApiError(
                ERR_BUS_INVALID,
                "The ops flags hash holds invalid data; fix it with a halt first",
                status_code=503,
                details={"error": str(exc)},
            ) from None
        _log.warning("ops_flags_invalid_overwritten", error=str(exc))
        return None, await bus.set_flags(change(OpsFlags()), updated_by=actor)
    return seen[-1], after


async def _audit(
    session: AsyncSession,
    *,
    user: TokenClaims,
    request_id: str,
    action: str,
    result: str,
    scope: str | None,
    pair_id: str | None,
    reason: str,
    diff: dict[str, Any],
    incident: Mapping[str, Any] | None = None,
) -> tuple[int, int | None]:
    """Write the action row (and the incident row) in one transaction; return their ids."""
    async with session.begin():
        row = await repo.add_action(
            session,
            action=action,
            result=result,
            actor=user.sub,
            actor_role=user.role.value,
            reason=reason,
            diff=diff,
            request_id=request_id,
            scope=scope,
            pair_id=pair_id,
        )
        incident_id = None
        if incident is not None:
            inc = await repo.add_incident(
                session,
                recorded_by=user.sub,
                scope=scope or "portfolio",
                pair_id=pair_id,
                reason=reason,
                details={
                    **incident.get("details", {}),
                    "action_id": row.id,
                    "request_id": request_id,
                },
                attachments=incident.get("attachments", ()),
                level=str(incident["level"]),
                error_id=incident.get("error_id"),
            )
            incident_id = inc.id
        return row.id, incident_id


async def _audit_after_change(
    session: AsyncSession, *, after: dict[str, Any], **kwargs: Any
) -> tuple[int, int | None]:
    """Audit a change already in force; 503 ``OPS_AUDIT_UNAVAIL`` (change kept) on failure."""
    try:
        return await _audit(session, **kwargs)
    except _DB_ERRORS as exc:
        _log.error(
            "ops_audit_write_failed",
            error=f"{type(exc).__name__}: {exc}",
            audit={k: v for k, v in kwargs.items() if k != "user"},
            actor=kwargs["user"].sub,
        )
        raise ApiError(
            ERR_AUDIT_UNAVAIL,
            "The change is in force but its audit record could not be written "
            "(PostgreSQL unavailable); the record was logged",
            status_code=503,
            details={"applied": True, "state": after},
        ) from None


async def _audit_best_effort(session: AsyncSession, **kwargs: Any) -> None:
    """Audit a failed or refused call; a database failure here is logged, not raised."""
    try:
        await _audit(session, **kwargs)
    except _DB_ERRORS as exc:
        _log.error(
            "ops_audit_write_failed",
            error=f"{type(exc).__name__}: {exc}",
            audit={k: v for k, v in kwargs.items() if k != "user"},
            actor=kwargs["user"].sub,
        )


async def _flag_action(
    *,
    bus: SignalBus,
    session: AsyncSession,
    user: TokenClaims,
    request_id: str,
    action: str,
    scope: str,
    pair_id: str | None,
    reason: str,
    change: Callable[[OpsFlags], OpsFlags],
    repair: bool,
    details: dict[str, Any],
    incident: dict[str, Any] | None,
) -> tuple[OpsFlags | None, OpsFlags, int, int | None]:
    """Redis first, then the audit; see the module docstring for the failure rules."""
    common = {
        "user": user,
        "request_id": request_id,
        "action": action,
        "scope": scope,
        "pair_id": pair_id,
        "reason": reason,
    }
    try:
        before, after = await _write_flags(bus, change, actor=user.sub, repair=repair)
    except (*_BUS_ERRORS, RuntimeError) as exc:
        OPS_ACTIONS_TOTAL.labels(action, "failed").inc()
        failure = _bus_unavailable(exc)
        await _audit_best_effort(
            session,
            result="failed",
            diff={"before": None, "after": None, "error_id": failure.error_id, **details},
            incident=(
                {**incident, "error_id": failure.error_id, "details": details}
                if incident is not None
                else None
            ),
            **common,
        )
        raise failure from None
    after_json = _json(_flags_read(after))
    diff: dict[str, Any] = {
        "before": _json(_flags_read(before)) if before is not None else None,
        "after": after_json,
    }
    if before is None:
        diff["before_unreadable"] = True  # an invalid hash was overwritten (halt/flatten)
    diff.update(details)
    action_id, incident_id = await _audit_after_change(
        session,
        after=after_json,
        result="applied",
        diff=diff,
        incident=({**incident, "details": details} if incident is not None else None),
        **common,
    )
    OPS_ACTIONS_TOTAL.labels(action, "applied").inc()
    _log.info("ops_action_applied", action=action, scope=scope, pair_id=pair_id, actor=user.sub)
    return before, after, action_id, incident_id


# ------------------------------------------------------------------------------ halt/flatten


async def halt(
    *,
    bus: SignalBus,
    session: AsyncSession,
    config: OpsConfig,
    user: TokenClaims,
    request_id: str,
    body: OpsHaltCreate,
) -> OpsFlagChangeRead:
    """Halt the portfolio (``global_halt``) or one pair (``halted_pairs``).

    Parameters
    ----------
    bus : SignalBus
        Flags are written through it (and announced on the flags-changed channel).
    session : AsyncSession
        Audit transaction (``audit.analytics_actions`` + ``incident_logs``).
    config : OpsConfig
        Universe and policies.
    user : TokenClaims
        Caller (editor or above).
    request_id : str
        Stored with the audit row.
    body : OpsHaltCreate

    Returns
    -------
    OpsFlagChangeRead
        Flags before/after, the audit and incident ids, the effective global level.

    Raises
    ------
    ApiError
        422 ``OPS_PAIR_UNKNOWN``; 503 ``OPS_BUS_UNAVAIL`` (nothing changed); 503
        ``OPS_AUDIT_UNAVAIL`` (halt in force, audit not written).
    """
    pairs = _scope_pairs(config, body.scope, body.pair_id)
    level = HaltLevel(body.level)

    def change(flags: OpsFlags) -> OpsFlags:
        if body.scope == "portfolio":
            keep = _LEVEL_RANK[flags.global_halt] >= _LEVEL_RANK[level]
            return replace(flags, global_halt=flags.global_halt if keep else level)
        return replace(flags, halted_pairs=flags.halted_pairs | set(pairs))

    attachments = [str(a) for a in body.attachments]
    before, after, action_id, incident_id = await _flag_action(
        bus=bus,
        session=session,
        user=user,
        request_id=request_id,
        action="ops.halt",
        scope=body.scope,
        pair_id=body.pair_id,
        reason=body.reason,
        change=change,
        repair=True,
        details={"level": level.value, "pairs": list(pairs)},
        incident={"level": f"{level.value}_halt", "attachments": attachments},
    )
    return OpsFlagChangeRead(
        action_id=action_id,
        incident_id=incident_id,
        action="ops.halt",
        scope=body.scope,
        pair_ids=list(pairs),
        level=after.global_halt.value,
        before=_flags_read(before or OpsFlags()),
        after=_flags_read(after),
    )


async def flatten(
    *,
    bus: SignalBus,
    session: AsyncSession,
    config: OpsConfig,
    user: TokenClaims,
    request_id: str,
    body: OpsFlattenCreate,
) -> OpsFlagChangeRead:
    """Flatten one pair or every universe pair: add them to ``flatten_pairs`` and
    ``halted_pairs`` (no new entries while positions are closed).

    The flags hash carries no mode; ``mode`` (graceful|immediate) is recorded in the audit
    diff and the incident details.

    Raises
    ------
    ApiError
        As :func:`halt`.
    """
    pairs = set(_scope_pairs(config, body.scope, body.pair_id))

    def change(flags: OpsFlags) -> OpsFlags:
        return replace(
            flags,
            flatten_pairs=flags.flatten_pairs | pairs,
            halted_pairs=flags.halted_pairs | pairs,
        )

    before, after, action_id, incident_id = await _flag_action(
        bus=bus,
        session=session,
        user=user,
        request_id=request_id,
        action="ops.flatten",
        scope=body.scope,
        pair_id=body.pair_id,
        reason=body.reason,
        change=change,
        repair=True,
        details={"mode": body.mode, "pairs": sorted(pairs)},
        incident={"level": "flatten", "attachments": [str(a) for a in body.attachments]},
    )
    return OpsFlagChangeRead(
        action_id=action_id,
        incident_id=incident_id,
        action="ops.flatten",
        scope=body.scope,
        pair_ids=sorted(pairs),
        level=after.global_halt.value,
        mode=body.mode,
        before=_flags_read(before or OpsFlags()),
        after=_flags_read(after),
    )


# ------------------------------------------------------------------------------------ resume


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _utc(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an RFC 3339 string, got {value!r}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} is not RFC 3339: {value!r}") from None
    if ts.tzinfo is None:
        raise ValueError(f"{name} has no UTC offset: {value!r}")
    return ts.astimezone(UTC)


def parse_pair_metrics(
    pair_id: str,
    raw: str | bytes | None,
    *,
    now: datetime,
    max_age_s: float,
    max_skew_s: float,
) -> OpsPairMetricsRead | None:
    """Parse one pair's live metrics JSON (``None`` if there are none).

    Parameters
    ----------
    pair_id : str
    raw : str, bytes or None
        The ``core:pair_metrics`` field: ``{"as_of": RFC 3339 UTC of the last bar, "dd":
        drawdown fraction, "days_below_dd_warn": int, "corr": float, "updated_at": RFC 3339}``.
    now : datetime
        Current time, UTC.
    max_age_s : float
        ``as_of`` older than this (seconds) → ``status="stale"``.
    max_skew_s : float
        ``as_of`` further than this in the future → ``status="malformed"``.

    Returns
    -------
    OpsPairMetricsRead or None
        ``status`` ``ok``/``stale``/``malformed`` (with ``error``).
    """
    if raw is None:
        return None
    empty: dict[str, Any] = {
        "pair_id": pair_id,
        "as_of": None,
        "age_s": None,
        "dd": None,
        "days_below_dd_warn": None,
        "corr": None,
        "updated_at": None,
    }
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("metrics must be a JSON object")
        as_of = _utc(body.get("as_of"), "as_of")
        dd = _finite(body.get("dd"), "dd")
        days = body.get("days_below_dd_warn")
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError(f"days_below_dd_warn must be an integer >= 0, got {days!r}")
        corr = _finite(body.get("corr"), "corr")
        updated = body.get("updated_at")
        updated_at = _utc(updated, "updated_at") if updated is not None else None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return OpsPairMetricsRead(status="malformed", error=str(exc), **empty)
    age = (now - as_of).total_seconds()
    status: Literal["ok", "stale", "malformed"] = "ok"
    error = None
    if age < -max_skew_s:
        status, error = "malformed", f"as_of {as_of.isoformat()} is in the future"
    elif age > max_age_s:
        status, error = "stale", f"as_of is {age:.0f} s old (max {max_age_s:.0f} s)"
    return OpsPairMetricsRead(
        pair_id=pair_id,
        status=status,
        as_of=as_of,
        age_s=round(age, 3),
        dd=dd,
        days_below_dd_warn=days,
        corr=corr,
        updated_at=updated_at,
        error=error,
    )


def evaluate_resume_guards(
    *,
    pair_ids: Sequence[str],
    metrics: Mapping[str, OpsPairMetricsRead | None],
    policy: ResumePolicy,
    max_age_s: float,
    checklist_url: str | None,
    user: TokenClaims,
) -> list[OpsGuardRead]:
    """Evaluate every resume guard (module docstring table) for ``pair_ids``.

    Parameters
    ----------
    pair_ids : sequence of str
        Pairs in the resume's scope.
    metrics : mapping
        ``pair_id → parsed metrics`` (``None`` = none stored).
    policy : ResumePolicy
        ``stability_days``, ``corr_threshold``, ``dd_warn``.
    max_age_s : float
        Freshness budget of ``as_of`` in seconds (reported as the threshold).
    checklist_url : str or None
    user : TokenClaims
        The caller (``resume_approved_by``).

    Returns
    -------
    list of OpsGuardRead
        Technical guards per pair, then the two procedural guards; a pair without usable
        metrics gets only ``metrics_available`` (failed).
    """
    out: list[OpsGuardRead] = []
    for pid in pair_ids:
        m = metrics.get(pid)
        if m is None or m.status != "ok":
            observed: Any = None if m is None else {"status": m.status, "age_s": m.age_s}
            why = "no live metrics stored" if m is None else str(m.error)
            out.append(
                OpsGuardRead(
                    guard="metrics_available",
                    pair_id=pid,
                    passed=False,
                    observed=observed,
                    threshold={"max_age_s": max_age_s},
                    message=f"{pid}: {why}; resume needs fresh metrics from core_inference",
                )
            )
            continue
        assert m.dd is not None
        assert m.corr is not None
        assert m.days_below_dd_warn is not None
        out.append(
            OpsGuardRead(
                guard="metrics_available",
                pair_id=pid,
                passed=True,
                observed={"status": m.status, "age_s": m.age_s},
                threshold={"max_age_s": max_age_s},
                message=f"{pid}: metrics as of {m.as_of.isoformat() if m.as_of else '?'}",
            )
        )
        dd = abs(m.dd)
        out.append(
            OpsGuardRead(
                guard="dd_below_warn",
                pair_id=pid,
                passed=dd < policy.dd_warn,
                observed=dd,
                threshold=policy.dd_warn,
                message=f"{pid}: drawdown {dd:.4f} must be below DD_WARN {policy.dd_warn:.4f}",
            )
        )
        out.append(
            OpsGuardRead(
                guard="stability_days",
                pair_id=pid,
                passed=m.days_below_dd_warn >= policy.stability_days,
                observed=m.days_below_dd_warn,
                threshold=policy.stability_days,
                message=(
                    f"{pid}: {m.days_below_dd_warn} business days below DD_WARN, "
                    f"{policy.stability_days} required"
                ),
            )
        )
        out.append(
            OpsGuardRead(
                guard="corr_threshold",
                pair_id=pid,
                passed=m.corr >= policy.corr_threshold,
                observed=m.corr,
                threshold=policy.corr_threshold,
                message=f"{pid}: rolling correlation {m.corr:.4f}, minimum {policy.corr_threshold}",
            )
        )
    out.append(
        OpsGuardRead(
            guard="resume_checklist",
            pair_id=None,
            passed=checklist_url is not None,
            observed=checklist_url,
            threshold="completed checklist URL (resume_checklist_url)",
            message="resume checklist " + ("given" if checklist_url else "missing"),
        )
    )
    out.append(
        OpsGuardRead(
            guard="resume_approved",
            pair_id=None,
            passed=user.role >= Role.APPROVER,
            observed={"approved_by": user.sub, "role": user.role.value},
            threshold=Role.APPROVER.value,
            message=f"resume approved by {user.sub} ({user.role.value})",
        )
    )
    return out


async def resume(
    *,
    bus: SignalBus,
    session: AsyncSession,
    config: OpsConfig,
    user: TokenClaims,
    request_id: str,
    body: OpsResumeCreate,
    now: datetime | None = None,
) -> OpsResumeRead:
    """Resume the portfolio or one pair once every resume guard passes.

    Parameters
    ----------
    bus, session, config, user, request_id
        As :func:`halt`; ``user`` is the approver (``resume_approved_by``).
    body : OpsResumeCreate
    now : datetime, optional
        Clock for the freshness guard (default: now, UTC).

    Returns
    -------
    OpsResumeRead
        Flags before/after, the guards (all passed), the canary pairs re-enabled.

    Raises
    ------
    ApiError
        422 ``OPS_PAIR_UNKNOWN``; 409 ``OPS_RESUME_GUARD`` with ``details.failed_guards``;
        503 ``OPS_BUS_UNAVAIL`` / ``OPS_BUS_INVALID``; 503 ``OPS_AUDIT_UNAVAIL`` (resumed,
        audit not written).
    """
    pairs = _scope_pairs(config, body.scope, body.pair_id)
    clock = now if now is not None else datetime.now(UTC)
    checklist = str(body.checklist_url) if body.checklist_url is not None else None
    common = {
        "user": user,
        "request_id": request_id,
        "action": "ops.resume",
        "scope": body.scope,
        "pair_id": body.pair_id,
        "reason": body.reason,
    }
    try:  # same hash as SignalBus.get_pair_metrics, read per pair: one bad entry hides none
        raw = await bus.client.hmget(bus.names.pair_metrics, list(pairs))
    except _BUS_ERRORS as exc:
        OPS_ACTIONS_TOTAL.labels("ops.resume", "failed").inc()
        failure = _bus_unavailable(exc)
        await _audit_best_effort(
            session,
            result="failed",
            diff={"before": None, "after": None, "error_id": failure.error_id},
            **common,
        )
        raise failure from None
    s = config.settings
    metrics = {
        pid: parse_pair_metrics(
            pid, value, now=clock, max_age_s=s.metrics_max_age_s, max_skew_s=s.metrics_max_skew_s
        )
        for pid, value in zip(pairs, raw, strict=True)
    }
    guards = evaluate_resume_guards(
        pair_ids=pairs,
        metrics=metrics,
        policy=config.resume,
        max_age_s=s.metrics_max_age_s,
        checklist_url=checklist,
        user=user,
    )
    failed = [g for g in guards if not g.passed]
    if failed:
        OPS_ACTIONS_TOTAL.labels("ops.resume", "refused").inc()
        failed_json = [_json(g) for g in failed]
        await _audit_best_effort(
            session,
            result="refused",
            diff={"before": None, "after": None, "failed_guards": failed_json},
            **common,
        )
        raise ApiError(
            ERR_RESUME_GUARD,
            "Resume refused: " + ", ".join(sorted({g.guard for g in failed})) + " not satisfied",
            status_code=409,
            details={"failed_guards": failed_json, "scope": body.scope, "pair_ids": list(pairs)},
        )

    universe = set(config.pair_ids)
    if body.scope == "portfolio":
        canary = set(config.canary_pairs())

        def change(flags: OpsFlags) -> OpsFlags:
            return replace(
                flags,
                global_halt=HaltLevel.NONE,
                leverage_scale=1.0,
                flatten_pairs=flags.flatten_pairs - universe,
                halted_pairs=(flags.halted_pairs - universe) | (universe - canary),
            )
    else:
        canary = set(pairs)

        def change(flags: OpsFlags) -> OpsFlags:
            return replace(
                flags,
                halted_pairs=flags.halted_pairs - canary,
                flatten_pairs=flags.flatten_pairs - canary,
            )

    assert checklist is not None  # the resume_checklist guard passed
    details = {
        "guards": [_json(g) for g in guards],
        "canary_pairs": sorted(canary),
        "checklist_url": checklist,
        "resume_approved_by": user.sub,
        "resume_approved": True,
    }
    before, after, action_id, _ = await _flag_action(
        bus=bus,
        session=session,
        user=user,
        request_id=request_id,
        action="ops.resume",
        scope=body.scope,
        pair_id=body.pair_id,
        reason=body.reason,
        change=change,
        repair=False,
        details=details,
        incident=None,
    )
    return OpsResumeRead(
        action_id=action_id,
        action="ops.resume",
        scope=body.scope,
        pair_ids=list(pairs),
        level=after.global_halt.value,
        before=_flags_read(before or OpsFlags()),
        after=_flags_read(after),
        guards=guards,
        canary_pairs=sorted(canary),
        checklist_url=checklist,
        approved_by=user.sub,
    )


# ---------------------------------------------------------------------------------- rollback


def _override_read(
    timeframe: str, value: Mapping[str, Any], active: Mapping[str, str]
) -> OpsThetaOverrideRead:
    return OpsThetaOverrideRead(
        timeframe=timeframe,
        theta1=value["theta1"],
        theta2=value["theta2"],
        source_model_version=value["source_model_version"],
        applies_to_model_version=value["applies_to_model_version"],
        set_at=value["set_at"],
        set_by=value["set_by"],
        in_effect=active.get(timeframe) == value["applies_to_model_version"],
    )


async def rollback(
    *,
    bus: SignalBus,
    session: AsyncSession,
    user: TokenClaims,
    request_id: str,
    body: OpsRollbackCreate,
) -> OpsRollbackRead:
    """Roll the model or θ back to a registered model version (spec ロールバック手順).

    ``model``: :func:`pairdesk.common.registry.activate_model` with
    ``previous_status=rolled_back``, in the same transaction as the audit row.
    ``theta``: θ1/θ2 of model ``version`` become the override (Redis ``core:ops:theta``, field
    = its timeframe) of the model active now; the override lapses when another model becomes
    active (``applies_to_model_version``).

    Raises
    ------
    ApiError
        409 ``OPS_ROLLBACK_UNSUPPORT`` (``config``: use config_api); 404
        ``OPS_ROLLBACK_NOTFOUND``; 409 ``OPS_ROLLBACK_BUNDLE`` (artefacts changed/missing),
        ``OPS_ROLLBACK_NOTHETA`` (no θ in that row), ``OPS_ROLLBACK_NOACTIVE`` (θ rollback with
        no active model); 503 ``OPS_DB_UNAVAIL``, ``OPS_BUS_UNAVAIL``, ``OPS_AUDIT_UNAVAIL``.
    """
    if body.target == "config":
        raise ApiError(
            ERR_ROLLBACK_UNSUPPORT,
            "Config rollback is done by config_api: POST /api/v1/configs/rollback "
            "(it restores a previous version through the audited config workflow)",
            status_code=409,
            details={"target": "config", "use": "config_api POST /api/v1/configs/rollback"},
        )
    try:
        if body.target == "model":
            return await _rollback_model(
                session=session, user=user, request_id=request_id, body=body
            )
        return await _rollback_theta(
            bus=bus, session=session, user=user, request_id=request_id, body=body
        )
    except _DB_ERRORS as exc:
        raise ApiError(
            ERR_DB_UNAVAIL,
            "PostgreSQL is unavailable; nothing was rolled back",
            status_code=503,
            details={"error": type(exc).__name__},
        ) from None


def _not_found(version: str) -> ApiError:
    return ApiError(ERR_ROLLBACK_NOTFOUND, f"model {version!r} is not registered", status_code=404)


async def _rollback_model(
    *, session: AsyncSession, user: TokenClaims, request_id: str, body: OpsRollbackCreate
) -> OpsRollbackRead:
    async with session.begin():
        target = await get_model(session, body.version)
        if target is None:
            raise _not_found(body.version)
        current = await active_model(session, target.timeframe)
        before = _model_read(current) if current is not None else None
        try:
            row, _ = await activate_model(
                session,
                body.version,
                activated_by=user.sub,
                previous_status=ModelStatus.ROLLED_BACK,
            )
        except BundleError as exc:
            raise ApiError(
                ERR_ROLLBACK_BUNDLE,
                f"model {body.version!r} cannot be activated: {exc}",
                status_code=409,
            ) from None
        previous = None
        if current is not None and current.model_version != row.model_version:
            await session.refresh(current)
            previous = _model_read(current)
        after = _model_read(row)
        action = await repo.add_action(
            session,
            action="ops.rollback",
            result="applied",
            actor=user.sub,
            actor_role=user.role.value,
            reason=body.reason,
            diff={
                "target": "model",
                "version": body.version,
                "before": {"active_model": _json(before)},
                "after": {"active_model": _json(after), "previous_model": _json(previous)},
            },
            request_id=request_id,
            scope="model",
            pair_id=None,
        )
    OPS_ACTIONS_TOTAL.labels("ops.rollback", "applied").inc()
    _log.info("ops_rollback_model", version=body.version, actor=user.sub)
    return OpsRollbackRead(
        action_id=action.id,
        target="model",
        version=body.version,
        timeframe=row.timeframe,
        active_model=after,
        previous_model=previous,
    )


async def _rollback_theta(
    *,
    bus: SignalBus,
    session: AsyncSession,
    user: TokenClaims,
    request_id: str,
    body: OpsRollbackCreate,
) -> OpsRollbackRead:
    async with session.begin():
        source = await get_model(session, body.version)
        if source is None:
            raise _not_found(body.version)
        if source.theta1 is None or source.theta2 is None:
            raise ApiError(
                ERR_ROLLBACK_NOTHETA,
                f"model {body.version!r} has no θ1/θ2 in the registry",
                status_code=409,
            )
        current = await active_model(session, source.timeframe)
        if current is None:
            raise ApiError(
                ERR_ROLLBACK_NOACTIVE,
                f"no active model for timeframe {source.timeframe}; a θ override needs one",
                status_code=409,
            )
        src = _model_read(source)
        active = _model_read(current)
    assert src.theta1 is not None
    assert src.theta2 is not None
    key = bus.names.ops_theta
    common = {
        "user": user,
        "request_id": request_id,
        "action": "ops.rollback",
        "scope": "theta",
        "pair_id": None,
        "reason": body.reason,
    }
    try:
        try:
            old = (await repo.get_theta_overrides(bus.client, key)).get(source.timeframe)
        except ValueError:
            old = None
        new = await repo.set_theta_override(
            bus.client,
            key,
            timeframe=src.timeframe,
            theta1=src.theta1,
            theta2=src.theta2,
            source_model_version=src.model_version,
            applies_to_model_version=active.model_version,
            set_at=datetime.now(UTC),
            set_by=user.sub,
        )
    except _BUS_ERRORS as exc:
        OPS_ACTIONS_TOTAL.labels("ops.rollback", "failed").inc()
        failure = _bus_unavailable(exc)
        await _audit_best_effort(
            session,
            result="failed",
            diff={"target": "theta", "version": body.version, "error_id": failure.error_id},
            **common,
        )
        raise failure from None
    active_versions = {src.timeframe: active.model_version}
    override = _override_read(src.timeframe, new, active_versions)
    try:
        previous = _override_read(src.timeframe, old, active_versions) if old else None
    except (KeyError, ValidationError):
        previous = None
    action_id, _ = await _audit_after_change(
        session,
        after=_json(override),
        result="applied",
        diff={
            "target": "theta",
            "version": body.version,
            "before": {"theta_override": old, "active_model_theta": [active.theta1, active.theta2]},
            "after": {"theta_override": new},
        },
        **common,
    )
    OPS_ACTIONS_TOTAL.labels("ops.rollback", "applied").inc()
    _log.info("ops_rollback_theta", version=body.version, actor=user.sub)
    return OpsRollbackRead(
        action_id=action_id,
        target="theta",
        version=body.version,
        timeframe=src.timeframe,
        active_model=active,
        theta_override=override,
        previous_theta_override=previous,
    )


# ------------------------------------------------------------------------------------- reads


async def get_state(
    *,
    bus: SignalBus,
    session: AsyncSession,
    config: OpsConfig,
    actions_limit: int,
    now: datetime | None = None,
) -> OpsStateRead:
    """Flags, live pair metrics, active models, θ overrides, policy and recent ops actions.

    Raises
    ------
    ApiError
        503 ``OPS_BUS_UNAVAIL`` / ``OPS_BUS_INVALID`` (flags unreadable), 503
        ``OPS_DB_UNAVAIL``.
    """
    clock = now if now is not None else datetime.now(UTC)
    s = config.settings
    try:
        flags = await bus.get_flags()
        raw_metrics = await bus.client.hgetall(bus.names.pair_metrics)
        raw_theta = await bus.client.hgetall(bus.names.ops_theta)
    except _BUS_ERRORS as exc:
        raise _bus_unavailable(exc) from None
    except ValueError as exc:
        raise ApiError(
            ERR_BUS_INVALID,
            "The ops flags hash holds invalid data (consumers treat this as a hard halt)",
            status_code=503,
            details={"error": str(exc)},
        ) from None
    try:
        models = await repo.list_active_models(session)
        actions, _ = await repo.list_actions(session, limit=actions_limit, offset=0)
    except _DB_ERRORS as exc:
        raise ApiError(
            ERR_DB_UNAVAIL,
            "PostgreSQL is unavailable",
            status_code=503,
            details={"error": type(exc).__name__},
        ) from None
    active = {m.timeframe: m.model_version for m in models}
    metrics = []
    for key in sorted(raw_metrics):
        pid = key.decode() if isinstance(key, bytes) else str(key)
        parsed = parse_pair_metrics(
            pid,
            raw_metrics[key],
            now=clock,
            max_age_s=s.metrics_max_age_s,
            max_skew_s=s.metrics_max_skew_s,
        )
        if parsed is not None:
            metrics.append(parsed)
    overrides = []
    for field in sorted(raw_theta):
        tf = field.decode() if isinstance(field, bytes) else str(field)
        try:
            overrides.append(_override_read(tf, json.loads(raw_theta[field]), active))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            _log.warning("ops_theta_override_unreadable", timeframe=tf, error=str(exc))
    return OpsStateRead(
        flags=_flags_read(flags),
        universe=list(config.pair_ids),
        pair_metrics=metrics,
        active_models=[_model_read(m) for m in models],
        theta_overrides=overrides,
        policy=OpsPolicyRead(
            stability_days=config.resume.stability_days,
            corr_threshold=config.resume.corr_threshold,
            canary_ratio=config.resume.canary_ratio,
            dd_warn=config.resume.dd_warn,
            metrics_max_age_s=s.metrics_max_age_s,
            halt_policy=config.halt_policy,
            rollback_policy=config.rollback_policy,
        ),
        recent_actions=[_action_read(a) for a in actions],
    )


async def list_ops_actions(
    *, session: AsyncSession, limit: int, offset: int
) -> Page[OpsActionRead]:
    """One page of the ops audit trail (newest first).

    Raises
    ------
    ApiError
        503 ``OPS_DB_UNAVAIL``.
    """
    try:
        rows, total = await repo.list_actions(session, limit=limit, offset=offset)
    except _DB_ERRORS as exc:
        raise ApiError(
            ERR_DB_UNAVAIL,
            "PostgreSQL is unavailable",
            status_code=503,
            details={"error": type(exc).__name__},
        ) from None
    return Page[OpsActionRead](
        items=[_action_read(r) for r in rows], total=total, limit=limit, offset=offset
    )

"""Data access of ops_api: every SQL statement, plus the θ-override Redis hash.

PostgreSQL (spec 004 §運用Runbook 監査/記録):

- ``audit.analytics_actions`` — one row per ``/ops/*`` call that changed (or tried to change)
  state: ``action`` ``ops.halt|ops.flatten|ops.resume|ops.rollback``, ``result``
  ``applied|refused|failed``, ``diff = {"before": ..., "after": ...}``;
- ``incident_logs`` — one row per halt/flatten (time, operator, grounds, attachments);
- ``model_registry`` — read here; activation goes through :mod:`pairdesk.common.registry`.

The caller owns the transaction (``async with session.begin():``) so the audit row and the
incident row of one call commit together or not at all.

Redis: hash ``core:ops:theta`` (behind the bus namespace), field = timeframe, value = JSON
``{"theta1", "theta2", "source_model_version", "applies_to_model_version", "set_at",
"set_by"}``: the θ override written by ``POST /ops/rollback {target: theta}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import redis.asyncio as aioredis
from pairdesk.common.models import AnalyticsAction, IncidentLog, ModelRegistry, ModelStatus
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "OPS_ACTION_PREFIX",
    "add_action",
    "add_incident",
    "get_theta_overrides",
    "list_actions",
    "list_active_models",
    "set_theta_override",
]

#: Every ops action name starts with this (``audit.analytics_actions`` is shared with analytics).
OPS_ACTION_PREFIX: Final = "ops."
#: Redis hash of θ overrides (timeframe → JSON), read by core_inference.
#: Width of ``audit.analytics_actions.request_id``.
_REQUEST_ID_WIDTH: Final = 64


async def add_action(
    session: AsyncSession,
    *,
    action: str,
    result: str,
    actor: str,
    actor_role: str,
    reason: str,
    diff: dict[str, Any],
    request_id: str,
    scope: str | None,
    pair_id: str | None,
) -> AnalyticsAction:
    """Insert one ``audit.analytics_actions`` row and flush it (its ``id`` is then set).

    A request id longer than the column (64 chars) is stored truncated; the full id is kept
    in ``diff["request_id"]``.
    """
    if len(request_id) > _REQUEST_ID_WIDTH:
        diff = {**diff, "request_id": request_id}
    row = AnalyticsAction(
        action=action,
        result=result,
        actor=actor,
        actor_role=actor_role,
        reason=reason,
        diff=diff,
        request_id=request_id[:_REQUEST_ID_WIDTH],
        scope=scope,
        pair_id=pair_id,
    )
    session.add(row)
    await session.flush()
    return row


async def add_incident(
    session: AsyncSession,
    *,
    recorded_by: str,
    level: str,
    scope: str,
    pair_id: str | None,
    reason: str,
    details: dict[str, Any],
    attachments: Sequence[str],
    error_id: str | None = None,
) -> IncidentLog:
    """Insert one ``incident_logs`` row (spec 手順 4) and flush it."""
    row = IncidentLog(
        recorded_by=recorded_by,
        level=level,
        scope=scope,
        pair_id=pair_id,
        reason=reason,
        details=details,
        attachments=list(attachments),
        error_id=error_id,
    )
    session.add(row)
    await session.flush()
    return row


async def list_actions(
    session: AsyncSession, *, limit: int, offset: int
) -> tuple[list[AnalyticsAction], int]:
    """Ops actions newest first (``limit`` rows from ``offset``) and their total count."""
    where = AnalyticsAction.action.startswith(OPS_ACTION_PREFIX)
    total = int(
        await session.scalar(select(func.count()).select_from(AnalyticsAction).where(where)) or 0
    )
    rows = await session.scalars(
        select(AnalyticsAction)
        .where(where)
        .order_by(AnalyticsAction.occurred_at.desc(), AnalyticsAction.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all()), total


async def list_active_models(session: AsyncSession) -> list[ModelRegistry]:
    """The active model of every timeframe (at most one each), ordered by timeframe."""
    rows = await session.scalars(
        select(ModelRegistry)
        .where(ModelRegistry.status == ModelStatus.ACTIVE)
        .order_by(ModelRegistry.timeframe)
    )
    return list(rows.all())


async def get_theta_overrides(client: aioredis.Redis, key: str) -> dict[str, dict[str, Any]]:
    """Return ``{timeframe: override}`` from the θ-override hash (empty if none).

    Raises
    ------
    redis.exceptions.RedisError
        Redis unreachable.
    ValueError
        A field does not hold a JSON object.
    """
    raw = await client.hgetall(key)
    out: dict[str, dict[str, Any]] = {}
    for field, body in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        value = json.loads(body)
        if not isinstance(value, dict):
            raise ValueError(f"{key}[{name}] is not a JSON object")
        out[name] = value
    return out


async def set_theta_override(
    client: aioredis.Redis,
    key: str,
    *,
    timeframe: str,
    theta1: float,
    theta2: float,
    source_model_version: str,
    applies_to_model_version: str,
    set_at: datetime,
    set_by: str,
) -> dict[str, Any]:
    """Write the θ override of ``timeframe`` (replacing any previous one); return it.

    Raises
    ------
    redis.exceptions.RedisError
        Redis unreachable.
    """
    value = {
        "theta1": theta1,
        "theta2": theta2,
        "source_model_version": source_model_version,
        "applies_to_model_version": applies_to_model_version,
        "set_at": set_at.isoformat(),
        "set_by": set_by,
    }
    await client.hset(key, timeframe, json.dumps(value, separators=(",", ":")))
    return value

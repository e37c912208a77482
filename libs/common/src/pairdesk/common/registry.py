"""Model registry: register a ``bt train`` output folder, look models up, activate one.

Spec 004 ``model_registry`` (DESIGN.md §1: model registry → core_inference). A model bundle is
the folder ``bt train --out models/<version>`` writes (``ai1/``, ``ai2/``,
``feature_schema.json``, ``params.yaml``, ``metrics.json``); its ``model_version`` is
``params.yaml: model_version``. The registry row points at the folder (``artifact_uri``) and
records the SHA-256 of its artefacts, so a bundle changed after registration is detected
(:func:`verify_bundle`) instead of silently served.

At most one model per timeframe is ``active`` (partial unique index); :func:`activate_model`
retires the previous one in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pairdesk.common.models import ModelRegistry, ModelStatus
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "BUNDLE_FILES",
    "BundleError",
    "activate_model",
    "active_model",
    "bundle_sha256",
    "get_model",
    "list_models",
    "read_bundle",
    "register_model",
    "verify_bundle",
]

#: Files (relative to the bundle folder) whose bytes define a model bundle.
BUNDLE_FILES: tuple[str, ...] = ("params.yaml", "feature_schema.json", "metrics.json")


class BundleError(ValueError):
    """A model folder is missing artefacts, unreadable, or changed since registration."""


def _bundle_paths(model_dir: Path) -> list[Path]:
    paths = [model_dir / name for name in BUNDLE_FILES]
    for ai in ("ai1", "ai2"):
        sub = model_dir / ai
        if not sub.is_dir():
            raise BundleError(f"model folder {model_dir} has no {ai}/ (run `bt train` first)")
        paths.extend(sorted(p for p in sub.rglob("*") if p.is_file()))
    for p in paths:
        if not p.is_file():
            raise BundleError(f"model folder {model_dir} has no {p.relative_to(model_dir)}")
    return paths


def bundle_sha256(model_dir: Path) -> str:
    """SHA-256 over the bundle's artefact files (relative path + bytes, sorted order).

    Raises
    ------
    BundleError
        If an artefact is missing.
    """
    digest = hashlib.sha256()
    for path in _bundle_paths(model_dir):
        digest.update(str(path.relative_to(model_dir)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_bundle(model_dir: Path) -> dict[str, Any]:
    """Return ``params.yaml`` and ``metrics.json`` of a bundle as ``{"params", "metrics"}``.

    Raises
    ------
    BundleError
        If the folder is not a complete bundle or a file cannot be parsed.
    """
    _bundle_paths(model_dir)
    try:
        params = yaml.safe_load((model_dir / "params.yaml").read_text())
        metrics = json.loads((model_dir / "metrics.json").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise BundleError(f"model folder {model_dir}: unreadable artefact ({exc})") from None
    if not isinstance(params, dict) or "model_version" not in params:
        raise BundleError(f"model folder {model_dir}: params.yaml has no model_version")
    if not isinstance(metrics, dict):
        raise BundleError(f"model folder {model_dir}: metrics.json is not a JSON object")
    return {"params": params, "metrics": metrics}


def _period_bounds(period: str | None) -> tuple[datetime | None, datetime | None]:
    """``created_from.period`` ("YYYY-MM-DD:YYYY-MM-DD", end inclusive) → [start, end) in UTC."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}):(\d{4}-\d{2}-\d{2})", str(period or ""))
    if match is None:
        return None, None
    start = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    end = datetime.fromisoformat(match.group(2)).replace(tzinfo=UTC) + timedelta(days=1)
    return start, end


async def register_model(
    session: AsyncSession, model_dir: Path, *, registered_by: str | None = None
) -> ModelRegistry:
    """Insert (or refresh, if still a candidate) the registry row of ``model_dir``.

    Parameters
    ----------
    session : AsyncSession
        Caller owns the transaction.
    model_dir : Path
        A ``bt train`` output folder.
    registered_by : str, optional
        Recorded in ``metrics["registered_by"]``.

    Returns
    -------
    ModelRegistry
        The row, status ``candidate`` for a new model.

    Raises
    ------
    BundleError
        Incomplete/unreadable bundle, or a model of the same version whose artefacts differ
        and which is no longer a candidate (an active model is never overwritten).
    """
    model_dir = model_dir.resolve()
    bundle = read_bundle(model_dir)
    params = bundle["params"]
    version = str(params["model_version"])
    sha = bundle_sha256(model_dir)
    created = params.get("created_from", {}) or {}
    start, end = _period_bounds(created.get("period"))
    theta = params.get("theta", {}) or {}
    values: dict[str, Any] = {
        "timeframe": str(created.get("timeframe", "1h")),
        "artifact_uri": str(model_dir),
        "artifact_sha256": sha,
        "feature_schema_hash": params.get("feature_schema_hash"),
        "params_hash": params.get("params_hash"),
        "data_hash": params.get("data_hash"),
        "code_hash": params.get("code_hash"),
        "seed": params.get("seed"),
        "theta1": Decimal(str(theta["theta1"])) if "theta1" in theta else None,
        "theta2": Decimal(str(theta["theta2"])) if "theta2" in theta else None,
        "train_start": start,
        "train_end": end,
        "metrics": {
            "summary": bundle["metrics"].get("summary", {}),
            "walk_forward": {
                k: v for k, v in bundle["metrics"].get("walk_forward", {}).items() if k != "folds"
            },
            "registered_by": registered_by,
        },
    }
    row = await session.get(ModelRegistry, version)
    if row is None:
        row = ModelRegistry(model_version=version, status=ModelStatus.CANDIDATE, **values)
        session.add(row)
    elif row.artifact_sha256 != sha and row.status != ModelStatus.CANDIDATE:
        raise BundleError(
            f"model {version} is registered as {row.status.value} with different artefacts; "
            "train under a new version instead of overwriting it"
        )
    else:
        for key, value in values.items():
            setattr(row, key, value)
    await session.flush()
    return row


async def get_model(session: AsyncSession, version: str) -> ModelRegistry | None:
    """Return the registry row of ``version`` or ``None``."""
    return await session.get(ModelRegistry, version)


async def list_models(session: AsyncSession, timeframe: str | None = None) -> list[ModelRegistry]:
    """Return registry rows, newest first, optionally of one timeframe."""
    stmt = select(ModelRegistry).order_by(
        ModelRegistry.created_at.desc(), ModelRegistry.model_version.desc()
    )
    if timeframe is not None:
        stmt = stmt.where(ModelRegistry.timeframe == timeframe)
    return list((await session.scalars(stmt)).all())


async def active_model(session: AsyncSession, timeframe: str) -> ModelRegistry | None:
    """Return the active model of ``timeframe`` or ``None``."""
    stmt = select(ModelRegistry).where(
        ModelRegistry.timeframe == timeframe, ModelRegistry.status == ModelStatus.ACTIVE
    )
    return (await session.scalars(stmt)).one_or_none()


async def activate_model(
    session: AsyncSession,
    version: str,
    *,
    activated_by: str,
    previous_status: ModelStatus = ModelStatus.RETIRED,
) -> tuple[ModelRegistry, ModelRegistry | None]:
    """Make ``version`` the active model of its timeframe.

    The previously active model of the same timeframe gets ``previous_status`` (``retired``
    for a normal activation, ``rolled_back`` when ops rolls back away from it).

    Returns
    -------
    (ModelRegistry, ModelRegistry or None)
        The activated row and the row it replaced.

    Raises
    ------
    LookupError
        Unknown version.
    BundleError
        The bundle's files changed since registration or are gone.
    """
    row = await session.get(ModelRegistry, version, with_for_update=True)
    if row is None:
        raise LookupError(f"model {version} is not registered")
    verify_bundle(row)
    previous = await active_model(session, row.timeframe)
    if previous is not None and previous.model_version == version:
        return row, None
    if previous is not None:
        await session.execute(
            update(ModelRegistry)
            .where(ModelRegistry.model_version == previous.model_version)
            .values(status=previous_status)
        )
        await session.flush()
        await session.refresh(previous)
    row.status = ModelStatus.ACTIVE
    row.activated_at = datetime.now(UTC)
    row.activated_by = activated_by
    await session.flush()
    return row, previous


def verify_bundle(row: ModelRegistry) -> Path:
    """Return the bundle folder of ``row`` after checking its SHA-256 still matches.

    Raises
    ------
    BundleError
        The folder is gone, incomplete, or its artefacts changed since registration.
    """
    model_dir = Path(row.artifact_uri)
    sha = bundle_sha256(model_dir)
    if row.artifact_sha256 and sha != row.artifact_sha256:
        raise BundleError(
            f"model {row.model_version}: artefacts in {model_dir} changed since registration"
        )
    return model_dir

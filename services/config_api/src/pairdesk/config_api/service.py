"""config_api logic: token issue, config listing/reading, validation with audit (spec 004
§設定変更ワークフロー仕様 v1 API / 静的検証 / 監査, DESIGN.md §6).

Validation outcomes are written to ``audit.config_changes``: a passing proposal as state
``draft`` (validated, no PR yet: the first state of the spec's machine
``draft → pr_created → approved → merged → applied``), a failing one as ``rejected``. The row's
``diff`` holds ``{base_checksum, checksum, changes, problems, warnings}``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
import yaml
from pairdesk.common.auth import (
    AuthError,
    TokenClaims,
    create_token,
    hash_password,
    verify_password,
)
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.logs import get_logger
from pairdesk.common.models import ConfigChange, ConfigChangeState
from pairdesk.common.settings import Settings
from pairdesk.config_api import repository as repo
from pairdesk.config_api.schemas import (
    CONFIG_NAME_PATTERN,
    ConfigChangeBrief,
    ConfigChangePage,
    ConfigChangeRead,
    ConfigDetailRead,
    ConfigFileRead,
    ConfigValidateCreate,
    ConfigValidateRead,
    DiffEntryRead,
    TokenRead,
)
from pairdesk.config_api.validation import jsonable, validate_proposal
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "DOMAIN",
    "audit_page",
    "config_path",
    "get_config",
    "issue_token",
    "list_configs",
    "validate_config",
]

DOMAIN: Final = "UI"
_NAME: Final = re.compile(CONFIG_NAME_PATTERN)
_INVALID_LOGIN: Final = "Invalid username or password"
_log = get_logger("pairdesk.config_api")


# ------------------------------------------------------------------------------------- tokens
@cache
def _dummy_hash() -> str:
    """An argon2 hash no password matches, verified for unknown users (constant-ish time)."""
    return hash_password(secrets.token_urlsafe(32))


async def issue_token(
    *, session: AsyncSession, settings: Settings, username: str, password: str
) -> TokenRead:
    """Check ``username`` / ``password`` against ``users`` and issue a JWT.

    The password is always verified against an argon2 hash (a dummy one for unknown users), so
    unknown, inactive and wrong-password logins take about the same time and get the same
    answer.

    Returns
    -------
    TokenRead
        ``access_token`` (claims ``sub=username``, ``role``), ``expires_in`` seconds, role.

    Raises
    ------
    AuthError
        401 ``UI_AUTH_INVALID`` for an unknown user, an inactive user or a wrong password.
    ApiError
        503 ``UI_AUTH_NOISSUE`` when this process holds no signing key (RS256 public key only).
    """
    user = await repo.get_user(session, username)
    hashed = user.password_hash if user else None
    # argon2 costs tens of milliseconds of CPU: keep it off the event loop
    matched = await anyio.to_thread.run_sync(
        lambda: verify_password(password, hashed or _dummy_hash())
    )
    if user is None or not matched or not user.is_active:
        _log.warning("token_refused", username=username)
        raise AuthError("INVALID", _INVALID_LOGIN, domain=DOMAIN)
    try:
        token = create_token(user.username, user.role, settings)
    except ValueError:
        raise ApiError(
            error_id(DOMAIN, "AUTH", "NOISSUE"),
            "This service cannot issue tokens (no signing key configured)",
            status_code=503,
        ) from None
    _log.info("token_issued", username=user.username, role=user.role.value)
    return TokenRead(
        access_token=token, expires_in=settings.pairdesk_jwt_ttl_seconds, role=user.role
    )


# ------------------------------------------------------------------------------------ configs
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_path(config_dir: Path, name: str) -> Path:
    """The YAML file of config ``name`` inside ``config_dir``.

    Raises
    ------
    ApiError
        404 ``UI_CONFIG_NOTFOUND`` for a name outside ``[a-z0-9_]{1,64}``, a missing file, or a
        file that resolves outside ``config_dir`` (symlink).
    """
    path = config_dir / f"{name}.yaml"
    if not _NAME.fullmatch(name) or not path.is_file() or path.resolve().parent != config_dir:
        raise ApiError(
            error_id(DOMAIN, "CONFIG", "NOTFOUND"), f"Config {name!r} not found", status_code=404
        )
    return path


def _brief(change: ConfigChange | None) -> ConfigChangeBrief | None:
    if change is None:
        return None
    return ConfigChangeBrief(
        change_id=change.change_id,
        state=str(change.state),
        actor=change.actor,
        occurred_at=change.occurred_at,
    )


async def list_configs(*, session: AsyncSession, config_dir: Path) -> list[ConfigFileRead]:
    """Every ``<name>.yaml`` of ``config_dir`` (names ``[a-z0-9_]+``) with checksum and last change."""
    latest = await repo.latest_changes(session)
    out: list[ConfigFileRead] = []
    if not config_dir.is_dir():
        return out
    for path in sorted(config_dir.glob("*.yaml")):
        if not _NAME.fullmatch(path.stem) or not path.is_file():
            continue
        data = path.read_bytes()
        out.append(
            ConfigFileRead(
                name=path.stem,
                file=path.name,
                sha256=_sha256(data),
                size=len(data),
                modified_at=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
                last_change=_brief(latest.get(path.stem)),
            )
        )
    return out


def _load(path: Path) -> tuple[bytes, Any]:
    data = path.read_bytes()
    try:
        return data, yaml.safe_load(data)
    except yaml.YAMLError:
        _log.error("config_unparsable", file=str(path))
        raise ApiError(
            error_id(DOMAIN, "CONFIG", "CORRUPT"),
            f"The current {path.name} is not valid YAML",
            status_code=500,
        ) from None


def get_config(*, config_dir: Path, name: str) -> ConfigDetailRead:
    """Parsed content, text and checksum of config ``name``.

    Raises
    ------
    ApiError
        404 ``UI_CONFIG_NOTFOUND``; 500 ``UI_CONFIG_CORRUPT`` if the file is not YAML.
    """
    path = config_path(config_dir, name)
    data, parsed = _load(path)
    return ConfigDetailRead(
        name=name,
        file=path.name,
        sha256=_sha256(data),
        size=len(data),
        content=jsonable(parsed),
        text=data.decode("utf-8", errors="replace"),
    )


async def validate_config(
    *,
    session: AsyncSession,
    config_dir: Path,
    body: ConfigValidateCreate,
    user: TokenClaims,
    request_id: str,
) -> ConfigValidateRead:
    """Validate a proposed config text, diff it against the current file and audit the outcome.

    Returns
    -------
    ConfigValidateRead
        For a valid proposal (audited as ``draft``).

    Raises
    ------
    ApiError
        404 ``UI_CONFIG_NOTFOUND`` (nothing audited); 422 ``UI_CONFIG_INVALID`` with
        ``details = {change_id, problems, warnings}`` (audited as ``rejected``).
    """
    path = config_path(config_dir, body.name)
    current_bytes, current = _load(path)
    result = validate_proposal(body.name, current, body.content)
    base_checksum = _sha256(current_bytes)
    checksum = _sha256(body.content.encode("utf-8"))
    state = ConfigChangeState.DRAFT if result.valid else ConfigChangeState.REJECTED
    change_id = uuid.uuid4().hex
    changes = [{"path": d.path, "op": d.op, "old": d.old, "new": d.new} for d in result.diff]
    async with session.begin():
        await repo.add_change(
            session,
            ConfigChange(
                change_id=change_id,
                config_name=body.name,
                state=state,
                actor=user.sub,
                actor_role=user.role.value,
                reason=body.reason or "validate",
                diff={
                    "base_checksum": base_checksum,
                    "checksum": checksum,
                    "changes": changes,
                    "problems": result.problems,
                    "warnings": result.warnings,
                },
                request_id=request_id,
                checksum=checksum,
                risk_note=result.risk_note,
            ),
        )
    _log.info(
        "config_validated",
        config_name=body.name,
        change_id=change_id,
        state=state.value,
        problems=len(result.problems),
    )
    if not result.valid:
        raise ApiError(
            error_id(DOMAIN, "CONFIG", "INVALID"),
            f"{body.name}: {len(result.problems)} problem(s): " + "; ".join(result.problems[:5]),
            status_code=422,
            details={
                "change_id": change_id,
                "problems": result.problems,
                "warnings": result.warnings,
            },
        )
    return ConfigValidateRead(
        change_id=change_id,
        name=body.name,
        state=state.value,
        base_checksum=base_checksum,
        checksum=checksum,
        diff=[DiffEntryRead(**c) for c in changes],
        warnings=result.warnings,
        risk_note=result.risk_note,
        approvals_required=result.approvals_required,
    )


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


async def audit_page(
    *,
    session: AsyncSession,
    config_name: str | None,
    state: ConfigChangeState | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> ConfigChangePage:
    """One page of ``audit.config_changes``, newest first (``[start, end)`` on occurred_at).

    Raises
    ------
    ApiError
        422 ``UI_REQ_RANGE`` when ``start > end``.
    """
    lo, hi = _utc(start), _utc(end)
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(
            error_id(DOMAIN, "REQ", "RANGE"), "from must not be after to", status_code=422
        )
    rows, total = await repo.page_changes(
        session,
        config_name=config_name,
        state=state,
        start=lo,
        end=hi,
        limit=limit,
        offset=offset,
    )
    items = [
        ConfigChangeRead(
            id=r.id,
            change_id=r.change_id,
            config_name=r.config_name,
            state=str(r.state),
            actor=r.actor,
            actor_role=r.actor_role,
            reason=r.reason,
            occurred_at=r.occurred_at,
            version=r.version,
            from_version=r.from_version,
            checksum=r.checksum,
            merge_sha=r.merge_sha,
            env=r.env,
            risk_note=r.risk_note,
            approvers=list(r.approvers or []),
            diff=dict(r.diff or {}),
            request_id=r.request_id,
        )
        for r in rows
    ]
    return ConfigChangePage(items=items, total=total, limit=limit, offset=offset)

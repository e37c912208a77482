"""JWT authentication, role-based permissions and password hashing (DESIGN.md §6).

Roles (spec 004): ``viewer < editor < approver < admin``. Permissions per role:

========  =====================================================================================
viewer    ``read``
editor    + launch backtests, create config PRs, halt, flatten, trigger alerts, generate reports
approver  + approve / merge / apply / roll back configs, resume, ops rollback, activate models
admin     everything (+ ``users:manage``)
========  =====================================================================================

Tokens: HS256 with ``PAIRDESK_JWT_SECRET`` or RS256 with the configured RSA keys; claims
``sub, role, exp, iat, nbf, jti, iss, aud``. :func:`decode_token` accepts only the configured
algorithm (``alg: none``, HS/RS confusion and anything else are refused), checks signature,
issuer, audience, expiry and not-before, and requires every claim.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import ExpiredSignatureError, JWTError, jwt
from pairdesk.common.api import error_domain
from pairdesk.common.errors import ApiError, error_id
from pairdesk.common.settings import Settings, get_settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ROLE_PERMISSIONS",
    "AuthError",
    "CurrentUser",
    "Permission",
    "RequireAdmin",
    "RequireApprover",
    "RequireEditor",
    "Role",
    "SettingsDep",
    "TokenClaims",
    "create_token",
    "current_user",
    "decode_token",
    "has_permission",
    "hash_password",
    "password_needs_rehash",
    "require",
    "require_role",
    "settings_dependency",
    "verify_password",
]

_ROLE_RANK: Final[dict[str, int]] = {"viewer": 0, "editor": 1, "approver": 2, "admin": 3}


def _rank_of(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    if value not in _ROLE_RANK:
        raise TypeError(f"cannot order a Role against {value!r}, which is not a role name")
    return _ROLE_RANK[value]


class Role(StrEnum):
    """User role; compares by privilege (``Role.VIEWER < Role.ADMIN``), not alphabetically.

    Comparison with a plain role name (``Role.EDITOR >= "viewer"``) uses the same ranks; any
    other string raises ``TypeError`` (never a silent alphabetical comparison).
    """

    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Privilege rank, 0 (viewer) .. 3 (admin)."""
        return _ROLE_RANK[self.value]

    def __lt__(self, other: str) -> bool:
        rank = _rank_of(other)
        if rank is None:
            return NotImplemented
        return self.rank < rank

    def __le__(self, other: str) -> bool:
        rank = _rank_of(other)
        if rank is None:
            return NotImplemented
        return self.rank <= rank

    def __gt__(self, other: str) -> bool:
        rank = _rank_of(other)
        if rank is None:
            return NotImplemented
        return self.rank > rank

    def __ge__(self, other: str) -> bool:
        rank = _rank_of(other)
        if rank is None:
            return NotImplemented
        return self.rank >= rank


class Permission(StrEnum):
    """Actions guarded by :func:`require` (DESIGN.md §5/§6 endpoints)."""

    READ = "read"
    BACKTEST_LAUNCH = "backtest:launch"
    CONFIG_PR_CREATE = "config:pr_create"
    OPS_HALT = "ops:halt"
    OPS_FLATTEN = "ops:flatten"
    ALERT_TRIGGER = "alert:trigger"
    REPORT_GENERATE = "report:generate"
    CONFIG_APPROVE = "config:approve"
    CONFIG_MERGE = "config:merge"
    CONFIG_APPLY = "config:apply"
    CONFIG_ROLLBACK = "config:rollback"
    OPS_RESUME = "ops:resume"
    OPS_ROLLBACK = "ops:rollback"
    MODEL_ACTIVATE = "model:activate"
    USERS_MANAGE = "users:manage"


_VIEWER: Final = frozenset({Permission.READ})
_EDITOR: Final = _VIEWER | {
    Permission.BACKTEST_LAUNCH,
    Permission.CONFIG_PR_CREATE,
    Permission.OPS_HALT,
    Permission.OPS_FLATTEN,
    Permission.ALERT_TRIGGER,
    Permission.REPORT_GENERATE,
}
_APPROVER: Final = _EDITOR | {
    Permission.CONFIG_APPROVE,
    Permission.CONFIG_MERGE,
    Permission.CONFIG_APPLY,
    Permission.CONFIG_ROLLBACK,
    Permission.OPS_RESUME,
    Permission.OPS_ROLLBACK,
    Permission.MODEL_ACTIVATE,
}

#: Role -> granted permissions (read-only view).
ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        Role.VIEWER: _VIEWER,
        Role.EDITOR: _EDITOR,
        Role.APPROVER: _APPROVER,
        Role.ADMIN: frozenset(Permission),
    }
)


def has_permission(role: Role, permission: Permission) -> bool:
    """Return whether ``role`` is granted ``permission`` by :data:`ROLE_PERMISSIONS`."""
    return permission in ROLE_PERMISSIONS[role]


class AuthError(ApiError):
    """Authentication / authorisation failure rendered as a 401 or 403 envelope.

    Parameters
    ----------
    code : str
        ``INVALID`` (bad token), ``EXPIRED``, ``MISSING`` (no bearer token) or ``FORBIDDEN``.
    message : str
        Caller-safe reason.
    domain : str, default "UI"
        Error domain; the FastAPI dependencies use the app's domain.
    status_code : int, default 401
        403 for ``FORBIDDEN``.

    Attributes
    ----------
    code : str
        As given; ``error_id`` is ``f"{domain}_AUTH_{code}"``.
    """

    def __init__(
        self, code: str, message: str, *, domain: str = "UI", status_code: int = 401
    ) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
        super().__init__(
            error_id(domain, "AUTH", code), message, status_code=status_code, headers=headers
        )
        self.code = code

    def with_domain(self, domain: str) -> AuthError:
        """Return the same error labelled with another domain."""
        return AuthError(self.code, self.message, domain=domain, status_code=self.status_code)


class TokenClaims(BaseModel):
    """Verified JWT claims. Times are UTC ``datetime``; ``aud`` is the configured audience."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str = Field(min_length=1)
    role: Role
    exp: datetime
    iat: datetime
    nbf: datetime | None = None
    jti: str = Field(min_length=1)
    iss: str
    aud: str | list[str]

    @property
    def permissions(self) -> frozenset[Permission]:
        """Permissions granted to this token's role."""
        return ROLE_PERMISSIONS[self.role]


_REQUIRED_CLAIMS: Final = ("sub", "role", "exp", "iat", "jti", "iss", "aud")


def create_token(
    sub: str,
    role: Role | str,
    settings: Settings,
    ttl: int | timedelta | None = None,
    *,
    now: datetime | None = None,
) -> str:
    """Issue a signed JWT.

    Parameters
    ----------
    sub : str
        Subject (user id), non-empty.
    role : Role or str
        One of the four roles.
    settings : Settings
        Supplies algorithm, key, issuer, audience and default TTL.
    ttl : int (seconds) or timedelta, optional
        Lifetime; default ``settings.pairdesk_jwt_ttl_seconds``. Must be positive.
    now : datetime, optional
        Issue time (UTC, timezone-aware); default the current time. For tests.

    Returns
    -------
    str
        Compact JWS with claims ``sub, role, exp, iat, nbf, jti (uuid4), iss, aud``.

    Raises
    ------
    ValueError
        Empty ``sub``, unknown ``role``, non-positive ``ttl``, naive ``now``, or an RS256 setup
        without a private key.
    """
    if not sub:
        raise ValueError("sub must be a non-empty string")
    role = Role(role)
    if ttl is None:
        lifetime = timedelta(seconds=settings.pairdesk_jwt_ttl_seconds)
    else:
        lifetime = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if lifetime <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {lifetime}")
    issued = now if now is not None else datetime.now(UTC)
    if issued.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    iat = int(issued.timestamp())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role.value,
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(lifetime.total_seconds()),
        "jti": str(uuid.uuid4()),
        "iss": settings.pairdesk_jwt_issuer,
        "aud": settings.pairdesk_jwt_audience,
    }
    return jwt.encode(claims, settings.jwt_signing_key(), algorithm=settings.jwt_algorithm)


def decode_token(token: str, settings: Settings, *, domain: str = "UI") -> TokenClaims:
    """Verify ``token`` and return its claims.

    Parameters
    ----------
    token : str
        Compact JWS.
    settings : Settings
        Supplies the one accepted algorithm, the verification key, issuer and audience.
    domain : str, default "UI"
        Domain of the raised error ids.

    Returns
    -------
    TokenClaims

    Raises
    ------
    AuthError
        ``{domain}_AUTH_EXPIRED`` for an expired token; ``{domain}_AUTH_INVALID`` for anything
        else: malformed token, ``alg`` other than the configured one (``none`` included), bad
        signature, wrong ``iss``/``aud``, not yet valid (``nbf``/``iat`` in the future), missing
        claims or an unknown role.
    """
    algorithm = settings.jwt_algorithm
    try:
        header = jwt.get_unverified_header(token)
    except JWTError:
        raise AuthError("INVALID", "Malformed token", domain=domain) from None
    if header.get("alg") != algorithm:
        raise AuthError("INVALID", "Token algorithm not accepted", domain=domain)
    try:
        payload = jwt.decode(
            token,
            settings.jwt_verification_key(),
            algorithms=[algorithm],
            audience=settings.pairdesk_jwt_audience,
            issuer=settings.pairdesk_jwt_issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_aud": True,
                "require_iss": True,
                "require_sub": True,
                "require_jti": True,
            },
        )
    except ExpiredSignatureError:
        raise AuthError("EXPIRED", "Token has expired", domain=domain) from None
    except JWTError:
        raise AuthError("INVALID", "Invalid token", domain=domain) from None
    missing = [c for c in _REQUIRED_CLAIMS if c not in payload]
    if missing:
        raise AuthError("INVALID", f"Token lacks claims: {', '.join(missing)}", domain=domain)
    try:
        claims = TokenClaims.model_validate(payload)
    except ValidationError:
        raise AuthError("INVALID", "Token claims are invalid", domain=domain) from None
    if claims.iat > datetime.now(UTC) + timedelta(seconds=60):
        raise AuthError("INVALID", "Token issued in the future", domain=domain)
    return claims


def settings_dependency(request: Request) -> Settings:
    """Return ``app.state.settings`` when the app factory set it, else :func:`get_settings`."""
    settings = getattr(request.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dependency)]
"""FastAPI dependency alias giving the service settings."""

_bearer = HTTPBearer(auto_error=False, description="JWT issued by config_api POST /auth/token")


async def current_user(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims:
    """FastAPI dependency: verified claims of the ``Authorization: Bearer`` token.

    Raises
    ------
    AuthError
        401 ``{DOMAIN}_AUTH_MISSING`` without a bearer token, otherwise as
        :func:`decode_token`; the response carries ``WWW-Authenticate: Bearer``.
    """
    domain = error_domain(request)
    if credentials is None or not credentials.credentials:
        raise AuthError("MISSING", "Bearer token required", domain=domain)
    return decode_token(credentials.credentials, settings, domain=domain)


CurrentUser = Annotated[TokenClaims, Depends(current_user)]
"""FastAPI dependency alias: the authenticated caller (any role)."""


def require(permission: Permission) -> Callable[[Request, TokenClaims], Awaitable[TokenClaims]]:
    """Return a dependency that admits callers whose role grants ``permission``.

    Use as ``Depends(require(Permission.OPS_HALT))`` or in an ``Annotated`` alias.

    Raises
    ------
    AuthError
        401 as :func:`current_user`; 403 ``{DOMAIN}_AUTH_FORBIDDEN`` when the role lacks it.
    """
    perm = Permission(permission)

    async def dependency(request: Request, user: CurrentUser) -> TokenClaims:
        if not has_permission(user.role, perm):
            raise AuthError(
                "FORBIDDEN",
                f"Role '{user.role.value}' lacks permission '{perm.value}'",
                domain=error_domain(request),
                status_code=403,
            )
        return user

    dependency.__name__ = f"require_{perm.name.lower()}"
    return dependency


def require_role(minimum: Role) -> Callable[[Request, TokenClaims], Awaitable[TokenClaims]]:
    """Return a dependency that admits callers whose role is at least ``minimum``.

    Raises
    ------
    AuthError
        401 as :func:`current_user`; 403 ``{DOMAIN}_AUTH_FORBIDDEN`` below ``minimum``.
    """
    floor = Role(minimum)

    async def dependency(request: Request, user: CurrentUser) -> TokenClaims:
        if user.role < floor:
            raise AuthError(
                "FORBIDDEN",
                f"Role '{user.role.value}' is below the required role '{floor.value}'",
                domain=error_domain(request),
                status_code=403,
            )
        return user

    dependency.__name__ = f"require_role_{floor.value}"
    return dependency


RequireEditor = Annotated[TokenClaims, Depends(require_role(Role.EDITOR))]
RequireApprover = Annotated[TokenClaims, Depends(require_role(Role.APPROVER))]
RequireAdmin = Annotated[TokenClaims, Depends(require_role(Role.ADMIN))]

# argon2id with the library's RFC 9106 "low memory" defaults.
_hasher: Final = PasswordHasher()


def hash_password(password: str) -> str:
    """Return an argon2id PHC string for ``password``.

    Raises
    ------
    ValueError
        If ``password`` is empty.
    """
    if not password:
        raise ValueError("password must be non-empty")
    return _hasher.hash(password)


def verify_password(password: str, hashed: str) -> bool:
    """Return whether ``password`` matches the argon2 hash ``hashed`` (False on a bad hash)."""
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(hashed: str) -> bool:
    """Return whether ``hashed`` was made with weaker parameters than the current ones."""
    return _hasher.check_needs_rehash(hashed)

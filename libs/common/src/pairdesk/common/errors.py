"""Error identifiers and the exception every API error is raised as.

Error ids follow spec 004 §エラーコード / アラートID 命名規約 v1: ``{DOMAIN}_{CATEGORY}_{CODE}``,
upper-case, ``_``-separated, ``DOMAIN`` ∈ ``DATA|CORE|BT|ANALYTICS|OPS|UI``.

The spec says CODE is "3–6 alphanumerics" but its own examples (``DATA_DQ_THRESHOLD``,
``DATA_API_CONNFAIL``, ``OPS_CONFIG_REJECTED``) and DESIGN.md's (``OPS_AUTH_FORBIDDEN``,
``BT_RUN_NOTFOUND``) are longer, so CODE is accepted as 3–10 upper-case alphanumerics and
CATEGORY (``API``, ``WS``, ``DQ``, ``AUTH``...) as 2–10.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

__all__ = [
    "DOMAINS",
    "ERROR_ID_PATTERN",
    "ApiError",
    "Domain",
    "error_id",
    "validate_domain",
    "validate_error_id",
]

Domain = Literal["DATA", "CORE", "BT", "ANALYTICS", "OPS", "UI"]
DOMAINS: Final[tuple[str, ...]] = get_args(Domain)

#: ``{DOMAIN}_{CATEGORY}_{CODE}``; see the module docstring for the length choices.
ERROR_ID_PATTERN: Final[re.Pattern[str]] = re.compile(
    r"^(?P<domain>"
    + "|".join(DOMAINS)
    + r")_(?P<category>[A-Z][A-Z0-9]{1,9})_(?P<code>[A-Z0-9]{3,10})$"
)


def validate_domain(domain: str) -> Domain:
    """Return ``domain`` if it is one of :data:`DOMAINS`.

    Raises
    ------
    ValueError
        If ``domain`` is not an upper-case spec domain.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown error domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    return domain  # type: ignore[return-value]


def validate_error_id(value: str) -> str:
    """Return ``value`` if it is a well-formed ``{DOMAIN}_{CATEGORY}_{CODE}`` id.

    Raises
    ------
    ValueError
        If ``value`` does not match :data:`ERROR_ID_PATTERN`.
    """
    if not ERROR_ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid error id {value!r}: expected {{DOMAIN}}_{{CATEGORY}}_{{CODE}} with DOMAIN "
            f"in {'|'.join(DOMAINS)}, CATEGORY 2-10 and CODE 3-10 upper-case alphanumerics"
        )
    return value


def error_id(domain: str, category: str, code: str) -> str:
    """Build and validate ``f"{domain}_{category}_{code}"``.

    Raises
    ------
    ValueError
        If the result is not a valid error id.
    """
    return validate_error_id(f"{domain}_{category}_{code}")


class ApiError(Exception):
    """An error that the API layer renders as an ``ApiResponse`` error envelope.

    Parameters
    ----------
    error_id : str
        ``{DOMAIN}_{CATEGORY}_{CODE}``, validated.
    message : str
        Human-readable, safe to show to the caller (no secrets, no stack traces).
    status_code : int, default 400
        HTTP status (400..599).
    details : Mapping[str, Any] or None
        Extra JSON-serialisable context returned as ``error.details``.
    headers : Mapping[str, str] or None
        Extra response headers (e.g. ``WWW-Authenticate``).

    Raises
    ------
    ValueError
        If ``error_id`` is malformed or ``status_code`` is not an error status.
    """

    def __init__(
        self,
        error_id: str,
        message: str,
        *,
        status_code: int = 400,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if not 400 <= status_code <= 599:
            raise ValueError(
                f"status_code must be an HTTP error status (400-599), got {status_code}"
            )
        self.error_id = validate_error_id(error_id)
        self.message = message
        self.status_code = status_code
        self.details: dict[str, Any] | None = dict(details) if details is not None else None
        self.headers: dict[str, str] = dict(headers) if headers is not None else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_id!r}, {self.message!r}, status_code={self.status_code})"

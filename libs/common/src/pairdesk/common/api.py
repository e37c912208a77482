"""The ``ApiResponse`` envelope, request ids and error handlers shared by every service.

Spec 004 §OpenAPI 概要 v1 (共通レスポンスラッパ)::

    ApiResponse: {status: "ok"|"error", data: object, error: {id, message} | null, request_id}

Every response of an app prepared with :func:`install_error_handlers` uses this envelope,
errors included: :class:`~pairdesk.common.errors.ApiError`, request validation failures
(422, ``{DOMAIN}_API_VALIDATION``; malformed JSON bodies too), ``HTTPException`` (404 →
``{DOMAIN}_API_NOTFOUND``...) and any unexpected exception (500, ``{DOMAIN}_API_INTERNAL``
with a generic message; the traceback is logged server-side only, never returned).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pairdesk.common.errors import ApiError, Domain, error_id, validate_domain
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "ApiErrorBody",
    "ApiResponse",
    "RequestContextMiddleware",
    "RequestId",
    "error_domain",
    "error_response",
    "get_request_id",
    "install_error_handlers",
    "ok",
]

T = TypeVar("T")

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Accepted incoming request ids: printable token characters only (no spaces, quotes or
# control characters that could break log lines or headers), 1-128 chars.
_SANE_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_INTERNAL_MESSAGE: Final = "Internal server error"

# HTTP status -> CODE part of ``{DOMAIN}_API_{CODE}`` for HTTPException.
_HTTP_CODES: Final[Mapping[int, str]] = {
    400: "BADREQUEST",
    401: "UNAUTH",
    403: "FORBIDDEN",
    404: "NOTFOUND",
    405: "METHOD",
    406: "NOTACCEPT",
    408: "TIMEOUT",
    409: "CONFLICT",
    410: "GONE",
    413: "TOOLARGE",
    415: "MEDIATYPE",
    422: "VALIDATION",
    429: "RATELIMIT",
    500: "INTERNAL",
    501: "NOTIMPL",
    502: "BADGATEWAY",
    503: "UNAVAIL",
    504: "TIMEOUT",
}

_log = structlog.get_logger("pairdesk.api")


class ApiErrorBody(BaseModel):
    """``error`` member of the envelope: id, caller-safe message, optional details."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Error id {DOMAIN}_{CATEGORY}_{CODE} (spec 004 §エラーコード)")
    message: str
    details: dict[str, Any] | None = None


class ApiResponse(BaseModel, Generic[T]):
    """Spec 004 ``ApiResponse`` envelope; ``ApiResponse[Model]`` types ``data``.

    Attributes
    ----------
    status : {"ok", "error"}
    data : T or None
        Payload on success, ``None`` on error.
    error : ApiErrorBody or None
        ``None`` on success.
    request_id : str
        Same value as the ``X-Request-ID`` response header.
    """

    status: Literal["ok", "error"]
    data: T | None
    error: ApiErrorBody | None = None
    request_id: str


def ok(data: T, request_id: str) -> ApiResponse[T]:
    """Wrap ``data`` in a success envelope.

    Parameters
    ----------
    data : T
        Payload (a pydantic model, dict, list...).
    request_id : str
        From :func:`get_request_id` / the :data:`RequestId` dependency.
    """
    return ApiResponse(status="ok", data=data, error=None, request_id=request_id)


def _new_request_id() -> str:
    return str(uuid.uuid4())


def get_request_id(request: Request) -> str:
    """Return the id the middleware assigned to this request (a fresh uuid4 without it)."""
    rid = getattr(request.state, "request_id", None)
    if isinstance(rid, str):
        return rid
    rid = _new_request_id()
    request.state.request_id = rid
    return rid


RequestId = Annotated[str, Depends(get_request_id)]
"""FastAPI dependency alias giving the current request id."""


def error_domain(request: Request) -> Domain:
    """Return the error domain the app was set up with (``"UI"`` if none was installed)."""
    domain = getattr(request.app.state, "error_domain", None)
    return domain if isinstance(domain, str) and domain else "UI"  # type: ignore[return-value]


def _envelope(
    request_id: str, eid: str, message: str, details: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": eid, "message": message}
    if details is not None:
        body["details"] = dict(details)
    return {"status": "error", "data": None, "error": body, "request_id": request_id}


def error_response(
    request_id: str,
    eid: str,
    message: str,
    *,
    status_code: int,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build a JSON error-envelope response (``status="error"``, ``data=null``).

    Parameters
    ----------
    request_id : str
        Echoed in the body and the ``X-Request-ID`` header.
    eid : str
        Error id ``{DOMAIN}_{CATEGORY}_{CODE}``.
    message : str
        Caller-safe message.
    status_code : int
        HTTP status.
    details : Mapping or None
        JSON-serialisable extra context (omitted from the body when ``None``).
    headers : Mapping or None
        Extra response headers.
    """
    out_headers = dict(headers or {})
    out_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(
        _envelope(request_id, eid, message, details),
        status_code=status_code,
        headers=out_headers,
    )


def _validation_details(errors: Sequence[Any]) -> dict[str, Any]:
    """Keep loc/msg/type of each error; drop ``input``/``ctx`` (may echo secrets or objects)."""
    out = []
    for err in errors:
        if isinstance(err, Mapping):
            out.append(
                {
                    "loc": [str(p) if not isinstance(p, int) else p for p in err.get("loc", ())],
                    "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", "")),
                }
            )
    return {"errors": out}


async def _handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        get_request_id(request),
        exc.error_id,
        exc.message,
        status_code=exc.status_code,
        details=exc.details,
        headers=exc.headers,
    )


async def _handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    json_invalid = any(isinstance(e, Mapping) and e.get("type") == "json_invalid" for e in errors)
    message = "Malformed JSON body" if json_invalid else "Request validation failed"
    return error_response(
        get_request_id(request),
        error_id(error_domain(request), "API", "VALIDATION"),
        message,
        status_code=422,
        details=_validation_details(errors),
    )


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, f"HTTP{status}")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "HTTP error"
    detail = exc.detail
    message = detail if isinstance(detail, str) and detail else phrase
    details = None if isinstance(detail, str) or detail is None else {"detail": detail}
    return error_response(
        get_request_id(request),
        error_id(error_domain(request), "API", code),
        message,
        status_code=status,
        details=details,
        headers=exc.headers,
    )


class RequestContextMiddleware:
    """Pure-ASGI middleware: request id, log context and the last-resort 500 envelope.

    * Accepts an incoming ``X-Request-ID`` if it matches ``[A-Za-z0-9][A-Za-z0-9._:-]{0,127}``,
      otherwise assigns a uuid4; stores it on ``request.state.request_id``, binds it into the
      structlog context variables (so every log line of the request carries it) and echoes it in
      the ``X-Request-ID`` response header.
    * Any exception escaping the app before the response started becomes a 500 envelope
      ``{DOMAIN}_API_INTERNAL`` with a generic message; the traceback is logged, not returned.

    Parameters
    ----------
    app : ASGIApp
        Wrapped application.
    domain : str
        Error domain for the 500 id.
    """

    def __init__(self, app: ASGIApp, domain: str) -> None:
        self.app = app
        self.domain = validate_domain(domain)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        rid = incoming if incoming and _SANE_REQUEST_ID.fullmatch(incoming) else _new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                _log.exception(
                    "unhandled_exception",
                    method=scope.get("method"),
                    path=scope.get("path"),
                )
                if started:
                    raise
                response = error_response(
                    rid,
                    error_id(self.domain, "API", "INTERNAL"),
                    _INTERNAL_MESSAGE,
                    status_code=500,
                )
                await response(scope, receive, send_with_id)


def install_error_handlers(app: FastAPI, domain: str) -> None:
    """Make every response of ``app`` use the envelope, and add request ids.

    Stores ``domain`` on ``app.state.error_domain`` (used by the auth dependencies), registers
    handlers for :class:`ApiError`, ``RequestValidationError`` and ``HTTPException``, and adds
    :class:`RequestContextMiddleware`. Call once, in the app factory.

    Parameters
    ----------
    app : FastAPI
        Application to prepare.
    domain : {"DATA", "CORE", "BT", "ANALYTICS", "OPS", "UI"}
        ``DOMAIN`` part of the error ids this service emits.

    Raises
    ------
    ValueError
        If ``domain`` is not a spec domain.
    """
    app.state.error_domain = validate_domain(domain)
    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_middleware(RequestContextMiddleware, domain=domain)

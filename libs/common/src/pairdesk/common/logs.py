"""Structured JSON-lines logging in spec 003's format (§ログフォーマット標準化).

One JSON object per line::

    {"@timestamp": "2026-01-05T10:30:00.000Z", "ts": "2026-01-05T10:30:00.000Z",
     "level": "INFO", "service": "ops_api", "environment": "prod", "logger": "pairdesk.ops_api",
     "message": "halt_applied", "event": "halt_applied",
     "request_id": "…", "run_id": "…", …extra key/values…}

* ``@timestamp``: RFC 3339, UTC, millisecond precision (spec 003 shows a local offset; every
  Pairdesk time is UTC, DESIGN.md §4).
* ``level``: upper case (``DEBUG|INFO|WARNING|ERROR|CRITICAL``).
* ``message``: the structlog event / stdlib message.
* ``ts`` and ``event`` repeat ``@timestamp`` and ``message`` under the names of spec 004
  §監視・運用 (``ts, level, source, timeframe, symbol, run_id, ingest_run_id, event, details``),
  so a line satisfies both documents' field lists.
* ``request_id`` (bound by :class:`pairdesk.common.api.RequestContextMiddleware`), ``run_id`` /
  ``ingest_run_id`` (bind with :func:`bind_context`) and any other context vars are merged in;
  spec 004's pipeline fields (``source, timeframe, symbol, details``) are passed as keyword
  arguments by the caller.
* ``exception``: the formatted traceback when logging with ``exc_info`` (server side only).

Both structlog loggers (:func:`get_logger`) and stdlib ``logging`` (uvicorn, libraries) go
through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, Final

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LOG_FIELDS",
    "bind_context",
    "clear_context",
    "configure_logging",
    "get_logger",
]

#: Fields present on every line (spec 003 §ログフォーマット標準化 + spec 004 ``ts``/``event``).
LOG_FIELDS: Final = (
    "@timestamp",
    "ts",
    "level",
    "service",
    "environment",
    "logger",
    "message",
    "event",
)

_HANDLER_MARK: Final = "_pairdesk_json_handler"


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    now = datetime.now(UTC)
    event_dict["@timestamp"] = (
        now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    )
    return event_dict


def _static_fields(service: str, environment: str) -> Processor:
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        event_dict.setdefault("environment", environment)
        return event_dict

    return add


def _spec_names(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Spec 003 names (``@timestamp``, ``message``) plus spec 004's aliases (``ts``, ``event``).

    Also upper-cases ``level`` and puts the fixed fields first.
    """
    event = event_dict.pop("event", "")
    message = event if isinstance(event, str) else str(event)
    level = event_dict.pop("level", "info")
    level = str(level).upper()
    timestamp = event_dict.pop("@timestamp", None)
    head: dict[str, Any] = {
        "@timestamp": timestamp,
        "ts": timestamp,
        "level": "WARNING" if level == "WARN" else level,
        "service": event_dict.pop("service", None),
        "environment": event_dict.pop("environment", None),
        "logger": event_dict.pop("logger", None) or "root",
        "message": message,
        "event": message,
    }
    head.update(event_dict)
    return head


def configure_logging(
    service: str,
    level: str = "INFO",
    *,
    environment: str = "dev",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route structlog and stdlib logging to JSON lines on ``stream``.

    Idempotent: a second call replaces the handler installed by the first.

    Parameters
    ----------
    service : str
        Value of the ``service`` field (e.g. ``"ops_api"``).
    level : str, default "INFO"
        ``DEBUG|INFO|WARN|WARNING|ERROR`` (``Settings.log_level``).
    environment : str, default "dev"
        Value of the ``environment`` field (``Settings.service_env``).
    stream : text stream, optional
        Destination; default ``sys.stdout``.

    Returns
    -------
    logging.Handler
        The root handler installed (tests remove it with ``logging.getLogger().removeHandler``).

    Raises
    ------
    ValueError
        If ``level`` is not a known level name.
    """
    name = level.strip().upper()
    name = "WARNING" if name == "WARN" else name
    if name not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"unknown log level {level!r}")
    numeric = logging.getLevelName(name)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        _static_fields(service, environment),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _spec_names,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str, sort_keys=False),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """Return a structlog logger (``log.info("event", key=value)``), optionally pre-bound."""
    return structlog.get_logger(name, **initial)


def bind_context(**values: Any) -> MutableMapping[str, Any]:
    """Bind ``values`` (e.g. ``run_id=…``) into every log line of the current context.

    Returns the previous tokens mapping from ``structlog.contextvars.bind_contextvars``; pass it
    to ``structlog.contextvars.reset_contextvars(**tokens)`` to undo.
    """
    return dict(structlog.contextvars.bind_contextvars(**values))


def clear_context() -> None:
    """Drop every value bound with :func:`bind_context` in the current context."""
    structlog.contextvars.clear_contextvars()

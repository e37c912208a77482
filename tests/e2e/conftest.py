"""The whole platform, really started: ``pairdesk up`` as a subprocess on the test servers.

``platform`` (session-scoped) starts the six services and the Celery worker with ``pairdesk up``
against a fresh PostgreSQL database and the test Redis (own bus namespace and Celery queue), a
copy of the ``trained_bundle`` Parquet store, and a drop folder the data_pipeline may ingest
from. The trained model is registered with ``pairdesk models register`` (setup only; every
flow under test then goes through HTTP). Users ``viewer1``/``editor1``/``approver1``/``admin1``
are created with ``pairdesk users add``.

All tests using it are collected by the one module ``test_platform.py``, so xdist
(``--dist loadfile``) runs them on one worker, against one platform.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pairdesk.common import testing

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "editor", "approver", "admin")
SERVICES = ("data_pipeline", "core_inference", "backtest", "analytics", "config_api", "ops_api")
THETA1, THETA2 = 0.05, 0.45  # low θ1 so the 2024 H1 backtest and the live loop have entries


#: DD levels of the e2e paper account. The flows test the ops mechanics (halt blocks entries, the
#: approver's guarded resume restores them), not the strategy: with θ1 = 0.05 the live paper book
#: takes nearly every AI1 candidate and its drawdown since Nov 2023 exceeds the spec's DD_WARN 0.08,
#: so the resume guard would (rightly) refuse — that refusal is tested in
#: tests/services/ops_api/test_resume.py. core_inference (days below DD_WARN) and ops_api (the
#: guard) read the same policy file.
PAPER_DD_LEVELS = {"dd_warn_portfolio": 0.30, "dd_halt_portfolio": 0.35, "dd_flatten_portfolio": 0.40}


def _paper_config(folder: Path) -> Path:
    """A copy of ``config/`` whose ``dd_policy.yaml`` has :data:`PAPER_DD_LEVELS`."""
    shutil.copytree(REPO / "config", folder)
    path = folder / "dd_policy.yaml"
    lines = []
    for line in path.read_text().splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}: {{ value: {PAPER_DD_LEVELS[key]} }}" if key in PAPER_DD_LEVELS else line)
    path.write_text("\n".join(lines) + "\n")
    return folder


@dataclass
class Platform:
    """A running platform: service URLs, the JWT secret, paths and the Redis namespace."""

    urls: dict[str, str]
    secret: str
    db_url: str
    redis_url: str
    namespace: str
    store: Path
    drop_root: Path
    model_dir: Path
    model_version: str
    var: Path
    output: testing.OutputLines
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str) -> str:
        """Bearer token of ``<role>1`` obtained through config_api ``POST /auth/token``."""
        if role not in self.tokens:
            r = httpx.post(
                f"{self.urls['config_api']}/api/v1/auth/token",
                json={"username": f"{role}1", "password": PASSWORD},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            self.tokens[role] = r.json()["data"]["access_token"]
        return self.tokens[role]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "pairdesk.research.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def platform(
    pg_admin_url: str,
    redis_server_url: str,
    trained_bundle: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    store = root / "store"
    shutil.copytree(trained_bundle["store"], store)
    drop_root = root / "drops"
    drop_root.mkdir()
    var = root / "var"
    config = _paper_config(root / "config")
    namespace = testing.new_namespace()
    base = testing.free_port_block(len(SERVICES))
    with testing.temporary_database(pg_admin_url, migrate=True) as db_url:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("PAIRDESK_JWT_", "PAIRDESK_STORE", "PAIRDESK_BT_", "PAIRDESK_CORE")
            )
        }
        secret = "e2e-" + os.urandom(24).hex()
        env.update(
            POSTGRES_URL=db_url,
            REDIS_URL=redis_server_url,
            SERVICE_ENV="dev",
            PAIRDESK_JWT_SECRET=secret,
            PAIRDESK_BUS_NAMESPACE=namespace,
            PAIRDESK_BT_QUEUE=f"bt_{namespace.replace(':', '_')}",
            PAIRDESK_STORE_DIR=str(store),
            PAIRDESK_BT_OUT_DIR=str(root / "bt_runs"),
            PAIRDESK_DROP_DIRS=str(drop_root),
            PAIRDESK_CORE_THETA1=str(THETA1),
            PAIRDESK_CORE_THETA2=str(THETA2),
            PAIRDESK_CORE_POLL_S="1",
            # the replayed bars are from 2024: judge metric freshness against the bars, not now
            PAIRDESK_OPS_METRICS_MAX_AGE_S=str(10 * 365 * 86400),
            PAIRDESK_CORE_CONFIG_DIR=str(config),
            PAIRDESK_OPS_DD_POLICY_PATH=str(config / "dd_policy.yaml"),
        )
        for role in ROLES:
            _cli(env, "users", "add", f"{role}1", "--role", role, "--password-stdin",
                 stdin=PASSWORD + "\n")  # fmt: skip
        out = _cli(env, "models", "register", str(trained_bundle["models"]))
        version = trained_bundle["models"].name
        assert version in out
        proc = subprocess.Popen(
            [sys.executable, "-m", "pairdesk.research.cli", "up", "--var", str(var),
             "--host", "127.0.0.1", "--base-port", str(base), "--ready-timeout", "180"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env,
        )  # fmt: skip
        lines = testing.OutputLines(proc)
        try:
            assert lines.until("pairdesk up: ready", timeout=300), lines.text
            urls = {name: f"http://127.0.0.1:{base + i}" for i, name in enumerate(SERVICES)}
            yield Platform(
                urls=urls,
                secret=secret,
                db_url=db_url,
                redis_url=redis_server_url,
                namespace=namespace,
                store=store,
                drop_root=drop_root,
                model_dir=trained_bundle["models"],
                model_version=version,
                var=var,
                output=lines,
            )
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            testing.flush_namespace(redis_server_url, namespace)

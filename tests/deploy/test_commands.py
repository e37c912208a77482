"""Run the commands the deployment manifests contain, against the test run's real servers.

* The migration command (compose ``migrate`` service = k8s Job ``pairdesk-migrate``) brings an
  empty PostgreSQL database to the latest schema.
* The k8s ``wait-for-migrations`` init-container script fails on an unmigrated database and
  succeeds once it is at head.
* The compose healthcheck (``GET /readyz``) of each service passes against a real service app
  (``pairdesk.common.service.create_service_app`` served by uvicorn) with PostgreSQL and Redis up,
  and fails when PostgreSQL is unreachable, while ``GET /healthz`` (k8s liveness) stays 200.

No container runtime is needed: the commands run with this interpreter, as in the image.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from pairdesk.common.service import create_service_app
from pairdesk.common.settings import Settings
from pairdesk.common.testing import RedisTestHandle, temporary_database

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
K8S_DEPLOYMENT = next(
    d
    for d in yaml.safe_load_all((REPO / "k8s" / "data-pipeline.yaml").read_text("utf-8"))
    if d["kind"] == "Deployment"
)
WAIT_SCRIPT: str = K8S_DEPLOYMENT["spec"]["template"]["spec"]["initContainers"][0]["args"][0]
MIGRATE_CODE: str = COMPOSE["services"]["migrate"]["command"][2]
#: compose service -> its healthcheck's Python code (``["CMD", "python", "-c", code]``)
HEALTHCHECKS = {
    name: service["healthcheck"]["test"][3]
    for name, service in COMPOSE["services"].items()
    if service.get("healthcheck", {}).get("test", [None])[:3] == ["CMD", "python", "-c"]
}


def _run_python(
    code: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_migrate_command_and_wait_for_migrations(pg_admin_url: str) -> None:
    with temporary_database(pg_admin_url) as url:
        waiting = _run_python(
            WAIT_SCRIPT, {"POSTGRES_URL": url, "PAIRDESK_MIGRATION_WAIT_SECONDS": "0"}
        )
        assert waiting.returncode != 0
        assert "not at" in waiting.stderr
        assert url.split("@")[0] not in waiting.stderr + waiting.stdout  # no credentials echoed

        migrated = _run_python(MIGRATE_CODE, {"POSTGRES_URL": url})
        assert migrated.returncode == 0, migrated.stderr

        ready = _run_python(
            WAIT_SCRIPT, {"POSTGRES_URL": url, "PAIRDESK_MIGRATION_WAIT_SECONDS": "0"}
        )
        assert ready.returncode == 0, ready.stderr

        again = _run_python(MIGRATE_CODE, {"POSTGRES_URL": url})  # a re-run Job is harmless
        assert again.returncode == 0, again.stderr


def test_wait_for_migrations_gives_up_on_unreachable_database() -> None:
    result = _run_python(
        WAIT_SCRIPT,
        {
            "POSTGRES_URL": "postgresql://nobody@127.0.0.1:1/x",
            "PAIRDESK_MIGRATION_WAIT_SECONDS": "0",
        },
    )
    assert result.returncode != 0
    assert "unreachable" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield the port."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during startup"
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _app(postgres_url: str, redis: RedisTestHandle) -> FastAPI:
    settings = Settings.from_mapping(
        {
            "POSTGRES_URL": postgres_url,
            "REDIS_URL": redis.url,
            "PAIRDESK_BUS_NAMESPACE": redis.namespace,
        }
    )
    return create_service_app(
        name="deploy_probe",
        domain="OPS",
        title="deploy probe",
        description="service app used to exercise the deployment healthchecks",
        routers=[],
        settings=settings,
    )


def _healthcheck(code: str, port: int) -> subprocess.CompletedProcess[str]:
    (original,) = {f"127.0.0.1:{p}" for p in range(8001, 8007) if f"127.0.0.1:{p}/" in code}
    return _run_python(code.replace(original, f"127.0.0.1:{port}"), {}, timeout=30)


def test_healthchecks_cover_the_six_services() -> None:
    assert set(HEALTHCHECKS) == {
        "data-pipeline",
        "core-inference",
        "backtest",
        "analytics",
        "config-api",
        "ops-api",
    }


def test_compose_healthchecks_follow_readyz(pg_url: str, redis_client: RedisTestHandle) -> None:
    with _serve(_app(pg_url, redis_client)) as port:
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        for name, code in HEALTHCHECKS.items():
            result = _healthcheck(code, port)
            assert result.returncode == 0, f"{name}: {result.stderr}"


def test_compose_healthchecks_fail_when_postgres_is_down(redis_client: RedisTestHandle) -> None:
    with _serve(_app("postgresql://nobody@127.0.0.1:1/x", redis_client)) as port:
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        # k8s liveness (/healthz) must not restart a pod because a dependency is down
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        for name, code in HEALTHCHECKS.items():
            result = _healthcheck(code, port)
            assert result.returncode != 0, f"{name}: healthcheck passed with PostgreSQL down"
            assert "503" in result.stderr, name


@pytest.mark.parametrize("name", sorted(HEALTHCHECKS))
def test_healthcheck_fails_when_nothing_listens(name: str) -> None:
    result = _healthcheck(HEALTHCHECKS[name], _free_port())
    assert result.returncode != 0

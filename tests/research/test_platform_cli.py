"""Platform CLI (issue 3): ``pairdesk users`` / ``token`` / ``models`` against the real test
PostgreSQL, and ``pairdesk up`` end to end as a subprocess (services, worker, SIGINT shutdown)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from pairdesk.common import testing
from pairdesk.common.auth import Role, decode_token
from pairdesk.common.models import ModelStatus
from pairdesk.common.settings import Settings
from pairdesk.research import platform
from pairdesk.research.cli import app
from typer.testing import CliRunner

runner = CliRunner()
SECRET = "t" * 64  # a 64-byte test secret


def invoke(*args: object, env: dict[str, str | None] | None = None, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env, input=input)


def _fetch(url: str, sql: str, **params: object) -> list[tuple]:
    return [tuple(r) for r in testing.run_sql(url, sql, **params)]


def _user(url: str, name: str) -> tuple | None:
    rows = _fetch(url, "SELECT role::text, password_hash FROM users WHERE username = :n", n=name)
    return rows[0] if rows else None


# -- users ---------------------------------------------------------------------------------


def test_role_choices_are_the_auth_roles() -> None:
    assert [r.value for r in platform.RoleName] == [r.value for r in Role]


def test_users_add_list_update(pg_url: str) -> None:
    from pairdesk.common.auth import verify_password

    env = {"POSTGRES_URL": pg_url}
    name = f"alice_{uuid.uuid4().hex[:8]}"
    r = invoke(
        "users", "add", name, "--role", "editor", "--password-stdin",
        env=env, input="correct horse battery\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"user {name} created (role editor)" in r.stdout
    role, hashed = _user(pg_url, name)
    assert role == "editor"
    assert hashed.startswith("$argon2id$")
    assert verify_password("correct horse battery", hashed)

    # existing user: error exit 2 unless --update
    r = invoke(
        "users", "add", name, "--role", "admin", "--password-stdin",
        env=env, input="another long password\n",
    )  # fmt: skip
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: user '{name}' already exists (pass --update to change it)"
    assert _user(pg_url, name)[0] == "editor"

    # interactive prompt with confirmation, --update, role name case-insensitive
    r = invoke(
        "users", "add", name, "--role", "APPROVER", "--update",
        env=env, input="a brand new password\na brand new password\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    role, hashed = _user(pg_url, name)
    assert role == "approver"
    assert verify_password("a brand new password", hashed)

    r = invoke("users", "list", env=env)
    assert r.exit_code == 0, r.output
    assert re.search(rf"│ {name}\s+│ approver\s+│ yes", r.stdout)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["bob", "--role", "viewer", "--password-stdin"], "short\n", "at least 12 characters"),
        (["bad name!", "--role", "viewer", "--password-stdin"], "x" * 20, "invalid username"),
    ],
)
def test_users_add_rejects_bad_input(
    pg_url: str, args: list[str], stdin: str, message: str
) -> None:
    r = invoke("users", "add", *args, env={"POSTGRES_URL": pg_url}, input=stdin)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ")
    assert message in r.stderr
    assert "Traceback" not in r.output


def test_users_add_unknown_role_is_a_usage_error(pg_url: str) -> None:
    r = invoke("users", "add", "carol", "--role", "root", env={"POSTGRES_URL": pg_url})
    assert r.exit_code == 2
    assert _user(pg_url, "carol") is None


def test_database_unreachable_is_one_line_error() -> None:
    r = invoke("users", "list", env={"POSTGRES_URL": "postgresql://nobody@127.0.0.1:1/x"})
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ")
    assert len(r.stderr.strip().splitlines()) == 1


# -- token ---------------------------------------------------------------------------------


def test_token_create_with_env_secret_decodes_with_role() -> None:
    r = invoke(
        "token", "create", "--sub", "alice", "--role", "approver", "--ttl", "120",
        env={"PAIRDESK_JWT_SECRET": SECRET, "PAIRDESK_JWT_PRIVATE_KEY": None,
             "PAIRDESK_JWT_PUBLIC_KEY": None},
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    claims = decode_token(r.stdout.strip(), Settings.from_mapping({"PAIRDESK_JWT_SECRET": SECRET}))
    assert claims.sub == "alice"
    assert claims.role is Role.APPROVER
    assert (claims.exp - claims.iat).total_seconds() == 120


def test_token_create_uses_the_var_secret_of_pairdesk_up(tmp_path: Path) -> None:
    var = tmp_path / "var"
    no_secret = {"PAIRDESK_JWT_SECRET": None, "PAIRDESK_JWT_PRIVATE_KEY": None,
                 "PAIRDESK_JWT_PUBLIC_KEY": None, "SERVICE_ENV": "dev"}  # fmt: skip

    # dev without PAIRDESK_JWT_SECRET and without var/jwt_secret: refused
    r = invoke("token", "create", "--sub", "x", "--role", "viewer", "--var", var, env=no_secret)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: no JWT secret")

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PAIRDESK_JWT_SECRET", raising=False)
        secret = platform.resolve_jwt_secret(var, create=True)
        assert platform.resolve_jwt_secret(var, create=True) == secret  # generated once
    assert secret is not None
    assert len(secret.encode()) >= 48
    assert stat.S_IMODE((var / "jwt_secret").stat().st_mode) == 0o600

    r = invoke("token", "create", "--sub", "ops", "--role", "admin", "--var", var, env=no_secret)
    assert r.exit_code == 0, r.output
    claims = decode_token(r.stdout.strip(), Settings.from_mapping({"PAIRDESK_JWT_SECRET": secret}))
    assert claims.sub == "ops"
    assert claims.role is Role.ADMIN


def test_token_create_invalid_settings_is_one_line_error() -> None:
    r = invoke(
        "token", "create", "--sub", "x", "--role", "viewer",
        env={"SERVICE_ENV": "prod", "PAIRDESK_JWT_SECRET": "change-me",
             "PAIRDESK_JWT_PRIVATE_KEY": None, "PAIRDESK_JWT_PUBLIC_KEY": None},
    )  # fmt: skip
    assert r.exit_code == 2
    assert "PAIRDESK_JWT_SECRET is a default/example value" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- models --------------------------------------------------------------------------------


def _bundle_copy(src: Path, dest: Path) -> Path:
    """Copy the trained bundle under a new model_version (the folder name, as bt train does)."""
    shutil.copytree(src, dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["model_version"] = dest.name
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def test_models_register_activate_list(
    pg_admin_url: str, trained_bundle: dict[str, Path], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    first = _bundle_copy(trained_bundle["models"], tmp_path / f"m1_{tag}")
    second = _bundle_copy(trained_bundle["models"], tmp_path / f"m2_{tag}")
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        env = {"POSTGRES_URL": url}
        for bundle in (first, second):
            r = invoke("models", "register", bundle, env=env)
            assert r.exit_code == 0, r.output
            assert f"model {bundle.name} registered (candidate, timeframe 1h" in r.stdout

        r = invoke("models", "activate", first.name, env=env)
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == f"model {first.name} is active for timeframe 1h"
        r = invoke("models", "activate", second.name, env=env)
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == (
            f"model {second.name} is active for timeframe 1h; {first.name} retired"
        )
        rows = dict(_fetch(url, "SELECT model_version, status::text FROM model_registry"))
        assert rows == {first.name: ModelStatus.RETIRED.value, second.name: "active"}
        activated_by = _fetch(
            url, "SELECT activated_by FROM model_registry WHERE status = 'active'"
        )[0][0]
        assert activated_by.startswith("cli")

        r = invoke("models", "list", env=env)
        assert r.exit_code == 0, r.output
        assert first.name in r.stdout
        assert "2 model(s)" in r.stdout

        # errors: unknown version, folder that is not a bundle, bundle changed after registration
        r = invoke("models", "activate", "no_such_model", env=env)
        assert r.exit_code == 2
        assert r.stderr.strip() == "error: model no_such_model is not registered"
        r = invoke("models", "register", tmp_path, env=env)
        assert r.exit_code == 2
        assert "has no ai1/" in r.stderr
        (first / "metrics.json").write_text("{}")
        r = invoke("models", "activate", first.name, env=env)
        assert r.exit_code == 2
        assert "changed since registration" in r.stderr
        rows = dict(_fetch(url, "SELECT model_version, status::text FROM model_registry"))
        assert rows[second.name] == "active"  # nothing half-done


# -- up --------------------------------------------------------------------------------------


def _existing_services() -> list[str]:
    found = []
    for name, _ in platform.SERVICES:
        try:
            if importlib.util.find_spec(f"pairdesk.{name}.main") is not None:
                found.append(name)
        except ModuleNotFoundError:
            pass
    return found


def _worker_exists() -> bool:
    try:
        return importlib.util.find_spec(platform.WORKER_APP.split(":")[0]) is not None
    except ModuleNotFoundError:
        return False


def test_up_rejects_unknown_service_and_busy_port(tmp_path: Path) -> None:
    r = invoke("up", "--var", tmp_path / "var", "--services", "nope")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: unknown service(s) nope")

    services = _existing_services()
    if not services:
        pytest.skip("no service package has a main module yet")
    base = testing.free_port_block(6)
    offset = dict(platform.SERVICES)[services[0]]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + offset))
        busy.listen()
        r = invoke(
            "up", "--var", tmp_path / "var", "--base-port", base, "--no-worker",
            "--services", services[0],
        )  # fmt: skip
    assert r.exit_code == 2
    assert f"error: port {base + offset} ({services[0]}) is already in use" in r.stderr


#: One authenticated GET per service (DESIGN.md §5): 401 without a token, not 401/403 with it.
_AUTH_PROBES = {
    "data_pipeline": "/api/v1/data/watermarks",
    "core_inference": "/api/v1/models",
    "backtest": "/api/v1/bt/summary",
    "analytics": "/api/v1/metrics/model",
    "config_api": "/api/v1/configs/audit",
    "ops_api": "/api/v1/ops/state",
}


@pytest.mark.slow
def test_up_starts_services_and_stops_everything_on_sigint(
    pg_admin_url: str, redis_client: testing.RedisTestHandle, tmp_path: Path
) -> None:
    services = _existing_services()
    if not services:
        pytest.skip("no service package has a main module yet")
    worker = _worker_exists()
    var = tmp_path / "var"
    base = testing.free_port_block(6)
    args = [
        sys.executable, "-m", "pairdesk.research.cli", "up", "--var", str(var),
        "--host", "127.0.0.1", "--base-port", str(base), "--services", ",".join(services),
        "--ready-timeout", "120",
    ]  # fmt: skip
    if not worker:
        args.append("--no-worker")
    with testing.temporary_database(pg_admin_url) as db_url:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PAIRDESK_JWT_", "PAIRDESK_STORE", "PAIRDESK_BT_"))
        }
        env.update(
            POSTGRES_URL=db_url,
            REDIS_URL=redis_client.url,
            PAIRDESK_BUS_NAMESPACE=redis_client.namespace,
            PAIRDESK_BT_QUEUE=f"bt_{redis_client.namespace.replace(':', '_')}",
            SERVICE_ENV="dev",
        )
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        out = testing.OutputLines(proc)
        pids: dict[str, int] = {}
        try:
            assert out.until("pairdesk up: ready", timeout=300), out.text
            pids = {
                m[0]: int(m[1]) for m in re.findall(r"^started (\w+) \(pid (\d+)\)", out.text, re.M)
            }
            assert set(pids) == set(services) | ({"worker"} if worker else set())
            token = re.search(r"export PAIRDESK_TOKEN=(\S+)", out.text)
            assert token is not None, out.text
            assert "admin password: " in out.text
            assert "ingesting" in out.text  # empty store: the shipped data went in

            secret = (var / "jwt_secret").read_text().strip()
            assert stat.S_IMODE((var / "jwt_secret").stat().st_mode) == 0o600
            claims = decode_token(token[1], Settings.from_mapping({"PAIRDESK_JWT_SECRET": secret}))
            assert claims.sub == "admin"
            assert claims.role is Role.ADMIN
            assert any((var / "store").iterdir())
            assert _user(db_url, "admin")[0] == "admin"

            bearer = {"Authorization": f"Bearer {token[1]}"}
            for name in services:
                url = f"http://127.0.0.1:{base + dict(platform.SERVICES)[name]}"
                assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200, name
                assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200, name
                probe = f"{url}{_AUTH_PROBES[name]}"
                assert httpx.get(probe, timeout=30).status_code == 401, name
                # the token issued by `up` verifies in every service (one shared secret)
                assert httpx.get(probe, headers=bearer, timeout=30).status_code not in (401, 403)
                assert (var / "logs" / f"{name}.log").stat().st_size > 0
            assert all(psutil.pid_exists(pid) for pid in pids.values())

            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 0, out.text
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.until("pairdesk up: stopped", timeout=10)
        assert "pairdesk up: stopped" in out.text
        for name, pid in pids.items():
            assert not psutil.pid_exists(pid), f"{name} (pid {pid}) still running"
        for name in services:
            with socket.socket() as sock:  # ports released (TIME_WAIT allowed, as for uvicorn)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", base + dict(platform.SERVICES)[name]))


# -- .env.example ----------------------------------------------------------------------------


def _env_example() -> tuple[dict[str, str], set[str]]:
    """Active ``KEY=value`` pairs and every documented name (commented lines included)."""
    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    active = dict(
        line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line)
    )
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.M))
    return active, names


def test_env_example_documents_every_setting_and_its_placeholders_are_refused() -> None:
    active, names = _env_example()
    spec = {
        "POSTGRES_URL", "REDIS_URL", "SERVICE_ENV", "LOG_LEVEL", "TZ", "STORAGE_BACKEND",
        "ARCHIVE_PATH", "SLACK_WEBHOOK_URL", "PAGERDUTY_INTEGRATION_KEY", "TWELVEDATA_API_KEY",
        "PAIRDESK_STORE_DIR", "PAIRDESK_BT_OUT_DIR",
    }  # fmt: skip
    assert spec | {name.upper() for name in Settings.model_fields} <= names
    # the active values form valid dev settings ...
    Settings.from_mapping(active)
    # ... and the placeholder secret stops any other stage
    for stage in ("stg", "prod"):
        with pytest.raises(ValueError, match="PAIRDESK_JWT_SECRET is a default/example value"):
            Settings.from_mapping({**active, "SERVICE_ENV": stage})

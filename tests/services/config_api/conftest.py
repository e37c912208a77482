"""Fixtures of the config_api tests: a migrated database of their own with users, a copy of the
repository's config folder, tokens and a running app."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pairdesk.common import testing
from pairdesk.common.auth import Role, create_token, hash_password
from pairdesk.common.db import create_engine, create_session_factory, session_scope
from pairdesk.common.models import User
from pairdesk.common.settings import Settings
from pairdesk.config_api.main import create_app
from pairdesk.config_api.settings import ConfigApiSettings
from pairdesk.research.config import CONFIG_DIR

#: username -> (password, role, active)
USERS: dict[str, tuple[str, Role, bool]] = {
    "alice": ("correct horse battery staple", Role.EDITOR, True),
    "vera": ("viewer-pass-123", Role.VIEWER, True),
    "olga": ("old-account-pass", Role.APPROVER, False),
}


@dataclass
class Env:
    """A running config_api app and what the tests need around it."""

    client: TestClient
    db_url: str
    config_dir: Path
    settings: Settings
    headers: Callable[[str], dict[str, str]]

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one SQL statement on the test database and return its rows."""
        return testing.run_sql(self.db_url, statement, **params)


async def _add_users(url: str) -> None:
    engine = create_engine(url, pool=False)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            for name, (password, role, active) in USERS.items():
                session.add(
                    User(
                        username=name,
                        password_hash=hash_password(password),
                        role=role,
                        is_active=active,
                    )
                )
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def env(
    pg_admin_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    config_dir = tmp_path_factory.mktemp("config_api") / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    with testing.temporary_database(pg_admin_url, migrate=True) as url:
        asyncio.run(_add_users(url))
        settings = Settings.from_mapping(
            {
                "POSTGRES_URL": url,
                "REDIS_URL": redis_server_url,
                "PAIRDESK_BUS_NAMESPACE": testing.new_namespace(),
                "PAIRDESK_JWT_SECRET": "config-api-test-secret-" + "x" * 32,
                "PAIRDESK_JWT_TTL_SECONDS": 900,
            }
        )
        app = create_app(
            settings, config_api_settings=ConfigApiSettings(config_dir=str(config_dir))
        )

        def headers(role: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {create_token(f'{role}-user', role, settings)}"}

        with TestClient(app) as client:
            yield Env(client, url, config_dir, settings, headers)

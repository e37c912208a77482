"""Model registry on a real PostgreSQL with a real ``bt train`` bundle (pairdesk.common.registry)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pairdesk.common import registry
from pairdesk.common.models import ModelStatus
from sqlalchemy.ext.asyncio import AsyncSession

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def _copy_bundle(src: Path, dst: Path, version: str | None = None) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("oos_predictions.parquet"))
    if version is not None:
        params_path = dst / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        params["model_version"] = version
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


@pytest.fixture
def bundle(trained_bundle: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the session's trained bundle (tests may modify it)."""
    return _copy_bundle(trained_bundle["models"], tmp_path / "t_2022_2023")


def test_register_records_the_bundle(bundle: Path, db_session: SessionFactory) -> None:
    params = yaml.safe_load((bundle / "params.yaml").read_text())

    async def run() -> None:
        async with db_session() as session:
            row = await registry.register_model(session, bundle, registered_by="alice")
            assert row.model_version == "t_2022_2023"
            assert row.status is ModelStatus.CANDIDATE
            assert row.timeframe == "1h"
            assert row.artifact_uri == str(bundle.resolve())
            assert row.artifact_sha256 == registry.bundle_sha256(bundle)
            assert len(row.artifact_sha256) == 64
            assert row.feature_schema_hash == params["feature_schema_hash"]
            assert row.theta1 == Decimal(str(params["theta"]["theta1"]))
            assert row.theta2 == Decimal(str(params["theta"]["theta2"]))
            # period 2022-01-01:2023-12-29 (end inclusive) -> [2022-01-01, 2023-12-30)
            assert row.train_start == datetime(2022, 1, 1, tzinfo=UTC)
            assert row.train_end == datetime(2023, 12, 30, tzinfo=UTC)
            assert row.metrics["registered_by"] == "alice"
            assert "folds" not in row.metrics["walk_forward"]
            assert await registry.get_model(session, "t_2022_2023") is row
            assert await registry.get_model(session, "nope") is None
            # registering the same candidate again refreshes it, no duplicate
            again = await registry.register_model(session, bundle)
            assert again is row
            assert [m.model_version for m in await registry.list_models(session)] == ["t_2022_2023"]
            assert await registry.list_models(session, "4h") == []

    asyncio.run(run())


def test_activate_retires_or_rolls_back_the_previous(
    bundle: Path, tmp_path: Path, db_session: SessionFactory
) -> None:
    second = _copy_bundle(bundle, tmp_path / "v2", version="t_v2")

    async def run() -> None:
        async with db_session() as session:
            await registry.register_model(session, bundle)
            await registry.register_model(session, second)
            assert await registry.active_model(session, "1h") is None
            row, previous = await registry.activate_model(
                session, "t_2022_2023", activated_by="ann"
            )
            assert previous is None
            assert row.status is ModelStatus.ACTIVE
            assert row.activated_by == "ann"
            assert row.activated_at is not None
            active = await registry.active_model(session, "1h")
            assert active is not None
            assert active.model_version == "t_2022_2023"
            # activating the active model changes nothing
            same, prev_same = await registry.activate_model(
                session, "t_2022_2023", activated_by="bob"
            )
            assert prev_same is None
            assert same.activated_by == "ann"
            row2, prev2 = await registry.activate_model(session, "t_v2", activated_by="bob")
            assert prev2 is not None
            assert prev2.model_version == "t_2022_2023"
            assert prev2.status is ModelStatus.RETIRED
            assert row2.status is ModelStatus.ACTIVE
            # ops rollback back to the first model marks the one left as rolled_back
            back, left = await registry.activate_model(
                session,
                "t_2022_2023",
                activated_by="ops",
                previous_status=ModelStatus.ROLLED_BACK,
            )
            assert back.status is ModelStatus.ACTIVE
            assert left is not None
            assert left.model_version == "t_v2"
            assert left.status is ModelStatus.ROLLED_BACK
            statuses = {m.model_version: m.status for m in await registry.list_models(session)}
            assert statuses == {"t_2022_2023": ModelStatus.ACTIVE, "t_v2": ModelStatus.ROLLED_BACK}
            with pytest.raises(LookupError, match="not registered"):
                await registry.activate_model(session, "missing", activated_by="x")

    asyncio.run(run())


def test_changed_or_incomplete_bundles_are_refused(
    bundle: Path, tmp_path: Path, db_session: SessionFactory
) -> None:
    async def run() -> None:
        async with db_session() as session:
            row = await registry.register_model(session, bundle)
            assert registry.verify_bundle(row) == bundle.resolve()
            # an artefact edited after registration is detected, and activation refuses it
            calib = bundle / "ai1" / "calibrator.json"
            original = calib.read_bytes()
            calib.write_bytes(original + b" ")
            with pytest.raises(registry.BundleError, match="changed since registration"):
                registry.verify_bundle(row)
            with pytest.raises(registry.BundleError, match="changed since registration"):
                await registry.activate_model(session, "t_2022_2023", activated_by="x")
            assert await registry.active_model(session, "1h") is None
            calib.write_bytes(original)
            await registry.activate_model(session, "t_2022_2023", activated_by="x")
            # an active model is never overwritten with different artefacts
            (bundle / "metrics.json").write_text('{"summary": {}}')
            with pytest.raises(registry.BundleError, match="train under a new version"):
                await registry.register_model(session, bundle)

    asyncio.run(run())

    broken = _copy_bundle(bundle, tmp_path / "broken")
    shutil.rmtree(broken / "ai2")
    with pytest.raises(registry.BundleError, match="no ai2/"):
        registry.bundle_sha256(broken)
    nover = _copy_bundle(bundle, tmp_path / "nover")
    params = yaml.safe_load((nover / "params.yaml").read_text())
    del params["model_version"]
    (nover / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(registry.BundleError, match="no model_version"):
        registry.read_bundle(nover)
    (nover / "metrics.json").write_text("{not json")
    with pytest.raises(registry.BundleError, match="unreadable artefact"):
        registry.read_bundle(nover)

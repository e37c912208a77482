"""``openapi.yaml`` is what the six apps serve: regenerate it and compare (drift test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_openapi_yaml_has_not_drifted() -> None:
    spec = importlib.util.spec_from_file_location(
        "pairdesk_openapi_script", REPO / "scripts" / "openapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.render(module.build())
    assert (REPO / "openapi.yaml").read_text() == generated, (
        "openapi.yaml is stale: run `python3 -m uv run --frozen python scripts/openapi.py`"
    )

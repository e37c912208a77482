"""Property-based API test of the running platform against ``openapi.yaml`` (schemathesis).

Bounded: a few generated cases per operation (``MAX_EXAMPLES``), sent with an admin token to the
service each path names. The property: no 5xx, and every answer is the ``ApiResponse``
envelope. Authorisation itself is covered by ``test_rbac.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase

from .conftest import Platform

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"
MAX_EXAMPLES = 8


def _service_doc(doc: dict[str, Any], service: str) -> dict[str, Any]:
    paths = {p: {k: v for k, v in item.items() if k not in ("servers", "x-pairdesk-service")}
             for p, item in doc["paths"].items() if item.get("x-pairdesk-service") == service}  # fmt: skip
    return {**doc, "servers": [], "paths": paths}


@pytest.mark.parametrize(
    "service",
    ["data_pipeline", "core_inference", "backtest", "analytics", "config_api", "ops_api"],
)
def test_no_server_errors(platform: Platform, service: str) -> None:
    doc = yaml.safe_load(OPENAPI.read_text())
    schema = schemathesis.openapi.from_dict(_service_doc(doc, service))
    base_url = platform.urls[service]
    headers = platform.headers("admin")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations

    for operation in operations:

        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            label = f"{case.method} {case.formatted_path} → {response.status_code}"
            if response.status_code >= 500:
                failures.append(f"{label}: {response.text[:300]}")
                return
            body = response.json()
            if body.get("status") not in ("ok", "error") or "request_id" not in body:
                failures.append(f"{label}: not an ApiResponse envelope")

        check()
    assert not failures, "\n".join(failures[:20])

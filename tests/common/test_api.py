"""ApiResponse envelope, error ids and error handlers (spec 004 §OpenAPI 概要 v1, §エラーコード)."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pairdesk.common.api import (
    REQUEST_ID_HEADER,
    ApiResponse,
    RequestId,
    install_error_handlers,
    ok,
)
from pairdesk.common.errors import ApiError, error_id, validate_domain, validate_error_id
from pairdesk.common.logs import configure_logging
from pydantic import BaseModel

SECRET_TEXT = "db password is hunter2"


class Item(BaseModel):
    name: str
    qty: int


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, "BT")

    @app.get("/items/{item_id}")
    def get_item(item_id: int, request_id: RequestId) -> ApiResponse[Item]:
        return ok(Item(name=f"item{item_id}", qty=item_id), request_id)

    @app.post("/items")
    def create_item(item: Item, request_id: RequestId) -> ApiResponse[Item]:
        return ok(item, request_id)

    @app.get("/runs/{run_id}")
    def get_run(run_id: str) -> ApiResponse[Item]:
        raise ApiError(
            "BT_RUN_NOTFOUND", f"Run {run_id} not found", status_code=404, details={"run": run_id}
        )

    @app.get("/conflict")
    def conflict() -> None:
        raise HTTPException(status_code=409, detail="Run already finished")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(SECRET_TEXT)

    @app.get("/boom-async")
    async def boom_async() -> None:
        raise KeyError(SECRET_TEXT)

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_app())


def _assert_error(body: dict[str, object], eid: str, rid: str | None = None) -> dict[str, object]:
    assert body["status"] == "error"
    assert body["data"] is None
    error = body["error"]
    assert isinstance(error, dict)
    assert error["id"] == eid
    assert isinstance(error["message"], str)
    assert error["message"]
    if rid is not None:
        assert body["request_id"] == rid
    return error


# --- error ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "eid",
    [
        # every example of spec 004 §エラーコード and DESIGN.md §5
        "DATA_API_TIMEOUT",
        "DATA_DQ_THRESHOLD",
        "CORE_INFER_LATENCY",
        "BT_STRESS_FAIL",
        "ANALYTICS_ALERT_DISPATCH",
        "OPS_CONFIG_REJECTED",
        "OPS_AUTH_FORBIDDEN",
        "BT_RUN_NOTFOUND",
        "UI_API_VALIDATION",
        "DATA_WS_CONNFAIL",
    ],
)
def test_spec_error_ids_are_valid(eid: str) -> None:
    assert validate_error_id(eid) == eid


@pytest.mark.parametrize(
    "eid",
    [
        "FOO_API_TIMEOUT",  # unknown domain
        "data_api_timeout",  # lower case
        "DATA_API_TO",  # code too short
        "DATA_API_WAYTOOLONGCODE",  # code too long
        "DATA_TIMEOUT",  # missing part
        "DATA_API_TIME-OUT",  # bad character
        "DATA__TIMEOUT",
        "DATA_API_TIMEOUT\n",
    ],
)
def test_malformed_error_ids_rejected(eid: str) -> None:
    with pytest.raises(ValueError, match=r"invalid error id"):
        validate_error_id(eid)


def test_error_id_builder_and_domain() -> None:
    assert error_id("OPS", "AUTH", "FORBIDDEN") == "OPS_AUTH_FORBIDDEN"
    assert validate_domain("ANALYTICS") == "ANALYTICS"
    with pytest.raises(ValueError, match=r"unknown error domain"):
        validate_domain("ops")
    with pytest.raises(ValueError, match=r"unknown error domain"):
        install_error_handlers(FastAPI(), "WEB")


def test_api_error_validation() -> None:
    err = ApiError("BT_RUN_NOTFOUND", "missing", status_code=404, details={"a": 1})
    assert (err.error_id, err.status_code, err.details, str(err)) == (
        "BT_RUN_NOTFOUND",
        404,
        {"a": 1},
        "missing",
    )
    with pytest.raises(ValueError, match=r"invalid error id"):
        ApiError("not-an-id", "x")
    with pytest.raises(ValueError, match=r"HTTP error status"):
        ApiError("BT_RUN_NOTFOUND", "x", status_code=200)


def test_envelope_model_round_trip() -> None:
    env = ok({"a": 1}, "rid-1")
    assert env.model_dump() == {
        "status": "ok",
        "data": {"a": 1},
        "error": None,
        "request_id": "rid-1",
    }
    typed = ApiResponse[Item].model_validate(
        {"status": "ok", "data": {"name": "x", "qty": "3"}, "request_id": "r"}
    )
    assert typed.data == Item(name="x", qty=3)


# --- success path and request ids ------------------------------------------------------------


def test_success_envelope_and_generated_request_id(client: TestClient) -> None:
    r = client.get("/items/7")
    assert r.status_code == 200
    body = r.json()
    rid = r.headers[REQUEST_ID_HEADER]
    assert uuid.UUID(rid).version == 4
    assert body == {
        "status": "ok",
        "data": {"name": "item7", "qty": 7},
        "error": None,
        "request_id": rid,
    }


def test_sane_incoming_request_id_is_echoed(client: TestClient) -> None:
    r = client.post(
        "/items", json={"name": "a", "qty": 2}, headers={REQUEST_ID_HEADER: "req-123456"}
    )
    assert r.status_code == 200
    assert r.headers[REQUEST_ID_HEADER] == "req-123456"
    assert r.json()["request_id"] == "req-123456"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quote"s', "-leading-dash", "a/b"])
def test_insane_incoming_request_id_is_replaced(client: TestClient, bad: str) -> None:
    r = client.get("/items/1", headers={REQUEST_ID_HEADER: bad})
    rid = r.headers[REQUEST_ID_HEADER]
    assert rid != bad
    assert uuid.UUID(rid).version == 4
    assert r.json()["request_id"] == rid


def test_request_ids_differ_between_requests(client: TestClient) -> None:
    a = client.get("/items/1").headers[REQUEST_ID_HEADER]
    b = client.get("/items/1").headers[REQUEST_ID_HEADER]
    assert a != b


# --- error paths -------------------------------------------------------------------------------


def test_api_error_envelope(client: TestClient) -> None:
    r = client.get("/runs/r42", headers={REQUEST_ID_HEADER: "abc"})
    assert r.status_code == 404
    error = _assert_error(r.json(), "BT_RUN_NOTFOUND", "abc")
    assert error == {
        "id": "BT_RUN_NOTFOUND",
        "message": "Run r42 not found",
        "details": {"run": "r42"},
    }
    assert r.headers[REQUEST_ID_HEADER] == "abc"


def test_malformed_json_is_422_envelope(client: TestClient) -> None:
    r = client.post(
        "/items", content=b'{"name": "a", "qty": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    error = _assert_error(r.json(), "BT_API_VALIDATION", r.headers[REQUEST_ID_HEADER])
    assert error["message"] == "Malformed JSON body"
    assert "Traceback" not in r.text


def test_wrong_types_are_422_with_locations_without_input(client: TestClient) -> None:
    r = client.post("/items", json={"name": "a", "qty": "many"})
    assert r.status_code == 422
    error = _assert_error(r.json(), "BT_API_VALIDATION")
    assert error["message"] == "Request validation failed"
    details = error["details"]
    assert isinstance(details, dict)
    errors = details["errors"]
    assert [e["loc"] for e in errors] == [["body", "qty"]]
    assert errors[0]["type"] == "int_parsing"
    assert set(errors[0]) == {"loc", "msg", "type"}  # no "input" echo, no ctx objects
    assert "many" not in r.text
    assert "Traceback" not in r.text


def test_missing_body_and_bad_path_param(client: TestClient) -> None:
    r = client.post("/items", json={"name": "a"})
    assert r.status_code == 422
    err = _assert_error(r.json(), "BT_API_VALIDATION")
    assert err["details"] == {
        "errors": [{"loc": ["body", "qty"], "msg": "Field required", "type": "missing"}]
    }
    r = client.get("/items/abc")
    assert r.status_code == 422
    err = _assert_error(r.json(), "BT_API_VALIDATION")
    assert err["details"]["errors"][0]["loc"] == ["path", "item_id"]  # type: ignore[index]


def test_unknown_route_is_404_envelope(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    _assert_error(r.json(), "BT_API_NOTFOUND", r.headers[REQUEST_ID_HEADER])


def test_wrong_method_is_405_envelope_with_allow(client: TestClient) -> None:
    r = client.delete("/items/1")
    assert r.status_code == 405
    _assert_error(r.json(), "BT_API_METHOD")
    assert "GET" in r.headers["allow"]


def test_http_exception_is_envelope(client: TestClient) -> None:
    r = client.get("/conflict")
    assert r.status_code == 409
    error = _assert_error(r.json(), "BT_API_CONFLICT")
    assert error["message"] == "Run already finished"


@pytest.mark.parametrize("path", ["/boom", "/boom-async"])
def test_unexpected_exception_is_generic_500(path: str) -> None:
    buf = io.StringIO()
    handler = configure_logging("backtest", "INFO", stream=buf)
    try:
        # raise_server_exceptions=True (default): the exception must not escape the app either
        r = TestClient(_app()).get(path, headers={REQUEST_ID_HEADER: "req-500"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert r.status_code == 500
    error = _assert_error(r.json(), "BT_API_INTERNAL", "req-500")
    assert error == {"id": "BT_API_INTERNAL", "message": "Internal server error"}
    assert r.headers[REQUEST_ID_HEADER] == "req-500"
    assert SECRET_TEXT not in r.text
    assert "Traceback" not in r.text
    # ... but the traceback is logged server-side, tagged with the request id
    records = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    logged = [rec for rec in records if rec.get("message") == "unhandled_exception"]
    assert len(logged) == 1
    assert logged[0]["request_id"] == "req-500"
    assert logged[0]["level"] == "ERROR"
    assert logged[0]["path"] == path
    assert "Traceback" in logged[0]["exception"]
    assert SECRET_TEXT in logged[0]["exception"]


def test_domain_comes_from_the_app() -> None:
    app = FastAPI()
    install_error_handlers(app, "OPS")
    assert app.state.error_domain == "OPS"
    r = TestClient(app).get("/nope")
    _assert_error(r.json(), "OPS_API_NOTFOUND")

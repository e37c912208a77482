"""Prometheus /metrics (DESIGN.md §7, spec 004 §監視, spec 003) and spec-003 JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pairdesk.common.api import REQUEST_ID_HEADER, RequestId, install_error_handlers, ok
from pairdesk.common.logs import (
    LOG_FIELDS,
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
)
from pairdesk.common.observability import (
    DATA_API_LATENCY_MS,
    DQ_FAIL_TOTAL,
    SPEC_METRICS,
    instrument,
    metrics_text,
)
from prometheus_client import CollectorRegistry, Counter

# Names copied from spec 004 §監視・運用 (data pipeline) v1 and spec 003 §EnsembleSystem 監視.
SPEC_004_NAMES = [
    "data_ingest_success_rate",
    "data_api_latency_ms",
    "data_missing_rate",
    "data_outlier_rate",
    "data_ws_reconnects_total",
    "data_pipeline_lag_seconds",
    "data_retry_total",
    "data_dedupe_drops_total",
    "data_watermark_lag_bars",
    "dq_fail_total",
    "beta_stability_std",
]
SPEC_003_NAMES = [
    "ml_prediction_duration",
    "ml_prediction_confidence",
    "ml_ensemble_accuracy",
    "ml_model_performance",
]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _app(service: str = "backtest") -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, "BT")

    @app.get("/ping")
    def ping(request_id: RequestId) -> object:
        get_logger("pairdesk.test").info("ping_served", symbol="XAUUSD")
        return ok({"pong": True}, request_id)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaput")

    instrument(app, service)
    return app


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = configure_logging("backtest", "INFO", environment="stg", stream=buf)
    try:
        yield buf
    finally:
        logging.getLogger().removeHandler(handler)
        clear_context()


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_endpoint_counts_requests_and_lists_spec_metrics() -> None:
    client = TestClient(_app())
    for _ in range(3):
        assert client.get("/ping").status_code == 200
    assert client.get("/boom").status_code == 500
    r = client.get("/metrics")  # no Authorization header: unauthenticated by design
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    counts = re.findall(
        r'^http_requests_total\{handler="/ping",method="GET",status="200"\} (\d+\.\d+)$',
        text,
        flags=re.MULTILINE,
    )
    assert counts
    assert float(counts[0]) >= 3.0
    assert re.search(
        r'^http_requests_total\{handler="/boom",method="GET",status="500"\} ',
        text,
        flags=re.MULTILINE,
    )
    assert "http_request_duration_seconds_bucket" in text
    assert 'handler="/metrics"' not in text  # the scrape itself is not counted
    for name in SPEC_004_NAMES + SPEC_003_NAMES:
        assert re.search(rf"^# TYPE {name} (gauge|counter|histogram)$", text, flags=re.MULTILINE), (
            name
        )
    assert 'pairdesk_service_up{service="backtest"} 1.0' in text


def test_metrics_path_not_in_openapi() -> None:
    app = _app()
    assert "/metrics" not in app.openapi()["paths"]
    assert "/ping" in app.openapi()["paths"]


def test_two_apps_can_be_instrumented_in_one_process() -> None:
    a = TestClient(_app("svc_a"))
    b = TestClient(_app("svc_b"))
    assert a.get("/ping").status_code == 200
    assert b.get("/metrics").status_code == 200
    assert 'pairdesk_service_up{service="svc_b"} 1.0' in b.get("/metrics").text


def test_spec_metric_registry_is_complete_and_typed() -> None:
    assert set(SPEC_004_NAMES + SPEC_003_NAMES) <= set(SPEC_METRICS)
    kinds = {name: m._type for name, m in SPEC_METRICS.items()}
    assert kinds["data_api_latency_ms"] == "histogram"
    assert kinds["ml_prediction_duration"] == "histogram"
    assert kinds["data_ws_reconnects_total"] == "counter"
    assert kinds["dq_fail_total"] == "counter"
    assert kinds["data_missing_rate"] == "gauge"
    assert kinds["beta_stability_std"] == "gauge"


def test_spec_metrics_record_values() -> None:
    before = _sample('dq_fail_total{check="missing_rate",symbol="TESTSYM",timeframe="1h"}')
    DQ_FAIL_TOTAL.labels(check="missing_rate", symbol="TESTSYM", timeframe="1h").inc(2)
    after = _sample('dq_fail_total{check="missing_rate",symbol="TESTSYM",timeframe="1h"}')
    assert after - before == 2.0
    DATA_API_LATENCY_MS.labels(source="testsrc", transport="rest").observe(120.0)
    text = metrics_text()
    # 120 ms falls in the 250 ms bucket but not the 100 ms one
    assert 'data_api_latency_ms_bucket{le="100.0",source="testsrc",transport="rest"} 0.0' in text
    assert 'data_api_latency_ms_bucket{le="250.0",source="testsrc",transport="rest"} 1.0' in text


def _sample(series: str) -> float:
    for line in metrics_text().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_text_with_own_registry() -> None:
    registry = CollectorRegistry()
    c = Counter("widgets_total", "Widgets", registry=registry)
    c.inc(5)
    text = metrics_text(registry)
    assert "widgets_total 5.0" in text
    assert "data_missing_rate" not in text


# --- JSON logs (spec 003 §ログフォーマット標準化) ---------------------------------------------------


def test_structlog_line_has_spec003_fields(log_buffer: io.StringIO) -> None:
    bind_context(run_id="run-42")
    get_logger("pairdesk.backtest").info("bt_started", model_version="v1.0.0", trades=3)
    (line,) = _lines(log_buffer)
    for field in LOG_FIELDS:
        assert field in line, field
    assert TS_RE.match(str(line["@timestamp"]))
    assert line["service"] == "backtest"
    assert line["level"] == "INFO"
    assert line["logger"] == "pairdesk.backtest"
    assert line["message"] == "bt_started"
    assert line["environment"] == "stg"
    assert line["run_id"] == "run-42"
    assert line["model_version"] == "v1.0.0"
    assert line["trades"] == 3
    # spec 004 §監視・運用 names for the same values
    assert line["ts"] == line["@timestamp"]
    assert line["event"] == "bt_started"
    assert list(line)[:8] == list(LOG_FIELDS)


def test_stdlib_logging_goes_through_the_same_format(log_buffer: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").warning("port %d busy", 8001)
    logging.getLogger("noisy").debug("hidden below INFO")
    (line,) = _lines(log_buffer)
    assert line["message"] == "port 8001 busy"
    assert line["level"] == "WARNING"
    assert line["logger"] == "uvicorn.error"
    assert line["service"] == "backtest"
    assert TS_RE.match(str(line["@timestamp"]))


def test_exception_logged_with_traceback(log_buffer: io.StringIO) -> None:
    try:
        raise ValueError("bad bar")
    except ValueError:
        get_logger("pairdesk.x").exception("ingest_failed", symbol="XAGUSD")
    (line,) = _lines(log_buffer)
    assert line["level"] == "ERROR"
    assert "ValueError: bad bar" in str(line["exception"])


def test_request_id_is_bound_into_request_logs(log_buffer: io.StringIO) -> None:
    r = TestClient(_app()).get("/ping", headers={REQUEST_ID_HEADER: "req-log-1"})
    assert r.status_code == 200
    served = [x for x in _lines(log_buffer) if x["message"] == "ping_served"]
    assert len(served) == 1
    assert served[0]["request_id"] == "req-log-1"
    assert served[0]["symbol"] == "XAUUSD"
    # the binding ends with the request
    assert "request_id" not in structlog.contextvars.get_contextvars()


def test_level_filter_and_validation() -> None:
    buf = io.StringIO()
    handler = configure_logging("ops_api", "WARN", stream=buf)
    try:
        get_logger("a").info("dropped")
        get_logger("a").warning("kept")
    finally:
        logging.getLogger().removeHandler(handler)
    assert [x["message"] for x in _lines(buf)] == ["kept"]
    with pytest.raises(ValueError, match=r"unknown log level"):
        configure_logging("ops_api", "TRACE")


def test_configure_logging_is_idempotent() -> None:
    first = configure_logging("a", stream=io.StringIO())
    second = configure_logging("a", stream=io.StringIO())
    try:
        root = logging.getLogger().handlers
        assert second in root
        assert first not in root
    finally:
        logging.getLogger().removeHandler(second)

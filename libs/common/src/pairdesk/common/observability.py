"""Prometheus metrics: HTTP instrumentation for every app plus the spec's own metrics.

:func:`instrument` adds prometheus-fastapi-instrumentator (``http_requests_total``,
``http_request_duration_seconds``...) and an unauthenticated ``GET /metrics`` (DESIGN.md §5/§7).

The spec metrics are module-level ``prometheus_client`` objects on the default registry, each
defined exactly once (importing this module registers them; defining them again would raise
"Duplicated timeseries"). Names are verbatim from the specs:

* spec 004 §監視・運用 (data pipeline): ``data_ingest_success_rate``, ``data_api_latency_ms``,
  ``data_missing_rate``, ``data_outlier_rate``, ``data_ws_reconnects_total``,
  ``data_pipeline_lag_seconds``, ``data_retry_total``, ``data_dedupe_drops_total``,
  ``data_watermark_lag_bars``, ``dq_fail_total``, ``beta_stability_std``.
* spec 003 §EnsembleSystem 監視: ``ml_prediction_duration`` (seconds), ``ml_prediction_confidence``,
  ``ml_ensemble_accuracy``, ``ml_model_performance``; the spec's ``ml_prediction_throughput``
  (predictions/s) is exported as the counter ``ml_predictions_total`` — throughput is
  ``rate(ml_predictions_total[1m])``, which a process-side gauge cannot compute correctly.

Spec 003's ``data_*`` names (``data_fetch_success_rate``...) duplicate spec 004's data-pipeline
metrics above and are not defined (004 wins where the documents disagree). Rates are fractions
in [0, 1], not percent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from types import MappingProxyType
from typing import Final

from fastapi import FastAPI
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_fastapi_instrumentator import Instrumentator, metrics

__all__ = [
    "BETA_STABILITY_STD",
    "DATA_API_LATENCY_MS",
    "DATA_DEDUPE_DROPS_TOTAL",
    "DATA_INGEST_SUCCESS_RATE",
    "DATA_MISSING_RATE",
    "DATA_OUTLIER_RATE",
    "DATA_PIPELINE_LAG_SECONDS",
    "DATA_RETRY_TOTAL",
    "DATA_WATERMARK_LAG_BARS",
    "DATA_WS_RECONNECTS_TOTAL",
    "DQ_FAIL_TOTAL",
    "METRICS_PATH",
    "ML_ENSEMBLE_ACCURACY",
    "ML_MODEL_PERFORMANCE",
    "ML_PREDICTIONS_TOTAL",
    "ML_PREDICTION_CONFIDENCE",
    "ML_PREDICTION_DURATION",
    "SERVICE_UP",
    "SPEC_METRICS",
    "instrument",
    "metrics_text",
]

METRICS_PATH: Final = "/metrics"

# --- spec 004 §監視・運用 / エラー時の振る舞い（data pipeline）v1 -----------------------------
DATA_INGEST_SUCCESS_RATE: Final = Gauge(
    "data_ingest_success_rate",
    "Fraction [0,1] of successful ingest fetches over the last run (SLO >= 0.99 daily)",
    ["source", "timeframe"],
)
DATA_API_LATENCY_MS: Final = Histogram(
    "data_api_latency_ms",
    "Market-data REST/WS request latency in milliseconds",
    ["source", "transport"],
    buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000),
)
DATA_MISSING_RATE: Final = Gauge(
    "data_missing_rate",
    "Fraction [0,1] of missing bars in the last DQ window (quarantine above 0.05)",
    ["symbol", "timeframe"],
)
DATA_OUTLIER_RATE: Final = Gauge(
    "data_outlier_rate",
    "Fraction [0,1] of outlier bars in the last DQ window (quarantine above 0.08)",
    ["symbol", "timeframe"],
)
DATA_WS_RECONNECTS_TOTAL: Final = Counter(
    "data_ws_reconnects_total",
    "WebSocket reconnects to the market-data source",
    ["source"],
)
DATA_PIPELINE_LAG_SECONDS: Final = Gauge(
    "data_pipeline_lag_seconds",
    "Delay in seconds between bar close and its arrival in canonical storage",
    ["symbol", "timeframe"],
)
DATA_RETRY_TOTAL: Final = Counter(
    "data_retry_total",
    "Retried data-source operations (exponential backoff with jitter)",
    ["source", "operation"],
)
DATA_DEDUPE_DROPS_TOTAL: Final = Counter(
    "data_dedupe_drops_total",
    "Bars dropped as duplicates of (source, symbol, timeframe, ts)",
    ["source", "symbol", "timeframe"],
)
DATA_WATERMARK_LAG_BARS: Final = Gauge(
    "data_watermark_lag_bars",
    "Bars between the durable watermark last_ts and the latest closed bar",
    ["source", "symbol", "timeframe"],
)
DQ_FAIL_TOTAL: Final = Counter(
    "dq_fail_total",
    "Data-quality check failures",
    ["check", "symbol", "timeframe"],
)
BETA_STABILITY_STD: Final = Gauge(
    "beta_stability_std",
    "Rolling standard deviation of the hedge ratio beta (feature beta_stability)",
    ["pair_id", "timeframe"],
)

# --- spec 003 §EnsembleSystem 監視 ------------------------------------------------------------
ML_PREDICTION_DURATION: Final = Histogram(
    "ml_prediction_duration",
    "Model inference time per closed bar in seconds (target p95 < 0.5 s)",
    ["model", "model_version"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ML_PREDICTION_CONFIDENCE: Final = Histogram(
    "ml_prediction_confidence",
    "Calibrated model output (AI1 return_prob, AI2 risk_score) in [0,1]",
    ["model", "model_version"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
ML_ENSEMBLE_ACCURACY: Final = Gauge(
    "ml_ensemble_accuracy",
    "Out-of-sample accuracy [0,1] of the active model on recently labelled bars",
    ["model", "model_version"],
)
ML_MODEL_PERFORMANCE: Final = Gauge(
    "ml_model_performance",
    "Model evaluation metric value (metric=auc|brier|pr_auc|ece|f1_weighted|recall)",
    ["model", "model_version", "metric"],
)
ML_PREDICTIONS_TOTAL: Final = Counter(
    "ml_predictions_total",
    "Predictions served; throughput (spec 003 ml_prediction_throughput) = rate() of this",
    ["model", "model_version"],
)

SERVICE_UP: Final = Gauge(
    "pairdesk_service_up", "1 while the service's app is instrumented", ["service"]
)

#: Exposition name -> metric object, for every spec metric above.
SPEC_METRICS: Final[Mapping[str, MetricWrapperBase]] = MappingProxyType(
    {
        "data_ingest_success_rate": DATA_INGEST_SUCCESS_RATE,
        "data_api_latency_ms": DATA_API_LATENCY_MS,
        "data_missing_rate": DATA_MISSING_RATE,
        "data_outlier_rate": DATA_OUTLIER_RATE,
        "data_ws_reconnects_total": DATA_WS_RECONNECTS_TOTAL,
        "data_pipeline_lag_seconds": DATA_PIPELINE_LAG_SECONDS,
        "data_retry_total": DATA_RETRY_TOTAL,
        "data_dedupe_drops_total": DATA_DEDUPE_DROPS_TOTAL,
        "data_watermark_lag_bars": DATA_WATERMARK_LAG_BARS,
        "dq_fail_total": DQ_FAIL_TOTAL,
        "beta_stability_std": BETA_STABILITY_STD,
        "ml_prediction_duration": ML_PREDICTION_DURATION,
        "ml_prediction_confidence": ML_PREDICTION_CONFIDENCE,
        "ml_ensemble_accuracy": ML_ENSEMBLE_ACCURACY,
        "ml_model_performance": ML_MODEL_PERFORMANCE,
        "ml_predictions_total": ML_PREDICTIONS_TOTAL,
    }
)


@cache
def _request_metrics() -> Callable[[metrics.Info], None]:
    """The default HTTP request metrics (``http_requests_total``, latency histograms...).

    Built once per process: the collectors register on the global registry only once, so a
    second app in the same process (tests, an embedded sub-app) must reuse this closure, or its
    requests would silently not be counted.
    """
    fn = metrics.default()
    if fn is None:  # pragma: no cover - the library returns None only on a duplicate registry
        raise RuntimeError("HTTP request metrics are already registered by another instrumentator")
    return fn


def instrument(app: FastAPI, service: str) -> Instrumentator:
    """Add HTTP request metrics and an unauthenticated ``GET /metrics`` to ``app``.

    Call in the app factory after :func:`pairdesk.common.api.install_error_handlers` so the
    request counter also sees the 500s produced by the envelope middleware. ``/metrics`` itself
    is not counted and is hidden from the OpenAPI schema.

    Parameters
    ----------
    app : FastAPI
        Application to instrument.
    service : str
        Service name; sets ``pairdesk_service_up{service=...}`` to 1.

    Returns
    -------
    Instrumentator
        The instrumentator (default metrics on the default registry).
    """
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_ignore_untemplated=True,
        excluded_handlers=[METRICS_PATH],
    )
    instrumentator.add(_request_metrics())
    instrumentator.instrument(app).expose(
        app, endpoint=METRICS_PATH, include_in_schema=False, should_gzip=False
    )
    SERVICE_UP.labels(service=service).set(1)
    app.state.service_name = service
    return instrumentator


def metrics_text(registry: CollectorRegistry = REGISTRY) -> str:
    """Return the Prometheus text exposition of ``registry`` (default: the global one)."""
    return generate_latest(registry).decode("utf-8")

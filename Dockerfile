# syntax=docker/dockerfile:1.7
#
# One image for every Pairdesk process (DESIGN.md §3 "Deployed"): the six FastAPI services, the
# Celery worker and the one-shot migration. The container's command picks the process:
#
#   python -m uvicorn --factory pairdesk.<name>.main:create_app --host 0.0.0.0 --port <p>
#   celery -A pairdesk.backtest.worker worker -Q backtest --concurrency=1
#   python -c "from pairdesk.common.migrate import upgrade; import os; upgrade(os.environ['POSTGRES_URL'])"
#
# Build:  docker build -t pairdesk:local .
# The workspace is installed from uv.lock exactly (`uv sync --frozen --no-dev`), as editable
# workspace members under /app so that the repository-relative paths the code resolves
# (migrations/, config/) exist at the same place in the runtime stage. The code is owned by
# root and read-only for the unprivileged runtime user (uid 10001); the only writable places are
# /var/lib/pairdesk (data volume) and /tmp.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

COPY --from=uv /uv /uvx /usr/local/bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# 1) Third-party dependencies only: this layer is rebuilt only when the lock file or a
#    workspace manifest changes. Every workspace member's pyproject.toml must be listed here
#    (tests/deploy checks it).
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY libs/quant/pyproject.toml libs/quant/pyproject.toml
COPY libs/research/pyproject.toml libs/research/pyproject.toml
COPY services/analytics/pyproject.toml services/analytics/pyproject.toml
COPY services/backtest/pyproject.toml services/backtest/pyproject.toml
COPY services/config_api/pyproject.toml services/config_api/pyproject.toml
COPY services/core_inference/pyproject.toml services/core_inference/pyproject.toml
COPY services/data_pipeline/pyproject.toml services/data_pipeline/pyproject.toml
COPY services/ops_api/pyproject.toml services/ops_api/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace

# 2) The workspace packages and the files they read at run time.
COPY libs/ libs/
COPY services/ services/
COPY migrations/ migrations/
COPY config/ config/
COPY data/ data/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
 && /app/.venv/bin/python -m compileall -q libs services migrations

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# libgomp1: OpenMP runtime of the LightGBM wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pairdesk \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/pairdesk --create-home \
      --shell /usr/sbin/nologin pairdesk \
 && mkdir -p /var/lib/pairdesk/store /var/lib/pairdesk/bt_out /var/lib/pairdesk/models \
      /var/lib/pairdesk/drop /var/lib/pairdesk/archive \
 && chown -R 10001:10001 /var/lib/pairdesk

COPY --from=builder /app /app

# Non-secret defaults; POSTGRES_URL, REDIS_URL and PAIRDESK_JWT_SECRET come from the deployment
# (compose environment / Kubernetes Secret), never from the image.
ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TZ=UTC \
    SERVICE_ENV=prod \
    LOG_LEVEL=INFO \
    PAIRDESK_MIGRATIONS_DIR=/app/migrations \
    PAIRDESK_STORE_DIR=/var/lib/pairdesk/store \
    PAIRDESK_DROP_DIRS=/app/data:/var/lib/pairdesk/drop \
    PAIRDESK_BT_OUT_DIR=/var/lib/pairdesk/bt_out \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
USER 10001:10001
EXPOSE 8001 8002 8003 8004 8005 8006

CMD ["pairdesk", "--help"]

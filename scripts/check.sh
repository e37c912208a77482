#!/usr/bin/env bash
# The project's one test command (README): lint, types, architecture contracts, tests.
# Run through uv so the locked environment is used:  python3 -m uv run bash scripts/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"; ruff check .
echo "== mypy (libs, services)"; mypy libs/quant/src libs/common/src libs/research/src services/*/src
echo "== import-linter"; lint-imports
# --dist loadfile: a module's tests share module-scoped apps and state, and run on one worker
echo "== pytest"; pytest -n 2 --dist loadfile "$@"

#!/usr/bin/env bash
# Set up (with the dev extras and PostgreSQL) and run every check CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/python -m protos.generate --check
.venv/bin/python -m pytest -q "$@"

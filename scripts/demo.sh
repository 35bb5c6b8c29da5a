#!/usr/bin/env bash
# Set up and run the main job on the embedded defaults: ingest the sample corpus into SQLite under
# ./albatross-data, start the gRPC searcher on loopback, and print the answers to a few queries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/albatross demo "$@"

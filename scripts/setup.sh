#!/usr/bin/env bash
# Create .venv and install Albatross into it. `--dev` adds the test tools, a PostgreSQL server and
# the headless Chromium (with its WebDriver) that the search page test drives.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# torch first and pinned to the CPU wheel of 2.13.0: a bare `torch` from PyPI would pull a
# multi-GB CUDA build (where the index has no CPU wheel, point pip at PyTorch's CPU wheel index).
pip install torch==2.13.0

if [ "$dev" = 1 ]; then
    pip install -e ".[dev]"
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null; then
        echo "installing the PostgreSQL server the integration tests start" >&2
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    fi
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        echo "installing the headless Chromium and chromedriver the search page test drives" >&2
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
else
    pip install -e .
fi

#!/usr/bin/env bash
# The project's test command: set up the venv (incl. the pinned sglang on CPU), lint, run tests.
#   scripts/test.sh [pytest args...]
# GPU tests are marked `gpu` and skip themselves without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

# --sglang: the adapter tests run on the real pinned sglang (CPU build of torch, patched).
# --cluster: the router tests start the real smg binary against fake workers.
bash scripts/setup.sh --sglang --cluster

echo "==> ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

echo "==> pytest"
"$VENV/bin/python" -m pytest -q "$@"

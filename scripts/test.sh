#!/usr/bin/env bash
# The project's test command: set up the venv (incl. the pinned sglang on CPU), lint, run tests.
#   scripts/test.sh [pytest args...]
# GPU tests are marked `gpu` and skip themselves without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

setup_args=()
[ -f scripts/install_sglang_cpu.sh ] && setup_args+=(--sglang)
bash scripts/setup.sh "${setup_args[@]}"

echo "==> ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

echo "==> pytest"
"$VENV/bin/python" -m pytest -q "$@"

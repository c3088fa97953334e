#!/usr/bin/env bash
# Cluster entry: N SGLang replicas behind a router, a trace replayed against the router.
# Runs `python -m fairbatching_sglang.harness.cluster_deploy` from the project venv with all
# arguments passed on (see harness/CLUSTER.md and --help). The Python side traps SIGINT/SIGTERM/
# SIGHUP and stops every replica and the router (each in its own process group) on any exit.
#
#   harness/run_cluster.sh --trace T --model M --venv .venv-sglang --replicas 4 \
#       --router fairbatching-admission|smg-least-load|smg-power-of-two|smg-round-robin|smg-cache-aware \
#       [--arm fairbatching|sglang-mixed|sglang-default] [--tp 2 | --gpus 0,1,2,3] \
#       [--rates 1,2] [--out DIR] [--dry-run]
#   harness/run_cluster.sh --backend emulated --trace T --replicas 2 [--device-model SPEC] ...
#       (real SGLang replicas on CPU with emulated devices; no --model, no GPUs)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${FAIRBATCHING_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "run_cluster: $PY not found; create the venv first (scripts/setup.sh)" >&2; exit 1; }
cd "$ROOT"
exec "$PY" -m fairbatching_sglang.harness.cluster_deploy "$@"

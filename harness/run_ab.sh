#!/usr/bin/env bash
# A/B harness entry: runs `fairbatching ab` from the project venv with all arguments passed on.
#
#   harness/run_ab.sh --trace TRACE [--backend sim|gpu|emulated|auto] [--arms a,b,c] [--out DIR] ...
#
# Simulated (default where nvidia-smi is absent):
#   harness/run_ab.sh --trace traces/synthetic_conv_10min.csv --out runs/ab-demo
# The real SGLang server on CPU with an emulated device (this venv's patched sglang):
#   harness/run_ab.sh --backend emulated --trace T --start 0 --duration 10 \
#       --arms sglang-mixed,fairbatching-ft --rates 1 --no-capacity [--device-model SPEC]
# Measured (two venvs, stock and patched SGLang):
#   harness/run_ab.sh --backend gpu --trace T --model meta-llama/Llama-3.1-8B-Instruct \
#       --stock-venv .venv-stock --patched-venv .venv-patched --rates 1,2 --no-capacity
# or one venv whose sglang is patched/reverted per arm (scripts/apply_patches.sh):
#       --venv .venv-sglang
# See harness/README.md and `fairbatching ab --help` for every option.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FB="$ROOT/.venv/bin/fairbatching"
[[ -x "$FB" ]] || { echo "run_ab: $FB not found; create the venv first (scripts/setup)" >&2; exit 1; }
exec "$FB" ab "$@"

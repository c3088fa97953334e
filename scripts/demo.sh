#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, then an A/B comparison of SGLang's default
# (prefill-first), SGLang --enable-mixed-chunk, Sarathi and FairBatching on the shipped bursty
# code-like trace, in the simulator (no GPU needed), with a capacity search per arm.
#   scripts/demo.sh [extra `fairbatching ab` options]
# The report lands in runs/demo/report.md (tables, CSV and PNG plots beside it); runs/demo is the
# demo's own directory, so a rerun replaces it (--force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash harness/run_ab.sh --backend sim \
  --trace traces/synthetic_code_10min.csv \
  --arms sglang-default,sglang-mixed,sarathi,fairbatching,fairbatching-arrival \
  --slo-ttft-ms 1000 --slo-tpot-ms 50 \
  --out runs/demo --force "$@"
echo
echo "==> report: runs/demo/report.md"

#!/usr/bin/env bash
# Regenerate the simulated reports under results/ (see results/README.md).
# Records (*.parquet) are deleted after each report is built: they are large and the command
# in each report regenerates them exactly (the simulator is deterministic).
#
#   harness/publish_sim.sh [conv|code|mooncake|reasoning ...]   (default: all four)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TRACES="${TRACES_DIR:-$ROOT/../shared/traces}"
ARMS="sglang-default,sglang-mixed,sarathi,fairbatching,fairbatching-arrival,fairbatching-open"
# The realistic device (what steps really cost: 5% slower than the profile the planner
# believes, 3% noise, 0.2 ms jitter), never the planner's own model; SGLang's default overlap
# loop. Tuned stock settings per trace are in results/robustness (scripts/bench_robustness.py).
COMMON=(--backend sim --arms "$ARMS" --profile h100-llama3.1-8b --device-model realistic
        --sim-overlap-schedule --rel-tol 0.02 --max-probes 14)

run() {  # name trace ttft_ms title
  local out="$ROOT/results/sim-$1"
  rm -rf "$out"
  "$ROOT/harness/run_ab.sh" --trace "$2" --out "$out" --slo-ttft-ms "$3" --slo-tpot-ms 50 \
    --title "$4" "${COMMON[@]}"
  find "$out" -name '*.parquet' -delete
}

gen() {  # preset minutes -> a generated trace (made by the project's generator, never committed)
  local f="${TMPDIR:-/tmp}/fairbatching-publish-$1-$2min.csv"
  "$ROOT/.venv/bin/fairbatching" trace generate --preset "$1" --duration-s "$(( $2 * 60 ))" \
    --seed 0 --out "$f" >&2
  echo "$f"
}

for which in "${@:-conv code mooncake reasoning}"; do
  for w in $which; do
    case "$w" in
      conv) run azure-conv "$TRACES/azure_llm_2023/AzureLLMInferenceTrace_conv.csv" 1000 \
              "SIMULATED A/B: Azure LLM 2023 conv, Llama-3.1-8B on H100 cost profile" ;;
      code) run azure-code "$TRACES/azure_llm_2023/AzureLLMInferenceTrace_code.csv" 1000 \
              "SIMULATED A/B: Azure LLM 2023 code, Llama-3.1-8B on H100 cost profile" ;;
      mooncake) run mooncake "$TRACES/mooncake_fast25/synthetic_trace.jsonl" 5000 \
              "SIMULATED A/B: Mooncake synthetic (FAST'25), Llama-3.1-8B on H100 cost profile" ;;
      reasoning) run reasoning "$(gen reasoning 20)" 1000 \
              "SIMULATED A/B: reasoning preset (20 min, seed 0), Llama-3.1-8B on H100 cost profile" ;;
      *) echo "publish_sim: unknown trace $w" >&2; exit 64 ;;
    esac
  done
done

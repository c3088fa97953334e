#!/usr/bin/env bash
# Regenerate the SIMULATED cluster capacity reports under results/ (see results/README.md).
# Every combination of replicas (4, 8) x router x scheduling arm, capacity at 90% and 99% SLO
# attainment. Azure conv: its busiest 15 minutes (20-35 min; a window keeps the publish short on
# a 2-core machine, and the peak sets the capacity anyway). Azure code: the whole trace (fewer
# requests; its bursts are the point). Both together take ~15-20 min.
# hetero: heterogeneous replicas (2 x H100 + 2 x H200 cost profiles) on the conv window, plus a
# homogeneous 4 x H200 reference (the 4 x H100 one is sim-cluster-azure-conv); ~3 min on 2 cores;
# not in the default set.
#
#   harness/publish_cluster_sim.sh [conv|code|hetero ...]   (default: conv code)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TRACES="${TRACES_DIR:-$ROOT/../shared/traces}"
FB="${FAIRBATCHING:-$ROOT/.venv/bin/fairbatching}"
ROUTING=(--routers round-robin,least-outstanding,power-of-two,least-load,admission-budget
         --fresh-routers least-load,admission-budget
         --arms sglang-default,sglang-mixed,fairbatching)
SEARCH=(--slo-ttft-ms 1000 --slo-tpot-ms 50
        --rel-tol 0.03 --max-probes 12 --targets 0.9,0.99 --jobs "${JOBS:-2}")
COMMON=(--replicas 4,8 "${ROUTING[@]}" --profile h100-llama3.1-8b "${SEARCH[@]}")
HETERO=(--replica-mix 2xh100-llama3.1-8b,2xh200-llama3.1-8b "${ROUTING[@]}" "${SEARCH[@]}")

run() {  # name trace start-rate title [window and search options]
  local out="$ROOT/results/sim-cluster-$1"
  rm -rf "$out"
  "$FB" cluster capacity --trace "$2" --out "$out" --start-rate "$3" --title "$4" "${@:5}"
}

for which in "${@:-conv code}"; do
  for w in $which; do
    case "$w" in
      conv) run azure-conv "$TRACES/azure_llm_2023/AzureLLMInferenceTrace_conv.csv" 2.0 \
              "SIMULATED cluster capacity: Azure LLM 2023 conv (20-35 min), Llama-3.1-8B on H100 cost profile" \
              --start 1200 --duration 900 "${COMMON[@]}" ;;
      code) run azure-code "$TRACES/azure_llm_2023/AzureLLMInferenceTrace_code.csv" 0.5 \
              "SIMULATED cluster capacity: Azure LLM 2023 code (whole trace), Llama-3.1-8B on H100 cost profile" \
              "${COMMON[@]}" ;;
      hetero) run hetero-azure-conv "$TRACES/azure_llm_2023/AzureLLMInferenceTrace_conv.csv" 2.0 \
              "SIMULATED cluster capacity, heterogeneous replicas (2x H100 + 2x H200, Llama-3.1-8B): Azure LLM 2023 conv (20-35 min)" \
              --start 1200 --duration 900 "${HETERO[@]}"
            out="$ROOT/results/sim-cluster-h200-azure-conv"
            rm -rf "$out"
            "$FB" cluster capacity --trace "$TRACES/azure_llm_2023/AzureLLMInferenceTrace_conv.csv" \
              --out "$out" --start-rate 2.0 --start 1200 --duration 900 \
              --title "SIMULATED cluster capacity (reference for hetero): 4x H200, Llama-3.1-8B, Azure LLM 2023 conv (20-35 min)" \
              --replicas 4 --routers round-robin,least-outstanding,admission-budget \
              --arms sglang-mixed,fairbatching --profile h200-llama3.1-8b "${SEARCH[@]}" ;;
      *) echo "publish_cluster_sim: unknown trace $w" >&2; exit 64 ;;
    esac
  done
done

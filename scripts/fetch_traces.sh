#!/usr/bin/env bash
# Download the public LLM serving traces this project can replay (see traces/README.md for
# licences and citations). Data goes to TARGET_DIR, outside the repository by default, and is
# never committed. Offline or partial: reports what it could not get; exits non-zero only when
# nothing at all could be fetched.
#
#   scripts/fetch_traces.sh [--small] [TARGET_DIR]
#     --small   only the small files (Azure 2023 1-hour traces, Mooncake FAST'25 traces)
set -u

small=0
if [[ "${1:-}" == "--small" ]]; then small=1; shift; fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,10p' "$0"; exit 0
fi
target="${1:-${FAIRBATCHING_TRACES_DIR:-$HOME/.cache/fairbatching/traces}}"

AZ_RAW="https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data"
AZ_BLOB="https://azurepublicdatasettraces.blob.core.windows.net/azurellminfererencetrace"
MC_RAW="https://raw.githubusercontent.com/kvcache-ai/Mooncake/main/FAST25-release"
BG_REL="https://github.com/HPMLL/BurstGPT/releases/download/v1.1"

# subdir|url   (small files first)
files=(
  "azure_llm_2023|$AZ_RAW/AzureLLMInferenceTrace_conv.csv"
  "azure_llm_2023|$AZ_RAW/AzureLLMInferenceTrace_code.csv"
  "mooncake_fast25|$MC_RAW/traces/conversation_trace.jsonl"
  "mooncake_fast25|$MC_RAW/traces/toolagent_trace.jsonl"
  "mooncake_fast25|$MC_RAW/traces/synthetic_trace.jsonl"
  "mooncake_fast25|$MC_RAW/arxiv-trace/mooncake_trace.jsonl"
)
if [[ $small -eq 0 ]]; then
  files+=(
    "azure_llm_2024|$AZ_BLOB/AzureLLMInferenceTrace_code_1week.csv"
    "azure_llm_2024|$AZ_BLOB/AzureLLMInferenceTrace_conv_1week.csv"
    "burstgpt|$BG_REL/BurstGPT_without_fails_1.csv"
    "burstgpt|$BG_REL/BurstGPT_without_fails_2.csv"
    "burstgpt|$BG_REL/BurstGPT_1.csv"
    "burstgpt|$BG_REL/BurstGPT_2.csv"
  )
fi

if ! command -v curl >/dev/null 2>&1; then
  echo "error: curl is required" >&2; exit 2
fi

mkdir -p "$target" || { echo "error: cannot create $target" >&2; exit 2; }
ok=0; skipped=0; failed=()
for entry in "${files[@]}"; do
  sub="${entry%%|*}"; url="${entry#*|}"; name="${url##*/}"
  dir="$target/$sub"; out="$dir/$name"
  mkdir -p "$dir"
  if [[ -s "$out" ]]; then
    echo "have     $sub/$name"; skipped=$((skipped + 1)); continue
  fi
  echo "fetching $sub/$name"
  # --connect-timeout: fail fast offline; --max-time: the 1-week files are ~1 GB
  if curl -fL --retry 2 --connect-timeout 15 --max-time 3600 -sS -o "$out.part" "$url"; then
    if head -c 64 "$out.part" | grep -q "git-lfs"; then
      # GitHub serves a Git LFS pointer instead of the data for some large files
      rm -f "$out.part"; failed+=("$sub/$name  (Git LFS pointer: clone the repository with git lfs)")
      continue
    fi
    mv "$out.part" "$out"; ok=$((ok + 1))
  else
    rm -f "$out.part"; failed+=("$sub/$name  ($url)")
  fi
done

rmdir "$target"/* 2>/dev/null  # drop subdirectories left empty by failures
echo
echo "fetched $ok, already present $skipped, failed ${#failed[@]} (target: $target)"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "could not fetch (offline, moved upstream, or blocked):"
  printf '  %s\n' "${failed[@]}"
fi
echo "licences and citations: traces/README.md (CC-BY-4.0 data requires attribution)"
if [[ $ok -eq 0 && $skipped -eq 0 ]]; then
  echo "nothing could be fetched: no network access from this machine?" >&2
  exit 1
fi
exit 0

#!/usr/bin/env bash
# GPU smoke test of the patched SGLang: a random-weight Llama-shaped model from a config (no
# download), FairBatching on, a short burst of requests with exact input/output lengths, then
# checks on /v1/loads, /metrics and the step log. Needs a CUDA GPU and a full (GPU) install:
#
#   pip install -e '.[sglang]' && scripts/apply_patches.sh     # or: apply_patches.sh --install
#   harness/gpu_smoke.sh [OUT_DIR]
#
# Exits non-zero on the first failed check; the server log is kept in OUT_DIR.
set -euo pipefail

OUT="${1:-runs/gpu_smoke}"
PORT="${PORT:-30123}"
PY="${PYTHON:-python}"
mkdir -p "$OUT/model"
OUT="$(cd "$OUT" && pwd)"

# ~0.3B-parameter Llama shape; --load-format dummy fills random weights.
cat > "$OUT/model/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1024,
 "intermediate_size": 2816, "num_attention_heads": 16, "num_key_value_heads": 8,
 "num_hidden_layers": 8, "vocab_size": 32000, "max_position_embeddings": 8192,
 "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}
JSON

"$PY" -m sglang.launch_server --model-path "$OUT/model" --load-format dummy \
  --skip-tokenizer-init --port "$PORT" --enable-metrics \
  --chunked-prefill-size 2048 --enable-fairbatching \
  --fairbatching-ttft-slo-ms 500 --fairbatching-tpot-slo-ms 30 \
  --fairbatching-step-log "$OUT/steps.jsonl" > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT

for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -50 "$OUT/server.log"; exit 1; }
  sleep 2
done

# 64 requests within ~1 s: inputs 256..4096 tokens, outputs 16..256, half with their own SLOs.
"$PY" - "$PORT" <<'PYEOF'
import asyncio, json, random, sys, time
import httpx

port = int(sys.argv[1])
rng = random.Random(0)

async def one(client, i, delay):
    await asyncio.sleep(delay)
    n_in, n_out = rng.randint(256, 4096), rng.randint(16, 256)
    params = {"max_new_tokens": n_out, "ignore_eos": True, "temperature": 0.0}
    if i % 2:
        params["custom_params"] = {"fairbatching_ttft_slo_ms": 300, "fairbatching_tpot_slo_ms": 20}
    t0 = time.perf_counter()
    r = await client.post(f"http://127.0.0.1:{port}/generate",
                          json={"input_ids": [rng.randint(3, 31999) for _ in range(n_in)],
                                "sampling_params": params})
    r.raise_for_status()
    out = r.json()
    got = len(out["output_ids"])
    assert got == n_out, (i, got, n_out)
    return time.perf_counter() - t0

async def main():
    async with httpx.AsyncClient(timeout=300) as client:
        lat = await asyncio.gather(*(one(client, i, i / 64) for i in range(64)))
        loads = (await client.get(f"http://127.0.0.1:{port}/v1/loads")).json()
    print(f"64 requests ok, e2e p50 {sorted(lat)[32]:.2f}s max {max(lat):.2f}s")
    text = json.dumps(loads)
    assert "fairbatching_prefill_admission_tokens" in text, text[:500]
    print("/v1/loads:", text[:300])

asyncio.run(main())
PYEOF

curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E "^sglang:fairbatching_" | head -20
grep -q "FairBatching enabled" "$OUT/server.log"
if grep -q "FairBatching: policy raised" "$OUT/server.log"; then
  echo "policy fallbacks in the log:"; grep -c "FairBatching:" "$OUT/server.log"; exit 1
fi
test -s "$OUT/steps.jsonl"
echo "step log: $(wc -l < "$OUT/steps.jsonl") steps in $OUT/steps.jsonl"
echo "gpu_smoke: OK"

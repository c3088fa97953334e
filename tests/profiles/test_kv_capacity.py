"""KV-capacity arithmetic and the step sampler (numpy only)."""

from __future__ import annotations

import pytest

from fairbatching_sglang.profiles.engine_prices import (
    dense_param_count,
    estimate_kv_capacity,
    kv_bytes_per_token_per_gpu,
    sample_steps,
    sglang_default_mem_fraction_static,
    step_regimes,
)

LLAMA_8B = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}


def test_llama_8b_numbers():
    assert dense_param_count(LLAMA_8B) == pytest.approx(8.03e9, rel=0.01)
    assert kv_bytes_per_token_per_gpu(LLAMA_8B, 1) == 128 * 1024
    assert kv_bytes_per_token_per_gpu(LLAMA_8B, 4) == 32 * 1024
    assert kv_bytes_per_token_per_gpu(LLAMA_8B, 16) == kv_bytes_per_token_per_gpu(LLAMA_8B, 8)
    assert sglang_default_mem_fraction_static(81559, 1) == 0.835
    kv = estimate_kv_capacity(LLAMA_8B, "h100_sxm", 1)
    assert 400_000 < kv.kv_capacity_tokens < 450_000
    assert "mem_fraction_static 0.835" in kv.note


def test_weights_too_big():
    with pytest.raises(ValueError, match="do not fit"):
        estimate_kv_capacity({**LLAMA_8B, "num_hidden_layers": 400}, "h100_sxm", 1)


def test_sampler_deterministic_and_bounded():
    a = sample_steps(300, 7, kv_capacity_tokens=200_000)
    assert a == sample_steps(300, 7, kv_capacity_tokens=200_000)
    assert a != sample_steps(300, 8, kv_capacity_tokens=200_000)
    for s in a:
        assert s.num_prefill_tokens + s.num_decode_reqs > 0
        assert s.num_prefill_tokens <= 16384 and s.num_decode_reqs <= 1024
        assert all(k <= 65536 for _, k in s.chunks)
        assert s.decode_kv_tokens + sum(c + k for c, k in s.chunks) <= 200_000
    kinds = {(bool(s.chunks), bool(s.num_decode_reqs)) for s in a}
    assert kinds == {(True, False), (False, True), (True, True)}
    # The regimes the issue #13 refit added are all represented.
    regimes = step_regimes(a)
    assert sum(regimes["prefill_only"] | regimes["decode_only"] | regimes["mixed"]) == len(a)
    assert regimes["many_short_decodes"].sum() >= 10
    assert regimes["long_prefix_chunk"].sum() >= 10
    narrow = sample_steps(200, 7, max_prefill_tokens=512, max_decode_reqs=64)
    assert all(s.num_prefill_tokens <= 512 and s.num_decode_reqs <= 64 for s in narrow)

"""Every shipped profile loads and is plausible."""

from __future__ import annotations

import pytest

from fairbatching_sglang.profiles import DEFAULT_PROFILE, list_profiles, load_profile

EXPECTED = {
    "h100-llama3.1-8b",
    "h200-llama3.1-8b",
    "h100-qwen3-8b",
    "h100-qwen3-32b-tp2",
    "h100-llama3.1-70b-tp4",
}


def test_expected_profiles_shipped():
    assert set(list_profiles()) >= EXPECTED
    assert DEFAULT_PROFILE in list_profiles()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_sane(name):
    prof = load_profile(name)
    m = prof.cost_model
    assert prof.name == name and prof.sglang_version == "0.5.14"
    assert 50_000 < prof.kv_capacity_tokens < 2_000_000
    assert m.c5_ms_per_token_below_knee <= m.c1_ms_per_token
    # The engine charges a fixed context-attention cost to steps with a prefill.
    assert m.c6_ms_if_prefill > 0
    assert m.predict_raw_ms(64, 64 * 1024, 1.0) > m.predict_raw_ms(64, 64 * 1024, 0.0)
    # Monotone in every step term.
    base = m.predict_raw_ms(256, 64 * 1024, 256 * 128.0)
    assert m.predict_raw_ms(512, 64 * 1024, 256 * 128.0) > base
    assert m.predict_raw_ms(256, 128 * 1024, 256 * 128.0) >= base
    assert m.predict_raw_ms(256, 64 * 1024, 256 * 4096.0) >= base
    # Reference points: engine prices recorded, the fit within 10% of each.
    refs = prof.extra["reference_points"]
    assert set(refs) == {"prefill_1x2048", "decode_64_at_kv_1024", "chunk_512_plus_64_decodes"}
    for val in refs.values():
        assert 1.0 < val["engine_ms"] < 1000.0
        assert val["predicted_ms"] == pytest.approx(val["engine_ms"], rel=0.10)
    assert refs["prefill_1x2048"]["engine_ms"] > refs["chunk_512_plus_64_decodes"]["engine_ms"]
    assert (
        refs["chunk_512_plus_64_decodes"]["engine_ms"] > refs["decode_64_at_kv_1024"]["engine_ms"]
    )
    fit = prof.extra["fit"]
    assert fit["num_samples"] >= 4000
    # The fit target (issue #5), on the held-out half against the engine's own prices.
    assert fit["mean_rel_err"] <= 0.03 and fit["p90_rel_err"] <= 0.06
    assert fit["num_held_out"] >= 2000 and "held-out" in fit["error_set"]
    assert "scripts/fit_cost_profile.py" in prof.extra["command"]
    assert len(prof.extra["engine_samples"]["rows"]) > 50


def test_bigger_models_are_slower():
    small = load_profile("h100-llama3.1-8b").extra["reference_points_ms"]
    big = load_profile("h100-llama3.1-70b-tp4").extra["reference_points_ms"]
    for key in small:
        assert big[key] > small[key]
    h200 = load_profile("h200-llama3.1-8b").extra["reference_points_ms"]
    assert h200["decode_64_at_kv_1024"] < small["decode_64_at_kv_1024"]  # more bandwidth
    assert (
        load_profile("h200-llama3.1-8b").kv_capacity_tokens
        > load_profile("h100-llama3.1-8b").kv_capacity_tokens
    )

"""Pricing with aiconfigurator-core's engine; skipped when it is not installed."""

from __future__ import annotations

import pytest

pytest.importorskip("aiconfigurator_core")

from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.profiles.engine_prices import (
    REFERENCE_STEPS,
    EnginePricer,
    SampledStep,
)


@pytest.fixture(scope="module")
def pricer():
    return EnginePricer.compile("meta-llama/Meta-Llama-3.1-8B", "h100_sxm", 1)


def test_composition_matches_engine_whole_step_methods(pricer):
    assert pricer.price(SampledStep(((2048, 0),), 0, 0)) == pytest.approx(
        pricer.prefill_latency(2048), rel=1e-9
    )
    assert pricer.price(SampledStep(((512, 512),), 0, 0)) == pytest.approx(
        pricer.prefill_latency(1024, 512), rel=1e-9
    )
    assert pricer.price(SampledStep((), 64, 64 * 1026)) == pytest.approx(
        pricer.decode_latency(64, 1026), rel=1e-9
    )


def test_shipped_reference_points_match_engine(pricer):
    refs = load_profile("h100-llama3.1-8b").extra["reference_points_ms"]
    for name, step in REFERENCE_STEPS.items():
        assert pricer.price(step) == pytest.approx(refs[name], abs=0.01)

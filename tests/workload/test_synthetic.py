"""Generator determinism, presets against their targets, and fitting a spec back."""

from __future__ import annotations

import numpy as np
import pytest

from fairbatching_sglang.workload import (
    PRESETS,
    LognormalLengths,
    QuantileLengths,
    compute_stats,
    fit_spec,
    generate,
)


def test_deterministic_in_seed():
    a = generate(PRESETS["code"], 300, seed=3)
    b = generate(PRESETS["code"], 300, seed=3)
    c = generate(PRESETS["code"], 300, seed=4)
    assert a.df.equals(b.df)
    assert not a.df.equals(c.df)


def test_conv_preset_matches_targets():
    s = compute_stats(generate(PRESETS["conv"], 3600, seed=0))
    assert s.rate_rps == pytest.approx(5.5, rel=0.05)
    assert 0.9 < s.ia_cv < 1.3  # near-Poisson
    assert s.input_pcts["p50"] == pytest.approx(1020, rel=0.1)
    assert s.input_pcts["p99"] == pytest.approx(4142, rel=0.1)
    assert s.output_pcts["p50"] == pytest.approx(129, rel=0.1)
    assert s.output_pcts["p99"] == pytest.approx(601, rel=0.1)


def test_code_preset_matches_targets():
    stats = [compute_stats(generate(PRESETS["code"], 3600, seed=s)) for s in range(4)]
    assert np.mean([s.rate_rps for s in stats]) == pytest.approx(2.6, rel=0.2)
    assert np.mean([s.peak_1s_over_mean for s in stats]) > 15  # very bursty
    assert np.mean([s.per_second_cv for s in stats]) > 1.8
    s = stats[0]
    assert s.input_pcts["p50"] == pytest.approx(1469, rel=0.1)
    assert s.input_pcts["p99"] == pytest.approx(7436, rel=0.05)
    assert s.output_pcts["p50"] == pytest.approx(13, abs=2)
    assert s.output_pcts["p99"] == pytest.approx(251, rel=0.2)


def test_rate_override_and_max_context():
    from dataclasses import replace

    spec = replace(PRESETS["conv"].with_rate(20.0), max_context=2048)
    t = generate(spec, 600, seed=0)
    assert t.mean_rate_rps == pytest.approx(20.0, rel=0.05)
    assert np.all(t.input_tokens + t.output_tokens <= 2048)


def test_lognormal_lengths():
    d = LognormalLengths.from_p50_p99(1000, 4000, max_tokens=8000)
    x = d.sample(np.random.default_rng(0), 100_000)
    assert np.percentile(x, 50) == pytest.approx(1000, rel=0.03)
    assert np.percentile(x, 99) == pytest.approx(4000, rel=0.05)
    assert x.max() <= 8000 and x.min() >= 1


def test_quantile_lengths_reproduce_knots():
    rng = np.random.default_rng(1)
    data = np.rint(rng.lognormal(5, 1.2, 20_000)).clip(1)
    d = QuantileLengths.fit(data)
    x = d.sample(np.random.default_rng(2), 50_000)
    for p in (10, 50, 90, 99):
        assert np.percentile(x, p) == pytest.approx(np.percentile(data, p), rel=0.1)


def test_fit_spec_roundtrip_bursty_and_smooth():
    code = generate(PRESETS["code"], 3600, seed=1)
    spec = fit_spec(code)
    assert spec.arrival == "onoff"
    again = compute_stats(generate(spec, 3600, seed=2))
    assert again.rate_rps == pytest.approx(code.mean_rate_rps, rel=0.3)
    assert again.peak_1s_over_mean > 8
    conv = generate(PRESETS["conv"], 1800, seed=1)
    spec = fit_spec(conv)
    assert spec.arrival == "gamma" and spec.cv == pytest.approx(1.09, abs=0.1)
    assert spec.rate_rps == pytest.approx(conv.mean_rate_rps)

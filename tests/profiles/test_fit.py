"""The hinge fitter on synthetic data (no aiconfigurator-core needed)."""

from __future__ import annotations

import numpy as np
import pytest

from fairbatching_sglang.core.cost_model import HingeCostModel
from fairbatching_sglang.profiles.fit import (
    StepSamples,
    constrained_lsq,
    fit_hinge,
    fit_overhead_only,
    predict,
    relative_errors,
    rounded_coefficients,
)
from tests.synthetic_cost import KNOWN_MODEL

TRUE = KNOWN_MODEL


def synthetic(model: HingeCostModel, n: int, seed: int, noise: float) -> StepSamples:
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(n) < 0.6, np.exp(rng.uniform(0, np.log(8192), n)).round(), 0)
    b = np.where(rng.random(n) < 0.6, np.exp(rng.uniform(0, np.log(512), n)).round(), 0)
    b = np.where(p + b == 0, 1, b)
    s = b * np.exp(rng.uniform(np.log(16), np.log(16384), n)).round()
    k = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 16384, n))
    q = p * (k + p / 2)
    clean = StepSamples(p, b, s, q, np.ones(n))
    ms = predict(model, clean) * (1 + noise * rng.standard_normal(n))
    return StepSamples(p, b, s, q, ms)


def test_recovers_known_coefficients_from_noisy_steps():
    train = synthetic(TRUE, 3000, 1, noise=0.02)
    held = synthetic(TRUE, 1000, 2, noise=0.0)
    result = fit_hinge(train, held)
    m = result.cost_model
    assert m.c1_ms_per_token == pytest.approx(TRUE.c1_ms_per_token, rel=0.03)
    assert m.c3_ms_per_kv_token == pytest.approx(TRUE.c3_ms_per_kv_token, rel=0.05)
    assert m.c4_ms_per_attn_unit == pytest.approx(TRUE.c4_ms_per_attn_unit, rel=0.05)
    assert m.c0_ms == pytest.approx(TRUE.c0_ms, rel=0.05)
    assert m.knee_tokens == pytest.approx(TRUE.knee_tokens, abs=40)
    assert result.held_out is not None and result.held_out.mean_rel_err < 0.01


def test_exact_data_fits_exactly():
    data = synthetic(TRUE, 800, 3, noise=0.0)
    result = fit_hinge(data, knee_grid=[0, 200, 448, 1000])
    assert result.train.max_rel_err < 1e-6
    assert result.cost_model.knee_tokens == 448


def test_constraint_c5_le_c1_enforced():
    # Data generated with a steep hinge (c5 > c1) must still give a valid model.
    rng = np.random.default_rng(0)
    n = rng.integers(1, 2000, 500).astype(float)
    ms = 1.0 + 0.01 * n + 0.05 * np.maximum(0, 600 - n)
    data = StepSamples(n, np.zeros(500), np.zeros(500), np.zeros(500), ms)
    m = fit_hinge(data).cost_model
    assert m.c5_ms_per_token_below_knee <= m.c1_ms_per_token


def test_constrained_lsq_nonnegative():
    rng = np.random.default_rng(5)
    x = np.abs(rng.standard_normal((100, 5)))
    y = x @ np.array([1.0, 2.0, -0.5, 0.3, 3.0])  # infeasible truth
    coef, _ = constrained_lsq(x, y)
    assert np.all(coef >= 0)
    assert coef[4] <= coef[1] + 1e-12


def test_fit_rejects_bad_input():
    bad = StepSamples.from_rows([(10, 0, 0, 50.0, -1.0)] * 10)
    with pytest.raises(ValueError, match="> 0"):
        fit_hinge(bad)
    with pytest.raises(ValueError, match="at least 5"):
        fit_hinge(StepSamples.from_rows([(10, 0, 0, 50.0, 1.0)]))


def test_overhead_only_fit_and_rounding():
    data = synthetic(TRUE.with_overhead(0.7), 500, 4, noise=0.0)
    m = fit_overhead_only(TRUE, data)
    assert m.overhead_ms == pytest.approx(0.7, abs=1e-6)
    assert relative_errors(m, data).max_rel_err < 1e-9
    coeffs = rounded_coefficients(TRUE)
    assert HingeCostModel.from_dict(coeffs).knee_tokens == 448


def test_split_is_deterministic():
    data = synthetic(TRUE, 100, 6, noise=0.0)
    a1, b1 = data.split_half(3)
    a2, b2 = data.split_half(3)
    assert np.array_equal(a1.step_ms, a2.step_ms) and np.array_equal(b1.step_ms, b2.step_ms)
    assert len(a1) + len(b1) == 100

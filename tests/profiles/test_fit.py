"""The hinge fitter on synthetic data (no aiconfigurator-core needed)."""

from __future__ import annotations

import itertools
from dataclasses import replace

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
    assert m.c6_ms_if_prefill == pytest.approx(TRUE.c6_ms_if_prefill, rel=0.1)
    assert m.c7_ms_per_token_above_knee2 == pytest.approx(TRUE.c7_ms_per_token_above_knee2, rel=0.1)
    assert m.knee_tokens == pytest.approx(TRUE.knee_tokens, abs=40)
    assert m.knee2_tokens == pytest.approx(TRUE.knee2_tokens, rel=0.1)
    assert result.held_out is not None and result.held_out.mean_rel_err < 0.01


def test_recovers_per_decode_request_cost():
    truth = replace(TRUE, c2_ms_per_decode_req=0.006)
    train = synthetic(truth, 3000, 11, noise=0.01)
    held = synthetic(truth, 1000, 12, noise=0.0)
    result = fit_hinge(train, held)
    assert result.cost_model.c2_ms_per_decode_req == pytest.approx(0.006, rel=0.1)
    assert result.cost_model.c1_ms_per_token == pytest.approx(TRUE.c1_ms_per_token, rel=0.03)
    assert result.held_out is not None and result.held_out.mean_rel_err < 0.01
    # fit_c2=False: the pre-c2 form, which cannot express it.
    old = fit_hinge(train, held, fit_c2=False)
    assert old.cost_model.c2_ms_per_decode_req == 0.0
    assert old.held_out is not None and old.held_out.mean_rel_err > result.held_out.mean_rel_err
    # Without any prefill token B is n: c2 is not identifiable and stays 0.
    decode_only = train.subset(np.flatnonzero(train.num_prefill_tokens == 0))
    assert fit_hinge(decode_only).cost_model.c2_ms_per_decode_req == 0.0


def test_exact_data_fits_exactly():
    data = synthetic(TRUE, 800, 3, noise=0.0)
    result = fit_hinge(data, knee_grid=[0, 200, 448, 1000], knee2_grid=[1024, 2048, 4096])
    assert result.train.max_rel_err < 1e-6
    m = result.cost_model
    assert (m.knee_tokens, m.knee2_tokens) == (448, 2048)
    assert m.c6_ms_if_prefill == pytest.approx(TRUE.c6_ms_if_prefill, rel=1e-6)


def test_single_hinge_data_gives_no_second_hinge_and_no_prefill_cost():
    truth = replace(TRUE, c6_ms_if_prefill=0.0, c7_ms_per_token_above_knee2=0.0, knee2_tokens=0)
    m = fit_hinge(synthetic(truth, 800, 7, noise=0.0), knee_grid=[0, 200, 448, 1000]).cost_model
    assert m.c7_ms_per_token_above_knee2 < 1e-7 and m.c6_ms_if_prefill < 1e-6
    assert m.c1_ms_per_token == pytest.approx(truth.c1_ms_per_token, rel=1e-4)


def test_prefill_cost_not_fitted_without_decode_only_steps():
    data = synthetic(TRUE, 800, 8, noise=0.0)
    only_prefill = data.subset(np.flatnonzero(data.prefill_attn_work > 0))
    grids = {"knee_grid": [0, 200, 448, 1000], "knee2_grid": [1024, 2048, 4096]}
    m = fit_hinge(only_prefill, **grids).cost_model
    assert m.c6_ms_if_prefill == 0.0  # not identifiable: it would equal the intercept
    assert m.c0_ms == pytest.approx(TRUE.c0_ms + TRUE.c6_ms_if_prefill, rel=1e-6)
    assert relative_errors(m, only_prefill).max_rel_err < 1e-6


def test_constraint_c5_le_c1_enforced():
    # Data generated with a steep hinge (c5 > c1) must still give a valid model.
    rng = np.random.default_rng(0)
    n = rng.integers(1, 2000, 500).astype(float)
    ms = 1.0 + 0.01 * n + 0.05 * np.maximum(0, 600 - n)
    data = StepSamples(n, np.zeros(500), np.zeros(500), np.zeros(500), ms)
    m = fit_hinge(data).cost_model
    assert m.c5_ms_per_token_below_knee <= m.c1_ms_per_token


def _brute_force_lsq(x: np.ndarray, y: np.ndarray) -> float:
    """Best objective over every face of {c >= 0, c[4] <= c[1]} (2^m faces x tie or not)."""
    m = x.shape[1]
    best = float(np.sum(y**2))
    for zero_mask in itertools.product((False, True), repeat=m):
        for tie in (False, True):
            free = [i for i in range(m) if not zero_mask[i]]
            if tie and (1 not in free or 4 not in free):
                continue
            cols = [
                x[:, i] + (x[:, 4] if tie and i == 1 else 0) for i in free if not (tie and i == 4)
            ]
            owners = [i for i in free if not (tie and i == 4)]
            if not cols:
                continue
            sol = np.linalg.lstsq(np.column_stack(cols), y, rcond=None)[0]
            coef = np.zeros(m)
            coef[owners] = sol
            if tie:
                coef[4] = coef[1]
            if np.any(coef < -1e-12) or coef[4] > coef[1] + 1e-12:
                continue
            best = min(best, float(np.sum((x @ coef - y) ** 2)))
    return best


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("num_cols", [5, 6, 7])
def test_constrained_lsq_is_the_exact_optimum(seed, num_cols):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((60, num_cols))) * rng.uniform(0.01, 100, num_cols)
    truth = rng.standard_normal(num_cols)  # often infeasible: constraints active
    y = x @ truth + 0.1 * rng.standard_normal(60)
    coef, obj = constrained_lsq(x, y)
    assert np.all(coef >= 0)
    assert coef[4] <= coef[1] * (1 + 1e-12)
    assert obj == pytest.approx(float(np.sum((x @ coef - y) ** 2)), rel=1e-9)
    assert obj <= _brute_force_lsq(x, y) * (1 + 1e-9) + 1e-12


def test_fit_rejects_bad_input():
    bad = StepSamples.from_rows([(10, 0, 0, 50.0, -1.0)] * 10)
    with pytest.raises(ValueError, match="> 0"):
        fit_hinge(bad)
    with pytest.raises(ValueError, match="at least 8"):
        fit_hinge(StepSamples.from_rows([(10, 0, 0, 50.0, 1.0)]))


def test_overhead_only_fit_and_rounding():
    data = synthetic(TRUE.with_overhead(0.7), 500, 4, noise=0.0)
    m = fit_overhead_only(TRUE, data)
    assert m.overhead_ms == pytest.approx(0.7, abs=1e-6)
    assert relative_errors(m, data).max_rel_err < 1e-9
    coeffs = rounded_coefficients(TRUE)
    assert HingeCostModel.from_dict(coeffs).knee_tokens == 448
    assert HingeCostModel.from_dict(coeffs).knee2_tokens == 2048


def test_split_is_deterministic():
    data = synthetic(TRUE, 100, 6, noise=0.0)
    a1, b1 = data.split_half(3)
    a2, b2 = data.split_half(3)
    assert np.array_equal(a1.step_ms, a2.step_ms) and np.array_equal(b1.step_ms, b2.step_ms)
    assert len(a1) + len(b1) == 100

"""Closed loop: the planning model follows measured step times and keeps a margin from them."""

from __future__ import annotations

import random

import pytest

from fairbatching_sglang.core.closed_loop import (
    ClosedLoopConfig,
    ClosedLoopPlanner,
    scaled_model,
)
from fairbatching_sglang.core.config import FairBatchingConfig
from fairbatching_sglang.core.cost_model import StepShape
from tests.core.test_online_calibration import random_step
from tests.synthetic_cost import KNOWN_MODEL


def feed(loop: ClosedLoopPlanner, factor: float, n: int, seed: int = 0, noise: float = 0.0):
    rng = random.Random(seed)
    shapes = []
    for _ in range(n):
        shape = random_step(rng)
        shapes.append(shape)
        true_ms = KNOWN_MODEL.predict_ms(shape) * factor * (1 + noise * rng.gauss(0, 1))
        loop.observe(shape, true_ms)
    return shapes


def test_scaled_model_scales_every_prediction_and_keeps_the_inverse_exact():
    m = scaled_model(KNOWN_MODEL, 1.1)
    rng = random.Random(3)
    for _ in range(200):
        s = random_step(rng)
        assert m.predict_ms(s) == pytest.approx(1.1 * KNOWN_MODEL.predict_ms(s), rel=1e-12)
    assert m.knee_tokens == KNOWN_MODEL.knee_tokens
    # The inverse on the scaled model is the inverse of the original at budget / 1.1.
    for budget in (5.0, 20.0, 50.0):
        a = m.max_chunk_tokens_raw(budget, 64, 64 * 2000.0, 0.0, 0, 8192)
        b = KNOWN_MODEL.max_chunk_tokens_raw(budget / 1.1, 64, 64 * 2000.0, 0.0, 0, 8192)
        assert a == b


def test_exact_device_keeps_only_the_minimum_margin():
    loop = ClosedLoopPlanner(KNOWN_MODEL)
    feed(loop, 1.0, 2000)
    assert loop.margin == pytest.approx(ClosedLoopConfig().min_margin)
    assert loop.stats()["measured_over_predicted"] == pytest.approx(1.0, abs=1e-9)


def test_a_steady_bias_is_learnt_and_the_planning_model_covers_it():
    loop = ClosedLoopPlanner(KNOWN_MODEL)
    shapes = feed(loop, 1.10, 3000, noise=0.02)
    tail = shapes[-500:]
    believed = sum(loop.predict_ms(s) for s in tail)
    truth = sum(1.10 * KNOWN_MODEL.predict_ms(s) for s in tail)
    assert believed == pytest.approx(truth, rel=0.03)  # recalibrated to the slower device
    planned = sum(loop.planning_model().predict_ms(s) for s in tail)
    assert planned >= truth  # plans at or above what steps really take


def test_margin_only_follows_the_bias_when_recalibration_is_off():
    loop = ClosedLoopPlanner(KNOWN_MODEL, ClosedLoopConfig(recalibrate=False))
    feed(loop, 1.15, 800)
    assert loop.margin == pytest.approx(0.15, abs=0.01)
    assert loop.believed_model() is KNOWN_MODEL


def test_a_mid_run_shift_raises_the_margin_before_the_model_has_caught_up():
    cfg = ClosedLoopConfig()
    loop = ClosedLoopPlanner(KNOWN_MODEL, cfg)
    feed(loop, 1.0, 1500, seed=1)
    assert loop.margin == pytest.approx(cfg.min_margin)
    feed(loop, 1.15, cfg.margin_block_steps * cfg.margin_window_blocks // 4, seed=2)
    assert loop.margin > 0.05


def test_noise_gives_a_margin_between_the_bounds():
    loop = ClosedLoopPlanner(KNOWN_MODEL)
    feed(loop, 1.0, 3000, noise=0.10)
    # Per step, p95: about 1.645 sigma (0.16) plus what the online fit's own wobble adds.
    assert 0.12 < loop.margin < 0.25 < ClosedLoopConfig().max_margin


def test_cold_start_uses_the_initial_margin_and_bad_measurements_are_ignored():
    cfg = ClosedLoopConfig(initial_margin=0.07)
    loop = ClosedLoopPlanner(KNOWN_MODEL, cfg)
    s = StepShape(0, 8, 8000, 0.0)
    assert loop.planning_model().predict_ms(s) == pytest.approx(1.07 * KNOWN_MODEL.predict_ms(s))
    for bad in (float("nan"), 0.0, -1.0, float("inf")):
        loop.observe(s, bad)
    loop.observe(StepShape(), 5.0)  # an empty step costs nothing in the model
    assert loop.num_observed == 0 and loop.num_ignored == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin_block_steps": 0},
        {"margin_quantile": 0.0},
        {"min_margin": 0.2, "max_margin": 0.1},
        {"initial_margin": 0.9},
        {"min_blocks": 100, "margin_window_blocks": 10},
    ],
)
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError, match="closed loop"):
        ClosedLoopConfig(**kwargs)


def test_fairbatching_config_takes_the_loop_from_json_and_refuses_unknown_keys():
    cfg = FairBatchingConfig(closed_loop={"min_margin": 0.05, "calibration": {"max_ratio": 1.5}})
    assert cfg.closed_loop == ClosedLoopConfig(
        min_margin=0.05, calibration=cfg.closed_loop.calibration
    )
    assert cfg.closed_loop.calibration.max_ratio == 1.5
    assert FairBatchingConfig(closed_loop=None).closed_loop is None
    with pytest.raises(ValueError, match="unknown key"):
        FairBatchingConfig(closed_loop={"margn": 0.1})

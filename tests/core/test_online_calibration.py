"""Online RLS recalibration: recovers drifted coefficients, drift stays bounded."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from fairbatching_sglang.core.cost_model import HingeCostModel, StepShape
from fairbatching_sglang.core.online_calibration import (
    OnlineCalibrationConfig,
    OnlineCalibrator,
)
from tests.synthetic_cost import KNOWN_MODEL

BASE = KNOWN_MODEL


def random_step(rng: random.Random) -> StepShape:
    p = int(2 ** rng.uniform(0, 13)) if rng.random() < 0.6 else 0
    b = int(2 ** rng.uniform(0, 9)) if (rng.random() < 0.6 or p == 0) else 0
    s = b * int(2 ** rng.uniform(4, 14))
    k = 0 if rng.random() < 0.5 else rng.randrange(16384)
    return StepShape(p, b, s, p * (k + p / 2))


def feed(cal: OnlineCalibrator, truth: HingeCostModel, n: int, seed: int, noise: float) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        shape = random_step(rng)
        cal.update_shape(shape, truth.predict_ms(shape) * (1 + noise * rng.gauss(0, 1)))


def test_recovers_drifted_coefficients_from_noisy_steps():
    truth = replace(
        BASE, c1_ms_per_token=0.021 * 1.25, c3_ms_per_kv_token=4.2e-5 * 0.8, overhead_ms=0.7
    )
    cal = OnlineCalibrator(BASE, OnlineCalibrationConfig(forgetting_factor=0.999))
    feed(cal, truth, 3000, 0, noise=0.02)
    m = cal.model()
    assert m.c1_ms_per_token == pytest.approx(truth.c1_ms_per_token, rel=0.03)
    assert m.c3_ms_per_kv_token == pytest.approx(truth.c3_ms_per_kv_token, rel=0.08)
    # The intercept trades off against the hinge term at small steps: loosely identified.
    assert m.c0_ms + m.overhead_ms == pytest.approx(1.9 + 0.7, abs=0.4)
    assert m.knee_tokens == BASE.knee_tokens
    rng = random.Random(99)
    for _ in range(200):
        shape = random_step(rng)
        assert m.predict_ms(shape) == pytest.approx(truth.predict_ms(shape), rel=0.05)


def test_recovers_prefill_step_cost():
    # The engine charges prefill steps 0.6 ms more than the profile says, and 0.3 ms overhead.
    truth = replace(BASE, c6_ms_if_prefill=BASE.c6_ms_if_prefill + 0.6, overhead_ms=0.3)
    cal = OnlineCalibrator(BASE, OnlineCalibrationConfig(forgetting_factor=0.999))
    feed(cal, truth, 3000, 5, noise=0.01)
    m = cal.model()
    assert m.c6_ms_if_prefill == pytest.approx(truth.c6_ms_if_prefill, abs=0.1)
    assert m.c0_ms + m.overhead_ms == pytest.approx(1.9 + 0.3, abs=0.2)
    assert m.c7_ms_per_token_above_knee2 == pytest.approx(BASE.c7_ms_per_token_above_knee2, rel=0.1)
    assert m.knee2_tokens == BASE.knee2_tokens


def test_learns_prefill_cost_when_offline_profile_has_none():
    base = replace(BASE, c6_ms_if_prefill=0.0)  # e.g. a profile made before c6 existed
    cal = OnlineCalibrator(base, OnlineCalibrationConfig(forgetting_factor=0.999))
    feed(cal, BASE, 3000, 6, noise=0.01)
    assert cal.model().c6_ms_if_prefill == pytest.approx(BASE.c6_ms_if_prefill, abs=0.1)
    # Bounded: at most max_extra_prefill_ms when the offline value is 0.
    capped = OnlineCalibrator(base, OnlineCalibrationConfig(max_extra_prefill_ms=0.3))
    feed(capped, BASE, 1000, 6, noise=0.0)
    assert 0.0 <= capped.model().c6_ms_if_prefill <= 0.3 + 1e-12


def test_no_change_when_measurements_match():
    cal = OnlineCalibrator(BASE)
    feed(cal, BASE, 500, 1, noise=0.0)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in cal.ratios().values())
    assert cal.model().c1_ms_per_token == pytest.approx(BASE.c1_ms_per_token, rel=1e-6)


def test_bounded_drift_and_c5_le_c1():
    # The truth is far outside the bounds: everything 5x slower plus 10 ms.
    truth = HingeCostModel(
        c0_ms=1.9 * 5 + 10,
        c1_ms_per_token=0.021 * 5,
        c3_ms_per_kv_token=4.2e-5 * 5,
        c4_ms_per_attn_unit=8.4e-7 * 5,
        c5_ms_per_token_below_knee=0.021 * 5,
        knee_tokens=448,
    )
    cfg = OnlineCalibrationConfig(max_ratio=1.5, max_extra_overhead_ms=1.0,
                                  outlier_rel_residual=100.0)  # fmt: skip
    cal = OnlineCalibrator(BASE, cfg)
    rng = random.Random(2)
    for _ in range(2000):
        shape = random_step(rng)
        cal.update_shape(shape, truth.predict_ms(shape))
        m = cal.model()
        assert m.c5_ms_per_token_below_knee <= m.c1_ms_per_token
        for got, base in (
            (m.c1_ms_per_token, BASE.c1_ms_per_token),
            (m.c3_ms_per_kv_token, BASE.c3_ms_per_kv_token),
            (m.c4_ms_per_attn_unit, BASE.c4_ms_per_attn_unit),
            (m.c5_ms_per_token_below_knee, BASE.c5_ms_per_token_below_knee),
        ):
            assert base / 1.5 * (1 - 1e-9) <= got <= base * 1.5 * (1 + 1e-9)
        assert m.c0_ms + m.overhead_ms <= 1.9 * 1.5 + 1.0 + 1e-9
        assert 0.8 / 1.5 - 1e-9 <= m.c6_ms_if_prefill <= 0.8 * 1.5 + cfg.max_extra_prefill_ms
    assert cal.ratios()["c1"] == pytest.approx(1.5)


def test_downward_drift_bounded_and_zero_coefficient_stays_zero():
    base = replace(BASE, c4_ms_per_attn_unit=0.0)
    truth = replace(base, c0_ms=0.1, c1_ms_per_token=0.005, c5_ms_per_token_below_knee=0.004)
    cal = OnlineCalibrator(base, OnlineCalibrationConfig(max_ratio=2.0, outlier_rel_residual=10))
    feed(cal, truth, 1000, 3, noise=0.0)
    m = cal.model()
    assert m.c4_ms_per_attn_unit == 0.0
    assert m.c1_ms_per_token == pytest.approx(0.021 / 2)
    assert 1.9 / 2 - 1e-9 <= m.c0_ms + m.overhead_ms <= 1.9 * 2 + 2.0
    assert m.c5_ms_per_token_below_knee <= m.c1_ms_per_token


def test_rejects_outliers_and_bad_measurements():
    cal = OnlineCalibrator(BASE)
    shape = StepShape(512, 8, 8000, 512 * 256.0)
    assert not cal.update_shape(shape, BASE.predict_ms(shape) * 5)  # outlier
    assert not cal.update_shape(shape, float("nan"))
    assert not cal.update_shape(shape, 0.0)
    assert not cal.update(0, 0, 0, 5.0)  # empty step
    assert cal.num_rejected == 4 and cal.num_updates == 0
    assert cal.model() == BASE
    assert cal.update_shape(shape, BASE.predict_ms(shape) * 1.1)


def test_deterministic_and_config_validation():
    a, b = OnlineCalibrator(BASE), OnlineCalibrator(BASE)
    feed(a, replace(BASE, overhead_ms=0.5), 300, 4, 0.03)
    feed(b, replace(BASE, overhead_ms=0.5), 300, 4, 0.03)
    assert a.model() == b.model()
    for bad in (
        {"forgetting_factor": 0.0},
        {"max_ratio": 0.5},
        {"max_extra_overhead_ms": -1},
        {"max_extra_prefill_ms": -1},
        {"initial_variance": 0},
        {"outlier_rel_residual": 0},
    ):
        with pytest.raises(ValueError):
            OnlineCalibrationConfig(**bad)


def test_recovers_per_decode_request_cost():
    # A profile with c2 (fitted since issue #13); the device charges decode rows 40% more.
    base = replace(BASE, c2_ms_per_decode_req=0.008)
    truth = replace(base, c2_ms_per_decode_req=0.008 * 1.4)
    cal = OnlineCalibrator(base, OnlineCalibrationConfig(forgetting_factor=0.999))
    feed(cal, truth, 3000, 7, noise=0.01)
    m = cal.model()
    assert m.c2_ms_per_decode_req == pytest.approx(truth.c2_ms_per_decode_req, rel=0.1)
    assert cal.ratios()["c2"] == pytest.approx(1.4, rel=0.1)
    rng = random.Random(98)
    for _ in range(200):
        shape = random_step(rng)
        assert m.predict_ms(shape) == pytest.approx(truth.predict_ms(shape), rel=0.03)


def test_c2_stays_zero_without_offline_c2_and_update_takes_decode_count():
    cal = OnlineCalibrator(BASE)  # c2 = 0: no direction to learn
    feed(cal, replace(BASE, c2_ms_per_decode_req=0.01), 500, 8, noise=0.0)
    assert cal.model().c2_ms_per_decode_req == 0.0
    # update(...) with the decode count as a keyword equals update_shape.
    base = replace(BASE, c2_ms_per_decode_req=0.008)
    a, b = OnlineCalibrator(base), OnlineCalibrator(base)
    shape = StepShape(100, 300, 30_000, 100 * 50.0)
    a.update_shape(shape, 20.0)
    b.update(400, 30_000, 100 * 50.0, 20.0, num_decode_reqs=300)
    assert a.model() == b.model()
    assert a.predict_raw_ms(400, 30_000, 5000.0, num_decode_reqs=300) == pytest.approx(
        a.model().predict_ms(shape)
    )

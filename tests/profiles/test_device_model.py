"""Device models (what a step really costs) and the --device-model spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairbatching_sglang.core import StepShape
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.profiles.device_model import ProfileDevice, ProfileDeviceConfig
from fairbatching_sglang.profiles.device_spec import DeviceSpecError, parse_device_model

PROFILE = load_profile("h100-llama3.1-8b")
CM = PROFILE.cost_model
SHAPES = [
    StepShape(0, 64, 64 * 1024, 0.0),
    StepShape(512, 64, 64 * 1024, 512 * 256.0),
    StepShape(8192, 0, 0, 8192 * 4096.0),
    StepShape(1, 0, 0, 0.5),
]


def _raw(s: StepShape) -> float:
    return CM.predict_raw_ms(
        s.num_prefill_tokens + s.num_decode_reqs,
        s.decode_kv_tokens,
        s.prefill_attn_work,
        num_decode_reqs=s.num_decode_reqs,
    )


def test_exact_profile_is_profile_plus_overhead() -> None:
    dev = parse_device_model("profile").build(PROFILE, 0.5)
    assert dev.is_exact
    for s in SHAPES:
        assert dev.step_ms(s) == _raw(s) + 0.5


def test_decode_block_equals_steps_one_by_one() -> None:
    dev = parse_device_model("profile").build(PROFILE, 0.5)
    shape = StepShape(0, 32, 32 * 700, 0.0)
    block = dev.decode_block_ms(shape, 50)
    one_by_one = [_raw(StepShape(0, 32, 32 * 700 + j * 32, 0.0)) + 0.5 for j in range(50)]
    np.testing.assert_allclose(block, one_by_one, rtol=1e-12)


def test_bias_scales_the_kernel_price() -> None:
    dev = parse_device_model("profile:bias=0.1,overhead_ms=0").build(PROFILE, 0.5)
    assert not dev.is_exact
    for s in SHAPES:
        assert dev.step_ms(s) == pytest.approx(_raw(s) * 1.1, rel=1e-12)


def test_noise_is_seeded_mean_one_and_nonnegative() -> None:
    spec = parse_device_model("profile:noise=0.05,seed=3,overhead_ms=0")
    a = spec.build(PROFILE, 0.5)
    b = spec.build(PROFILE, 0.5)
    s = SHAPES[0]
    xs = np.array([a.step_ms(s) for _ in range(4000)])
    ys = np.array([b.step_ms(s) for _ in range(4000)])
    np.testing.assert_array_equal(xs, ys)  # same seed, same stream
    ratio = xs / _raw(s)
    assert abs(ratio.mean() - 1.0) < 0.005
    assert 0.04 < ratio.std() < 0.06
    other = parse_device_model("profile:noise=0.05,seed=4,overhead_ms=0").build(PROFILE, 0.5)
    assert other.step_ms(s) != xs[0]


def test_shift_applies_from_its_step_on() -> None:
    dev = ProfileDevice(CM, "x", ProfileDeviceConfig(shift=0.15, shift_after_steps=3), 0.0)
    s = SHAPES[1]
    prices = [dev.step_ms(s) for _ in range(3)] + list(dev.decode_block_ms(SHAPES[0], 2))
    assert prices[:3] == pytest.approx([_raw(s)] * 3)
    assert prices[3] == pytest.approx(_raw(SHAPES[0]) * 1.15)


def test_jitter_keeps_overhead_nonnegative() -> None:
    dev = parse_device_model("profile:overhead_ms=0.1,jitter_ms=1,seed=0").build(PROFILE, 0.5)
    s = SHAPES[3]
    xs = np.array([dev.step_ms(s) for _ in range(500)]) - _raw(s)
    assert xs.min() >= 0.0
    assert xs.max() > 0.5  # the jitter really moves it


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("gpu", "unknown device model 'gpu'"),
        ("profile:bias=x", "bias='x' is not a number"),
        ("profile:bias=-1", "bias must be"),
        ("profile:noise=2", "noise must be"),
        ("profile:seed=1.5", "seed='1.5' is not an integer"),
        ("profile:seed=-1", "seed='-1' must be >= 0"),
        ("realistic:foo=1", "'realistic:foo=1': unknown parameter 'foo'"),
        ("profile:foo=1", "unknown parameter 'foo'"),
        ("profile:bias", "must be NAME=VALUE"),
        ("profile:bias=1,bias=2", "given twice"),
        ("profile:shift_after=10", "shift_after needs shift"),
        ("profile:bias=inf", "must be finite"),
        ("profile:profile=nope", "unknown profile 'nope'"),
        ("steplog:", "needs a path"),
        ("steplog:/does/not/exist.jsonl", "not found"),
    ],
)
def test_bad_specs_name_the_flag_and_the_part(spec: str, needle: str) -> None:
    with pytest.raises(DeviceSpecError) as exc:
        parse_device_model(spec)
    assert "--device-model" in str(exc.value)
    assert needle in str(exc.value)


def test_realistic_is_the_documented_profile_device_and_parts_override() -> None:
    from fairbatching_sglang.profiles.device_spec import DEFAULT_DEVICE_MODEL, REALISTIC_PARAMS

    assert DEFAULT_DEVICE_MODEL == "realistic"
    alias = parse_device_model("realistic")
    spelled = parse_device_model(f"profile:{REALISTIC_PARAMS}")
    assert alias.text == "realistic" and alias.kind == "profile"
    assert alias.config == spelled.config
    assert (alias.config.bias, alias.config.noise, alias.config.seed) == (0.05, 0.03, 0)
    other = parse_device_model("realistic:seed=3,bias=0.1").config
    assert (other.bias, other.noise, other.seed, other.overhead_jitter_ms) == (0.1, 0.03, 3, 0.2)
    a = alias.build(PROFILE, 0.5)
    b = spelled.build(PROFILE, 0.5)
    from fairbatching_sglang.core.cost_model import StepShape

    shape = StepShape(512, 64, 64 * 900, 0.0)
    assert [a.step_ms(shape) for _ in range(5)] == [b.step_ms(shape) for _ in range(5)]


def test_other_profile_as_truth() -> None:
    spec = parse_device_model("profile:profile=h200-llama3.1-8b")
    dev = spec.build(PROFILE, 0.0)
    h200 = load_profile("h200-llama3.1-8b").cost_model
    s = SHAPES[0]
    assert dev.step_ms(s) == h200.predict_raw_ms(64, 64 * 1024, 0.0, num_decode_reqs=64)


def _write_log(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_steplog_replays_the_measured_residual(tmp_path) -> None:
    rows = []
    for s in SHAPES:
        rows.append(
            {
                "num_prefill_tokens": s.num_prefill_tokens,
                "num_decode_reqs": s.num_decode_reqs,
                "decode_kv_tokens": s.decode_kv_tokens,
                "prefill_attn_work": s.prefill_attn_work,
                "measured_ms": _raw(s) * (1.2 if s.num_prefill_tokens == 0 else 0.9),
            }
        )
    log = tmp_path / "steps.jsonl"
    _write_log(log, rows)
    dev = parse_device_model(f"steplog:{log}").build(PROFILE, 0.5)
    assert "replayed step log" in dev.description
    # A decode-only step near the logged one costs 1.2x, a prefill step 0.9x.
    near = StepShape(0, 70, 70 * 1000, 0.0)
    assert dev.step_ms(near) == pytest.approx(_raw(near) * 1.2)
    pre = StepShape(600, 60, 60 * 1000, 600 * 300.0)
    assert dev.step_ms(pre) == pytest.approx(_raw(pre) * 0.9)


def test_steplog_bad_line_names_file_and_line(tmp_path) -> None:
    log = tmp_path / "bad.jsonl"
    log.write_text('{"num_prefill_tokens": 1}\n')
    with pytest.raises(DeviceSpecError, match=r"bad.jsonl: line 1: missing field"):
        parse_device_model(f"steplog:{log}")

"""The `engine` device model: spec, errors without the extra, cached engine prices.

Most tests use a fake engine (no aiconfigurator-core needed); the last ones price with the real
engine and are skipped when the `calibrate` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from fairbatching_sglang.core import StepShape
from fairbatching_sglang.profiles import engine_prices as ep
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.profiles.device_model import EngineDevice, ProfileDeviceConfig
from fairbatching_sglang.profiles.device_spec import (
    DeviceModelSpec,
    DeviceSpecError,
    parse_device_model,
)

PROFILE = load_profile("h100-llama3.1-8b")
HAS_ENGINE = importlib.util.find_spec("aiconfigurator_core") is not None


class FakePricer:
    """EnginePricer's four parts as simple functions of their arguments; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def other_ops_ms(self, num_tokens: int) -> float:
        self.calls += 1
        return 5.0 + 0.015 * num_tokens

    def logits_ms(self, num_rows: int) -> float:
        self.calls += 1
        return 0.1 + 0.002 * num_rows

    def context_attention_ms(self, num_chunks: int, chunk_tokens: int, cached: int) -> float:
        self.calls += 1
        return 1e-6 * num_chunks * chunk_tokens * (cached + chunk_tokens / 2)

    def decode_attention_ms(self, num_reqs: int, kv_len: int) -> float:
        self.calls += 1
        return 4e-5 * num_reqs * kv_len + 0.003 * num_reqs


def fake_prices(**kwargs) -> ep.EngineStepPrices:
    return ep.EngineStepPrices("m", "gpu", 1, pricer=FakePricer(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch) -> None:
    # Never touch the user's ~/.cache from tests.
    monkeypatch.setenv("FAIRBATCHING_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def no_engine(monkeypatch) -> None:
    """aiconfigurator-core as if it were not installed (its imports fail)."""
    for name in (
        "aiconfigurator_core",
        "aiconfigurator_core.sdk",
        "aiconfigurator_core.sdk.engine",
    ):
        monkeypatch.setitem(sys.modules, name, None)


# --------------------------------------------------------------------------- spec
def test_engine_spec_parses(monkeypatch) -> None:
    monkeypatch.setattr(ep, "require_engine", lambda: None)  # parse even without the extra
    spec = parse_device_model("engine")
    assert (spec.kind, spec.engine_cache, spec.profile) == ("engine", "disk", None)
    spec = parse_device_model("engine:noise=0.02,seed=3,cache=memory,profile=h200-llama3.1-8b")
    assert spec.kind == "engine" and spec.engine_cache == "memory"
    assert spec.config.noise == 0.02 and spec.config.seed == 3
    assert spec.profile == "h200-llama3.1-8b"
    assert spec.to_dict()["cache"] == "memory" and spec.to_dict()["kind"] == "engine"
    assert "cache" not in parse_device_model("profile").to_dict()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("engine:cache=ssd", "cache='ssd'"),
        ("engine:cache=disk,cache=memory", "given twice"),
        ("engine:noise=3", "noise must be"),
        ("profile:cache=disk", "unknown parameter 'cache'"),
    ],
)
def test_bad_engine_specs(monkeypatch, text: str, needle: str) -> None:
    monkeypatch.setattr(ep, "require_engine", lambda: None)
    with pytest.raises(DeviceSpecError, match="--device-model") as exc:
        parse_device_model(text)
    assert needle in str(exc.value)


def test_without_the_extra_the_error_names_the_flag_and_the_install(no_engine) -> None:
    with pytest.raises(DeviceSpecError) as exc:
        parse_device_model("engine:noise=0.01")
    msg = str(exc.value)
    assert "--device-model" in msg and "aiconfigurator-core" in msg
    assert ".[calibrate]" in msg and "pip install" in msg
    # The emulator's environment variable is named instead when it is the source.
    with pytest.raises(DeviceSpecError, match="FAIRBATCHING_EMULATED_DEVICE"):
        parse_device_model("engine", flag="FAIRBATCHING_EMULATED_DEVICE")
    # Other device models do not need the extra.
    assert parse_device_model("profile").kind == "profile"


def test_build_without_the_extra_fails_clearly(monkeypatch, no_engine) -> None:
    monkeypatch.setattr(ep, "_SHARED", {})
    # A spec parsed elsewhere (e.g. before the package went away) still fails at build.
    with pytest.raises(DeviceSpecError, match=r"--device-model.*calibrate"):
        DeviceModelSpec("engine", "engine").build(PROFILE, 0.5)


# --------------------------------------------------------------------------- cached prices
def test_quantise_keeps_small_values_and_bounds_the_step() -> None:
    assert [ep.quantise(x) for x in (0, 1, 300, 511)] == [0, 1, 300, 511]
    for x in (512, 777, 4097, 65_535, 10**6):
        assert abs(ep.quantise(x) - x) <= x / 512 + 1
    assert len({ep.quantise(x) for x in range(20_000, 40_000)}) < 300


def test_step_prices_are_the_sum_of_memoised_parts() -> None:
    prices = fake_prices(disk_cache=False)
    fake = prices.pricer
    assert isinstance(fake, FakePricer)
    one = prices.step_ms(100, 8, 8 * 300, 100 * (200 + 50.0))  # one chunk: k = 200 exactly
    want = (
        fake.other_ops_ms(108)
        + fake.logits_ms(9)
        + fake.context_attention_ms(1, 100, 200)
        + fake.decode_attention_ms(8, 300)
    )
    assert one == pytest.approx(want, rel=1e-12)
    calls = fake.calls
    assert prices.step_ms(100, 8, 8 * 300, 100 * 250.0) == one
    assert fake.calls == calls  # all four parts from the memo
    # Two chunks of 50 new tokens each: logits at 2 + B rows, attention at the mean chunk.
    two = prices.step_ms(100, 0, 0, 2 * 50 * (0 + 25.0), num_prefill_chunks=2)
    assert two == pytest.approx(
        fake.other_ops_ms(100) + fake.logits_ms(2) + fake.context_attention_ms(2, 50, 0)
    )
    assert prices.step_ms(0, 0, 0, 0.0) == 0.0
    # Chunk count not given: inferred from Q (one chunk on a prefix; n equal new prompts).
    assert prices.step_ms(100, 0, 0, 2 * 50 * 25.0) == two
    on_prefix = 100 * (4000 + 50.0)
    assert prices.step_ms(100, 0, 0, on_prefix) == prices.step_ms(100, 0, 0, on_prefix, 1)


def test_decode_block_equals_steps_one_by_one() -> None:
    prices = fake_prices(disk_cache=False)
    block = prices.decode_block_ms(32, 32 * 700, 50)
    steps = [prices.step_ms(0, 32, 32 * 700 + j * 32, 0.0) for j in range(50)]
    assert block.tolist() == steps


def test_disk_cache_round_trip_merge_and_damage(tmp_path) -> None:
    a = fake_prices()
    assert a.path is not None and str(a.path).startswith(str(tmp_path / "cache"))
    x = a.step_ms(1000, 64, 64 * 5000, 1000 * 3000.0)
    a.save()
    # A later process reads the prices without pricing (its engine is never asked).
    b = ep.EngineStepPrices("m", "gpu", 1, pricer=None)
    assert b.num_cached == a.num_cached
    assert b.step_ms(1000, 64, 64 * 5000, 1000 * 3000.0) == x
    assert b._pricer is None
    # Two processes' entries merge.
    c = fake_prices()
    c.step_ms(7, 0, 0, 7 * 3.5)
    d = fake_prices()
    d.step_ms(0, 3, 3 * 99, 0.0)
    c.save()
    d.save()
    merged = ep.EngineStepPrices("m", "gpu", 1).num_cached
    assert merged == a.num_cached + c.num_misses + d.num_misses
    # The name carries the model, GPU, TP, kernel version, aiconfigurator-core version, scheme.
    assert f"q{ep.QUANT_SCHEME}" in a.path.name and "sglang0.5.14" in a.path.name
    # A damaged file is ignored (and rewritten on the next save).
    a.path.write_text("{not json")
    e = fake_prices()
    assert e.num_cached == 0
    e.step_ms(1, 0, 0, 0.5)
    e.save()
    assert json.loads(a.path.read_text())["quant_scheme"] == ep.QUANT_SCHEME


# --------------------------------------------------------------------------- device
def test_engine_device_adds_overheads_and_applies_the_seeded_noise() -> None:
    prices = fake_prices(disk_cache=False)
    dev = EngineDevice(prices, "p", None, default_overhead_ms=0.5, profile_overhead_ms=0.2)
    shape = StepShape(512, 64, 64 * 1024, 512 * 256.0, 1)
    kernel = prices.step_ms(512, 64, 64 * 1024, 512 * 256.0, 1)
    assert dev.step_ms(shape) == pytest.approx(kernel + 0.2 + 0.5)
    assert not dev.is_exact and "engine" in dev.description
    decode = StepShape(0, 16, 16 * 400, 0.0)
    block = dev.decode_block_ms(decode, 20)
    one_by_one = [dev.step_ms(StepShape(0, 16, 16 * 400 + j * 16, 0.0)) for j in range(20)]
    np.testing.assert_allclose(block, one_by_one, rtol=1e-12)
    cfg = ProfileDeviceConfig(noise=0.05, seed=7, overhead_ms=0.0)
    a, b = (EngineDevice(prices, "p", cfg) for _ in range(2))
    xs = np.array([a.step_ms(decode) for _ in range(3000)])
    assert xs.tolist() == [b.step_ms(decode) for _ in range(3000)]
    assert abs(xs.mean() / prices.step_ms(0, 16, 16 * 400, 0.0) - 1.0) < 0.01
    biased = EngineDevice(prices, "p", ProfileDeviceConfig(bias=0.1, overhead_ms=0.0))
    assert biased.step_ms(shape) == pytest.approx(kernel * 1.1)
    assert "bias +0.1" in biased.description


def test_with_chunk_counts_chunks() -> None:
    s = StepShape(0, 4, 400).with_chunk(100, 0).with_chunk(50, 10)
    assert (s.num_prefill_tokens, s.num_prefill_chunks) == (150, 2)
    assert StepShape(10, 0, 0, 50.0).with_chunk(5, 0).num_prefill_chunks == 2  # 0 = one
    assert StepShape().with_chunk(0, 0).num_prefill_chunks == 0


# --------------------------------------------------------------------------- the real engine
needs_engine = pytest.mark.skipif(not HAS_ENGINE, reason="aiconfigurator-core not installed")


@needs_engine
def test_real_engine_prices_match_the_pricer_and_the_profile(monkeypatch) -> None:
    monkeypatch.setattr(ep, "_SHARED", {})
    dev = parse_device_model("engine:cache=memory,overhead_ms=0").build(PROFILE, 0.5)
    assert isinstance(dev, EngineDevice)
    prices = dev.prices
    assert isinstance(prices, ep.EngineStepPrices)
    pricer = prices.pricer
    steps = ep.sample_steps(400, 123, kv_capacity_tokens=PROFILE.kv_capacity_tokens)
    engine_ms, profile_ms = [], []
    for st in steps:
        shape = StepShape(
            st.num_prefill_tokens,
            st.num_decode_reqs,
            st.decode_kv_tokens,
            st.prefill_attn_work,
            len(st.chunks),
        )
        got = dev.step_ms(shape)
        direct = pricer.price(st)
        # Exact on the quantisation's exact range; else chunk, prefix and KV are rounded (and
        # several chunks priced at their mean shape, as the pricer does): within 1%.
        kv_mean = st.decode_kv_tokens / max(st.num_decode_reqs, 1)
        exact = len(st.chunks) <= 1 and max([kv_mean, *(v for ck in st.chunks for v in ck)]) < 500
        assert got == pytest.approx(direct, rel=1e-9 if exact else 0.01)
        engine_ms.append(got)
        profile_ms.append(PROFILE.cost_model.predict_ms(shape))
    rel = np.abs(np.array(profile_ms) / np.array(engine_ms) - 1.0)
    # The profile is a fit to these prices: a few % apart (the fit's own error).
    assert rel.mean() < 0.03 and np.quantile(rel, 0.9) < 0.06


@needs_engine
def test_real_engine_reference_points(monkeypatch) -> None:
    monkeypatch.setattr(ep, "_SHARED", {})
    dev = parse_device_model("engine:cache=memory").build(PROFILE, 0.0)
    refs = PROFILE.extra["reference_points_ms"]
    assert dev.step_ms(StepShape(2048, 0, 0, 2048 * 1024.0, 1)) == pytest.approx(
        refs["prefill_1x2048"], abs=0.01
    )
    assert dev.step_ms(StepShape(0, 64, 64 * 1024, 0.0)) == pytest.approx(
        refs["decode_64_at_kv_1024"],
        rel=0.003,  # KV 1024 is quantised: still a grid point
    )

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairbatching_sglang.core import HingeCostModel, StepShape, chunk_attn_work
from fairbatching_sglang.core.cost_model import OPTIONAL_FIELDS
from fairbatching_sglang.profiles import DEFAULT_PROFILE, ProfileError, load_profile
from tests.core.strategies import cost_models

CM = load_profile().cost_model


@st.composite
def full_cost_models(draw: st.DrawFn) -> HingeCostModel:
    """Every term in play: hinge, second hinge, has-a-prefill cost (c6), per-decode cost (c2),
    overhead."""
    c1 = draw(st.floats(0.005, 0.2))
    return HingeCostModel(
        c0_ms=draw(st.floats(0.0, 10.0)),
        c1_ms_per_token=c1,
        c3_ms_per_kv_token=draw(st.one_of(st.just(0.0), st.floats(0.0, 1e-3))),
        c4_ms_per_attn_unit=draw(st.one_of(st.just(0.0), st.floats(0.0, 1e-5))),
        c5_ms_per_token_below_knee=draw(st.floats(0.0, 0.95)) * c1,
        knee_tokens=draw(st.floats(0, 2048)),
        overhead_ms=draw(st.floats(0, 2)),
        c6_ms_if_prefill=draw(st.one_of(st.just(0.0), st.floats(0.0, 5.0))),
        c7_ms_per_token_above_knee2=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.05))),
        knee2_tokens=draw(st.floats(0, 8192)),
        c2_ms_per_decode_req=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.05))),
    )


any_cost_models = st.one_of(cost_models, full_cost_models())


@pytest.mark.parametrize(
    ("shape", "reference_ms"),
    [
        (StepShape(2048, 0, 0, chunk_attn_work(2048, 0)), 46.1),  # 1x2048 prefill
        (StepShape(0, 64, 64 * 1024, 0.0), 9.9),  # 64 decodes at KV 1024
        (StepShape(512, 64, 64 * 1024, chunk_attn_work(512, 0)), 17.4),  # chunk + decodes
    ],
)
def test_default_profile_matches_measured_reference_points(
    shape: StepShape, reference_ms: float
) -> None:
    # DESIGN.md section 4: the hinge fit is within ~2% mean, 10% max of the engine's prices.
    assert CM.predict_ms(shape) == pytest.approx(reference_ms, rel=0.05)


def test_hinge_term_prices_small_steps_above_the_line() -> None:
    linear = HingeCostModel(**{**CM.to_dict(), "c5_ms_per_token_below_knee": 0.0})
    assert CM.predict_ms(StepShape(0, 8, 8000)) > linear.predict_ms(StepShape(0, 8, 8000))
    big = max(CM.knee_tokens, 0) + 10
    assert CM.predict_ms(StepShape(big, 0, 0)) == linear.predict_ms(StepShape(big, 0, 0))


def test_prefill_cost_and_second_hinge_terms() -> None:
    m = HingeCostModel(1.0, 0.02, 0.0, 0.0, 0.01, 100, 0.0, 0.5, 0.004, 1000)
    # c6 only when the step holds a prefill chunk (Q > 0).
    assert m.predict_raw_ms(50, 0, 0.0) == pytest.approx(1.0 + 0.02 * 50 + 0.01 * 50)
    assert m.predict_raw_ms(50, 0, 1.0) == pytest.approx(1.5 + 0.02 * 50 + 0.01 * 50 + 0.0)
    # The second hinge adds c7 per token above K2 only.
    assert m.predict_raw_ms(1000, 0, 0.0) == pytest.approx(1.0 + 20.0)
    assert m.predict_raw_ms(1500, 0, 0.0) == pytest.approx(1.0 + 30.0 + 0.004 * 500)
    # Old profiles without the new fields still load, with the terms off.
    old = {k: v for k, v in CM.to_dict().items() if k not in OPTIONAL_FIELDS}
    legacy = HingeCostModel.from_dict(old)
    assert legacy.c6_ms_if_prefill == 0.0 and legacy.c7_ms_per_token_above_knee2 == 0.0
    assert legacy.c2_ms_per_decode_req == 0.0


@settings(max_examples=300, deadline=None)
@given(
    cm=any_cost_models,
    p=st.integers(0, 8192),
    b=st.integers(0, 512),
    s=st.integers(0, 10**6),
    k=st.integers(0, 32_000),
)
def test_price_increases_with_every_token(
    cm: HingeCostModel, p: int, b: int, s: int, k: int
) -> None:
    base = StepShape(p, b, s, chunk_attn_work(p, k))
    assert cm.predict_ms(base.with_chunk(1, k + p)) >= cm.predict_ms(base)
    assert cm.predict_ms(StepShape(p, b + 1, s + 1, base.prefill_attn_work)) >= cm.predict_ms(base)
    assert cm.predict_ms(StepShape(p + 1, b, s, base.prefill_attn_work)) >= cm.predict_ms(base)


@settings(max_examples=300, deadline=None)
@given(
    cm=any_cost_models,
    n0=st.integers(0, 9000),
    b0=st.integers(0, 1024),
    kv=st.lists(st.integers(1, 32_000), min_size=1, max_size=64),
    q=st.one_of(st.just(0.0), st.floats(0.5, 1e8)),
)
def test_array_price_is_the_scalar_price(
    cm: HingeCostModel, n0: int, b0: int, kv: list[int], q: float
) -> None:
    # The policy's decode cut prices a run of growing steps at once: it must agree exactly.
    added = np.arange(1, len(kv) + 1)
    tokens = n0 + b0 + added
    reqs = b0 + added
    kv_sums = np.cumsum(kv)
    got = cm.predict_raw_ms_array(tokens, kv_sums, q, num_decode_reqs=reqs)
    want = [
        cm.predict_raw_ms(int(n), float(s), q, num_decode_reqs=int(b))
        for n, s, b in zip(tokens, kv_sums, reqs, strict=True)
    ]
    assert got.tolist() == want
    # One B for every step (a scalar) is the same as a constant array.
    same = cm.predict_raw_ms_array(tokens, kv_sums, q, num_decode_reqs=float(b0))
    assert same.tolist() == [
        cm.predict_raw_ms(int(n), float(s), q, num_decode_reqs=float(b0))
        for n, s in zip(tokens, kv_sums, strict=True)
    ]
    # Without num_decode_reqs the prices are the pre-c2 ones (c2 * 0).
    assert cm.predict_raw_ms_array(tokens, kv_sums, q).tolist() == [
        cm.predict_raw_ms(int(n), float(s), q) for n, s in zip(tokens, kv_sums, strict=True)
    ]


def test_per_decode_request_term() -> None:
    m = HingeCostModel(1.0, 0.02, 0.0, 0.0, 0.0, 0, c2_ms_per_decode_req=0.01)
    # B is part of n already; c2 adds its own cost per decode request only.
    assert m.predict_raw_ms(300, 0, 0.0, num_decode_reqs=256) == pytest.approx(
        1.0 + 0.02 * 300 + 0.01 * 256
    )
    assert m.predict_ms(StepShape(44, 256, 0, 1.0)) == m.predict_raw_ms(
        300, 0, 1.0, num_decode_reqs=256
    )
    assert m.predict_raw_ms(300, 0, 0.0) == pytest.approx(1.0 + 0.02 * 300)
    assert m.to_dict()["c2_ms_per_decode_req"] == 0.01
    assert HingeCostModel.from_dict(m.to_dict()) == m
    assert m.with_overhead(0.5).c2_ms_per_decode_req == 0.01
    with pytest.raises(ValueError, match="c2_ms_per_decode_req"):
        HingeCostModel(1.0, 0.02, 0.0, 0.0, 0.0, 0, c2_ms_per_decode_req=-0.1)


@settings(max_examples=1000, deadline=None)
@given(
    cm=any_cost_models,
    budget=st.floats(0.0, 400.0),
    n=st.integers(0, 1024),
    b=st.integers(0, 1024),
    s=st.integers(0, 10**6),
    q=st.one_of(st.just(0.0), st.floats(0.5, 1e8)),
    k=st.integers(0, 64_000),
    max_tokens=st.integers(0, 16_384),
)
def test_inverse_finds_the_exact_largest_chunk(
    cm: HingeCostModel, budget: float, n: int, b: int, s: int, q: float, k: int, max_tokens: int
) -> None:
    # q == 0: the base step has no prefill, so the chunk adds c6; q > 0: already paid.
    base = StepShape(n, b, s, q)
    c = cm.max_chunk_tokens(budget, base, k, max_tokens)
    assert 0 <= c <= max_tokens
    if c > 0:
        assert cm.predict_ms(base.with_chunk(c, k)) <= budget
    if c < max_tokens:
        assert cm.predict_ms(base.with_chunk(c + 1, k)) > budget
    # The raw form with the same B agrees (the policy's hot path).
    raw = cm.max_chunk_tokens_raw(budget, n + b, s, q, k, max_tokens, num_decode_reqs=b)
    assert raw == c


def test_inverse_with_infinite_budget_is_the_cap() -> None:
    assert CM.max_chunk_tokens(math.inf, StepShape(), 0, 777) == 777


@pytest.mark.parametrize(
    "change",
    [{"c1_ms_per_token": 0.0}, {"c5_ms_per_token_below_knee": 1.0}, {"c0_ms": -1.0}],
)
def test_invalid_coefficients_are_refused(change: dict) -> None:
    with pytest.raises(ValueError):
        HingeCostModel(**{**CM.to_dict(), **change})


def test_profile_loader_names_file_and_field(tmp_path) -> None:
    assert load_profile(DEFAULT_PROFILE).kv_capacity_tokens > 100_000
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "coefficients": {"c0_ms": 1}, "kv_capacity_tokens": 5}')
    with pytest.raises(ProfileError, match=r"bad\.json.*coefficients.*missing"):
        load_profile(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n "name": \n}')
    with pytest.raises(ProfileError, match=r"broken\.json: line 3"):
        load_profile(broken)
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("no-such-profile")

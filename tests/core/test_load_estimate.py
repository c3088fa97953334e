"""The pure load estimate: prefill admission budget and requests on pace."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairbatching_sglang.core.cost_model import HingeCostModel
from fairbatching_sglang.core.load_estimate import (
    estimate_load,
    idle_admission_tokens,
    prefill_capacity_tokens,
)

CM = HingeCostModel(1.857, 0.0211, 4.229e-5, 8.36e-7, 0.01021, 448)


def est(**kw: int | float):  # type: ignore[no-untyped-def]
    base = dict(
        num_decodes=64,
        decode_kv_tokens=64 * 1024,
        queued_prefill_tokens=0,
        ttft_slo_ms=1000.0,
        tpot_slo_ms=50.0,
        max_prefill_tokens=8192,
    )
    base.update(kw)
    return estimate_load(CM, **base)  # type: ignore[arg-type]


def test_hand_checked_point() -> None:
    e = est()
    # 20 steps of 50 ms; each carries the 64 decodes and the largest chunk within 50 ms.
    chunk = CM.max_chunk_tokens_raw(50.0, 64, 64 * 1024.0, 0.0, 0, 8192)
    assert e.prefill_capacity_tokens == 20 * chunk
    assert e.prefill_admission_tokens == 20 * chunk
    assert CM.predict_raw_ms(64 + chunk, 64 * 1024.0, 0.0) <= 50.0


def test_queued_prefill_is_subtracted_and_floored() -> None:
    e = est()
    assert (
        est(queued_prefill_tokens=1000).prefill_admission_tokens == e.prefill_capacity_tokens - 1000
    )
    assert est(queued_prefill_tokens=10**9).prefill_admission_tokens == 0


def test_no_decodes_takes_the_better_of_full_and_paced_chunks() -> None:
    for cap in (2048, 8192):
        e = est(num_decodes=0, decode_kv_tokens=0, max_prefill_tokens=cap)
        step = CM.predict_raw_ms(cap, 0.0, cap * cap / 2.0)
        full = int(1000.0 // step) * cap
        paced = 20 * CM.max_chunk_tokens_raw(50.0, 0, 0.0, 0.0, 0, cap)
        assert e.prefill_capacity_tokens == max(full, paced)
    # Large chunks pay quadratic attention: at 8192 the paced chunks win.
    e = est(num_decodes=0, decode_kv_tokens=0, max_prefill_tokens=8192)
    assert (
        e.prefill_capacity_tokens
        > est(num_decodes=1, decode_kv_tokens=1024).prefill_capacity_tokens
    )


def test_capacity_helpers_match_the_estimate() -> None:
    for n in (0, 1, 64):
        e = est(num_decodes=n, decode_kv_tokens=n * 1024)
        assert e.prefill_capacity_tokens == prefill_capacity_tokens(
            CM,
            num_decodes=n,
            decode_kv_tokens=n * 1024,
            ttft_slo_ms=1000.0,
            tpot_slo_ms=50.0,
            max_prefill_tokens=8192,
        )
    idle = idle_admission_tokens(CM, ttft_slo_ms=1000.0, tpot_slo_ms=50.0, max_prefill_tokens=8192)
    assert idle == est(num_decodes=0, decode_kv_tokens=0).prefill_admission_tokens


def test_max_running_requests_under_slo() -> None:
    e = est()
    b = e.max_running_requests_under_slo
    assert (
        CM.predict_raw_ms(b, b * 1024.0, 0.0)
        <= 50.0
        < CM.predict_raw_ms(b + 1, (b + 1) * 1024.0, 0.0)
    )
    assert est(tpot_slo_ms=1.0).max_running_requests_under_slo == 0


@given(
    st.integers(0, 512),
    st.integers(1, 4096),
    st.integers(0, 100_000),
    st.floats(10.0, 10_000.0),
    st.floats(5.0, 200.0),
)
def test_monotone_in_load(n: int, kv: int, queued: int, ttft: float, tpot: float) -> None:
    a = est(
        num_decodes=n,
        decode_kv_tokens=n * kv,
        queued_prefill_tokens=queued,
        ttft_slo_ms=ttft,
        tpot_slo_ms=tpot,
    )
    b = est(
        num_decodes=n + 8,
        decode_kv_tokens=(n + 8) * kv,
        queued_prefill_tokens=queued,
        ttft_slo_ms=ttft,
        tpot_slo_ms=tpot,
    )
    assert a.prefill_admission_tokens >= 0
    # More decodes never leave more room for prefill, from an idle instance on (a router picks
    # the largest budget, so an idle instance must never look busier than a decoding one).
    assert b.prefill_admission_tokens <= a.prefill_admission_tokens


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        est(num_decodes=-1)
    with pytest.raises(ValueError):
        est(tpot_slo_ms=0.0)

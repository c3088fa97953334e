"""Hypothesis strategies for random scheduler snapshots."""

from __future__ import annotations

from hypothesis import strategies as st

from fairbatching_sglang.core import (
    DecodeRequest,
    FairBatchingConfig,
    HingeCostModel,
    PrefillRequest,
    SchedulerSnapshot,
    SloTargets,
)
from fairbatching_sglang.profiles import load_profile

DEFAULT_MODEL = load_profile().cost_model

slos = st.builds(
    SloTargets,
    ttft_slo_ms=st.floats(50, 5000),
    tpot_slo_ms=st.floats(5, 200),
)

decode_requests = st.builds(
    DecodeRequest,
    arrival_ms=st.floats(-60_000, 0),
    slo=slos,
    num_output_tokens=st.integers(1, 2000),
    kv_tokens=st.integers(1, 32_000),
    can_park=st.booleans(),
    parked_steps=st.integers(0, 5),
    first_token_ms=st.one_of(st.none(), st.floats(-60_000, 0)),
)


@st.composite
def prefill_lists(draw: st.DrawFn) -> list[PrefillRequest]:
    reqs = draw(
        st.lists(
            st.builds(
                PrefillRequest,
                arrival_ms=st.floats(-10_000, 0),
                slo=slos,
                num_remaining_tokens=st.integers(1, 16_000),
                num_cached_tokens=st.integers(0, 16_000),
                kv_reserve_tokens=st.integers(0, 2000),
            ),
            max_size=30,
        )
    )
    if reqs and draw(st.booleans()):
        i = draw(st.integers(0, len(reqs) - 1))
        r = reqs[i]
        reqs[i] = PrefillRequest(
            r.arrival_ms, r.slo, r.num_remaining_tokens, r.num_cached_tokens, 0, True
        )
    return reqs


@st.composite
def snapshots(draw: st.DrawFn, with_prefills: bool = True) -> SchedulerSnapshot:
    return SchedulerSnapshot.build(
        draw(st.floats(0, 1_000)),
        draw(st.lists(decode_requests, max_size=60)),
        draw(prefill_lists()) if with_prefills else [],
        max_num_batched_tokens=draw(st.integers(0, 16_384)),
        max_prefill_tokens=draw(st.integers(0, 16_384)),
        kv_free_tokens=draw(st.integers(0, 200_000)),
        max_new_prefills=draw(st.one_of(st.none(), st.integers(0, 10))),
        kv_admission_tokens=draw(st.one_of(st.none(), st.integers(0, 200_000))),
    )


configs = st.builds(
    FairBatchingConfig,
    budget_floor_tpot_fraction=st.floats(0.0, 2.0),
    max_step_budget_ms=st.one_of(st.none(), st.floats(5, 500)),
    park_guard_factor=st.floats(1.0, 2.0),
    urgency_margin_ms=st.floats(0, 20),
    enable_parking=st.booleans(),
    max_consecutive_parked_steps=st.one_of(st.none(), st.integers(1, 5)),
    min_chunk_tokens=st.integers(1, 512),
    guarantee_prefill_progress=st.booleans(),
    protect_prefill_ttft=st.booleans(),
    late_prefill_order=st.sampled_from(["edf", "deprioritize"]),
    late_prefill_max_defer_slo=st.one_of(st.none(), st.floats(0.0, 5.0)),
    deadline_headroom=st.floats(0.5, 1.0),
    decode_deadline_anchor=st.sampled_from(["arrival", "first_token"]),
)

cost_models = st.one_of(
    st.just(DEFAULT_MODEL),
    st.builds(
        HingeCostModel,
        c0_ms=st.floats(0.0, 10.0),
        c1_ms_per_token=st.floats(0.011, 0.2),
        c3_ms_per_kv_token=st.floats(0.0, 1e-3),
        c4_ms_per_attn_unit=st.floats(0.0, 1e-5),
        c5_ms_per_token_below_knee=st.floats(0.0, 0.011),
        knee_tokens=st.floats(0, 2048),
        overhead_ms=st.floats(0, 2),
        c6_ms_if_prefill=st.one_of(st.just(0.0), st.floats(0.0, 2.0)),
        c7_ms_per_token_above_knee2=st.one_of(st.just(0.0), st.floats(0.0, 0.05)),
        knee2_tokens=st.floats(0, 8192),
    ),
)


@st.composite
def surge_snapshots(draw: st.DrawFn) -> SchedulerSnapshot:
    """A prefill surge over decodes of which many are ahead of their envelope: parking territory."""
    decodes = draw(
        st.lists(
            st.builds(
                DecodeRequest,
                arrival_ms=st.floats(-3_000, 0),
                slo=st.builds(
                    SloTargets, ttft_slo_ms=st.floats(200, 3000), tpot_slo_ms=st.floats(20, 200)
                ),
                num_output_tokens=st.integers(1, 60),
                kv_tokens=st.integers(1, 8_000),
                can_park=st.booleans(),
                parked_steps=st.integers(0, 3),
            ),
            min_size=1,
            max_size=80,
        )
    )
    return SchedulerSnapshot.build(
        draw(st.floats(0, 1_000)),
        decodes,
        draw(prefill_lists().filter(bool)),
        max_num_batched_tokens=draw(st.integers(256, 16_384)),
        max_prefill_tokens=draw(st.integers(256, 16_384)),
        kv_free_tokens=draw(st.integers(1_000, 200_000)),
        max_new_prefills=draw(st.one_of(st.none(), st.integers(1, 10))),
        kv_admission_tokens=draw(st.one_of(st.none(), st.integers(0, 200_000))),
    )


any_snapshots = st.one_of(snapshots(), surge_snapshots())

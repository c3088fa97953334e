"""Hand-checked FairBatching decisions on tiny snapshots."""

from __future__ import annotations

import pytest

from fairbatching_sglang.core import (
    DecodeRequest,
    FairBatchingConfig,
    FairBatchingPolicy,
    PrefillRequest,
    SchedulerSnapshot,
    SloTargets,
)
from fairbatching_sglang.profiles import load_profile

CM = load_profile().cost_model
SLO = SloTargets(ttft_slo_ms=1000.0, tpot_slo_ms=50.0)
CAPS = {"max_num_batched_tokens": 8192, "max_prefill_tokens": 8192, "kv_free_tokens": 100_000}


def _decode(slack_ms: float, kv: int = 1000, **kw: object) -> DecodeRequest:
    # Arrival chosen so that at now=0 the next token (index 10) has exactly this slack.
    arrival = slack_ms - SLO.ttft_slo_ms - 10 * SLO.tpot_slo_ms
    return DecodeRequest(arrival, SLO, num_output_tokens=10, kv_tokens=kv, **kw)  # type: ignore[arg-type]


def _prefill(tokens: int, ttft_slack_ms: float = 900.0, **kw: object) -> PrefillRequest:
    return PrefillRequest(ttft_slack_ms - SLO.ttft_slo_ms, SLO, tokens, **kw)  # type: ignore[arg-type]


def test_prefill_only_step_takes_whole_request_up_to_caps() -> None:
    snap = SchedulerSnapshot.build(0.0, [], [_prefill(1000), _prefill(9000)], **CAPS)
    dec = FairBatchingPolicy(CM).decide(snap)
    assert [(c.prefill_index, c.num_tokens, c.completes_prefill) for c in dec.prefill_chunks] == [
        (0, 1000, True),
        (1, 7192, False),
    ]
    # No decodes: only the completed prefill's TTFT deadline (900 ms away) bounds the step.
    assert dec.budget_ms == 900.0


def test_budget_is_min_slack_with_tpot_floor() -> None:
    late = SchedulerSnapshot.build(0.0, [_decode(-30.0), _decode(400.0)], [], **CAPS)
    assert FairBatchingPolicy(CM).decide(late).budget_ms == SLO.tpot_slo_ms
    ahead = SchedulerSnapshot.build(0.0, [_decode(120.0), _decode(400.0)], [], **CAPS)
    assert FairBatchingPolicy(CM).decide(ahead).budget_ms == 120.0


def test_ahead_decodes_are_parked_for_a_prefill_surge() -> None:
    decodes = [_decode(60.0), *[_decode(2000.0 + i) for i in range(8)]]
    snap = SchedulerSnapshot.build(0.0, decodes, [_prefill(6000)], **CAPS)
    dec = FairBatchingPolicy(CM).decide(snap)
    assert dec.run_decode_indices == (0,)  # the only urgent one
    assert dec.parked_decode_indices == tuple(range(1, 9))
    (chunk,) = dec.prefill_chunks
    # The chunk fills the 60 ms budget exactly: one more token would exceed it.
    assert dec.predicted_step_ms <= dec.budget_ms == 60.0
    bigger = CM.predict_raw_ms(
        1 + chunk.num_tokens + 1, 1000, (chunk.num_tokens + 1) ** 2 / 2, num_decode_reqs=1
    )
    assert bigger > 60.0
    # Without parking the same surge gets a smaller chunk: all nine decodes ride along.
    no_park = FairBatchingPolicy(CM, FairBatchingConfig(enable_parking=False)).decide(snap)
    assert len(no_park.run_decode_indices) == 9
    assert no_park.prefill_chunks[0].num_tokens < chunk.num_tokens


def test_rows_that_cannot_park_always_run() -> None:
    decodes = [_decode(60.0), _decode(5000.0, can_park=False), _decode(5000.0)]
    snap = SchedulerSnapshot.build(0.0, decodes, [_prefill(6000)], **CAPS)
    dec = FairBatchingPolicy(CM).decide(snap)
    assert dec.run_decode_indices == (0, 1)
    assert dec.parked_decode_indices == (2,)


def test_consecutive_park_bound() -> None:
    decodes = [_decode(60.0), _decode(5000.0, parked_steps=3)]
    snap = SchedulerSnapshot.build(0.0, decodes, [_prefill(6000)], **CAPS)
    bounded = FairBatchingConfig(max_consecutive_parked_steps=3)
    assert FairBatchingPolicy(CM, bounded).decide(snap).parked_decode_indices == ()
    assert FairBatchingPolicy(CM).decide(snap).parked_decode_indices == (1,)


def test_continuing_chunk_goes_first_and_new_prefills_follow_edf() -> None:
    prefills = [
        _prefill(100, ttft_slack_ms=800.0),
        _prefill(100, ttft_slack_ms=100.0),
        _prefill(300, ttft_slack_ms=900.0, num_cached_tokens=700, is_continuing=True),
    ]
    snap = SchedulerSnapshot.build(0.0, [], prefills, **CAPS)
    dec = FairBatchingPolicy(CM).decide(snap)
    assert [c.prefill_index for c in dec.prefill_chunks] == [2, 1, 0]


def test_late_prefills_can_be_deprioritized() -> None:
    prefills = [_prefill(100, ttft_slack_ms=-50.0), _prefill(100, ttft_slack_ms=300.0)]
    snap = SchedulerSnapshot.build(0.0, [], prefills, **CAPS)
    edf = FairBatchingPolicy(CM).decide(snap)
    depri = FairBatchingPolicy(CM, FairBatchingConfig(late_prefill_order="deprioritize")).decide(
        snap
    )
    assert [c.prefill_index for c in edf.prefill_chunks] == [0, 1]
    assert [c.prefill_index for c in depri.prefill_chunks] == [1, 0]


def test_late_prefill_deferral_is_bounded_in_ttft_slos() -> None:
    # Slacks: 50 ms late, 300 ms to spare, 2500 ms late (2.5 TTFT SLOs of 1000 ms).
    prefills = [_prefill(100, -50.0), _prefill(100, 300.0), _prefill(100, -2500.0)]
    snap = SchedulerSnapshot.build(0.0, [], prefills, **CAPS)

    def order(**cfg: object) -> list[int]:
        dec = FairBatchingPolicy(CM, FairBatchingConfig(**cfg)).decide(snap)  # type: ignore[arg-type]
        return [c.prefill_index for c in dec.prefill_chunks]

    assert order() == [2, 0, 1]  # edf: most late first
    assert order(late_prefill_order="deprioritize") == [1, 2, 0]
    # Past 2 SLOs late, the 2500-ms-late one is no longer deferred: first again.
    assert order(late_prefill_order="deprioritize", late_prefill_max_defer_slo=2.0) == [2, 1, 0]
    # Within 3 SLOs both late ones stay deferred; a zero bound defers nothing (edf).
    assert order(late_prefill_order="deprioritize", late_prefill_max_defer_slo=3.0) == [1, 2, 0]
    assert order(late_prefill_order="deprioritize", late_prefill_max_defer_slo=0.0) == [2, 0, 1]
    with pytest.raises(ValueError, match="late_prefill_max_defer_slo"):
        FairBatchingConfig(late_prefill_max_defer_slo=-1.0)


def test_new_request_limit_and_kv_reservation() -> None:
    prefills = [_prefill(100, kv_reserve_tokens=500) for _ in range(5)]
    limited = SchedulerSnapshot.build(0.0, [], prefills, **{**CAPS, "kv_free_tokens": 1250})
    dec = FairBatchingPolicy(CM).decide(limited)
    assert len(dec.prefill_chunks) == 2  # 2 x (100 + 500) fits 1250, a third would not
    assert dec.kv_tokens_used == 1200
    capped = SchedulerSnapshot.build(0.0, [], prefills, **CAPS, max_new_prefills=3)
    assert len(FairBatchingPolicy(CM).decide(capped).prefill_chunks) == 3


def test_decodes_beyond_kv_are_unserved_not_parked() -> None:
    decodes = [_decode(10.0), _decode(20.0), _decode(30.0)]
    snap = SchedulerSnapshot.build(0.0, decodes, [_prefill(500)], **{**CAPS, "kv_free_tokens": 2})
    dec = FairBatchingPolicy(CM).decide(snap)
    assert dec.run_decode_indices == (0, 1)
    assert dec.unserved_decode_indices == (2,)
    assert dec.prefill_chunks == ()


def test_small_fragments_are_not_scheduled_but_progress_is_guaranteed() -> None:
    # Budget floor 5 ms leaves ~nothing for prefill beside 200 urgent decodes.
    tight = SloTargets(1000.0, 5.0)
    decodes = [DecodeRequest(-1000.0, tight, 1, 500) for _ in range(200)]
    snap = SchedulerSnapshot.build(0.0, decodes, [_prefill(4000)], **CAPS)
    starved = FairBatchingConfig(guarantee_prefill_progress=False, min_chunk_tokens=64)
    assert FairBatchingPolicy(CM, starved).decide(snap).prefill_chunks == ()
    progress = FairBatchingPolicy(CM, FairBatchingConfig(min_chunk_tokens=64)).decide(snap)
    assert progress.prefill_chunks[0].num_tokens >= 64
    assert progress.predicted_step_ms <= progress.budget_ms


def test_completing_prefill_ttft_is_protected() -> None:
    # A short prefill due in 20 ms is admitted first; the long one may not push the step past it.
    prefills = [_prefill(200, ttft_slack_ms=20.0), _prefill(6000, ttft_slack_ms=900.0)]
    snap = SchedulerSnapshot.build(0.0, [], prefills, **CAPS)
    dec = FairBatchingPolicy(CM).decide(snap)
    assert dec.prefill_chunks[0].completes_prefill
    assert dec.predicted_step_ms <= 20.0
    off = FairBatchingPolicy(CM, FairBatchingConfig(protect_prefill_ttft=False)).decide(snap)
    assert off.predicted_step_ms > 20.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"park_guard_factor": 0.5},
        {"min_chunk_tokens": 0},
        {"max_step_budget_ms": 0.0},
        {"late_prefill_order": "random"},
        {"budget_floor_tpot_fraction": -1.0},
    ],
)
def test_config_rejects_unsafe_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FairBatchingConfig(**kwargs)


def test_first_token_anchor_removes_slack_banked_by_a_fast_first_token() -> None:
    # First token 900 ms early: the arrival envelope banks 900 ms, the first-token one does not.
    early = DecodeRequest(0.0, SLO, num_output_tokens=2, kv_tokens=100, first_token_ms=100.0)
    snap = SchedulerSnapshot.build(150.0, [early], [], **CAPS)
    by_arrival = FairBatchingPolicy(CM, FairBatchingConfig(decode_deadline_anchor="arrival"))
    by_arrival = by_arrival.decide(snap)
    by_first = FairBatchingPolicy(CM, FairBatchingConfig(decode_deadline_anchor="first_token"))
    assert by_arrival.budget_ms == 0 + 1000 + 2 * 50 - 150
    assert by_first.decide(snap).budget_ms == SLO.tpot_slo_ms  # slack 100+100-150=50


def test_deadline_headroom_plans_against_a_fraction_of_the_slo() -> None:
    snap = SchedulerSnapshot.build(0.0, [_decode(400.0)], [], **CAPS)
    full = FairBatchingPolicy(CM, FairBatchingConfig(decode_deadline_anchor="arrival"))
    tight = FairBatchingPolicy(
        CM, FairBatchingConfig(decode_deadline_anchor="arrival", deadline_headroom=0.5)
    )
    assert full.decide(snap).budget_ms == 400.0
    # Half the SLO: due at a + 500 + 10 * 25 instead of a + 1000 + 10 * 50, i.e. 750 ms sooner;
    # the slack goes negative, so the budget falls to the (scaled-free) TPOT floor.
    assert tight.decide(snap).budget_ms == SLO.tpot_slo_ms
    looser = SchedulerSnapshot.build(0.0, [_decode(1000.0)], [], **CAPS)
    assert tight.decide(looser).budget_ms == 1000.0 - 750.0

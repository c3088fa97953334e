"""KV: decodes use the free KV, prefill admission the room left after the running reservation."""

from __future__ import annotations

import dataclasses

from fairbatching_sglang.core import FairBatchingPolicy, SchedulerSnapshot
from tests.core.test_policy_scenarios import CM, _decode, _prefill

TOKENS = {"max_num_batched_tokens": 8192, "max_prefill_tokens": 8192}


def test_decodes_run_on_free_kv_even_when_admission_room_is_spent():
    decodes = [_decode(40.0), *[_decode(3000.0 + i) for i in range(6)]]
    snap = SchedulerSnapshot.build(
        0.0, decodes, [_prefill(2000)], kv_free_tokens=5000, kv_admission_tokens=0, **TOKENS
    )
    dec = FairBatchingPolicy(CM).decide(snap)
    # Nothing may be admitted (the reservation is spent), so nothing is parked for it and no
    # decode is left unserved: a retraction here would free memory the running set still owns.
    assert dec.prefill_chunks == ()
    assert dec.unserved_decode_indices == ()
    assert dec.run_decode_indices == tuple(range(7))
    assert dec.parked_decode_indices == ()


def _chunks(snap: SchedulerSnapshot) -> list[tuple[int, int, bool]]:
    dec = FairBatchingPolicy(CM).decide(snap)
    return [(c.prefill_index, c.num_tokens, c.completes_prefill) for c in dec.prefill_chunks]


def test_a_new_request_needs_room_for_its_whole_prompt_and_reserve():
    """PrefillAdder (schedule_policy.py:1406-1411): NO_TOKEN unless the whole remaining prompt
    plus the reserve fit rem_total_tokens; a cut chunk is no way around it."""
    for room, expected in ((4500, [(0, 4000, True)]), (4499, [])):
        snap = SchedulerSnapshot.build(
            0.0,
            [_decode(3000.0)],
            [_prefill(4000, kv_reserve_tokens=500)],
            kv_free_tokens=100_000,
            kv_admission_tokens=room,
            **TOKENS,
        )
        assert _chunks(snap) == expected, room
    # A prompt larger than the step is still cut by the token cap once admitted.
    snap = SchedulerSnapshot.build(
        0.0, [], [_prefill(10_000, kv_reserve_tokens=500)], kv_free_tokens=100_000, **TOKENS
    )
    assert _chunks(snap) == [(0, 8192, False)]


def test_a_chunked_request_progresses_on_physical_kv_when_the_room_is_spent():
    """available_chunk_tokens (prefill_budget.py:142-145): capped by rem_total_tokens while it
    is positive, else up to the physical KV; its reserve is charged with its last chunk only."""
    cont = _prefill(3000, kv_reserve_tokens=500, is_continuing=True)
    spent = SchedulerSnapshot.build(
        0.0, [], [cont], kv_free_tokens=2000, kv_admission_tokens=0, **TOKENS
    )
    assert _chunks(spent) == [(0, 2000, False)]
    some = SchedulerSnapshot.build(
        0.0, [], [cont], kv_free_tokens=100_000, kv_admission_tokens=1200, **TOKENS
    )
    assert _chunks(some) == [(0, 1200, False)]  # a cut chunk: no reserve charged yet
    # Its last chunk charges its reserve, which the next request's admission then sees.
    last = _prefill(1000, kv_reserve_tokens=2000, is_continuing=True)
    snap = SchedulerSnapshot.build(
        0.0, [], [last, _prefill(500, kv_reserve_tokens=0)], kv_free_tokens=100_000,
        kv_admission_tokens=3499, **TOKENS,
    )  # fmt: skip
    assert _chunks(snap) == [(0, 1000, True)]
    snap = dataclasses.replace(snap, kv_admission_tokens=3500)
    assert _chunks(snap) == [(0, 1000, True), (1, 500, True)]


def test_free_kv_caps_the_chunk_too():
    snap = SchedulerSnapshot.build(
        0.0, [], [_prefill(4000)], kv_free_tokens=700, kv_admission_tokens=10_000, **TOKENS
    )
    (chunk,) = FairBatchingPolicy(CM).decide(snap).prefill_chunks
    assert chunk.num_tokens == 700


def test_urgent_decodes_beyond_free_kv_are_unserved():
    decodes = [_decode(10.0) for _ in range(5)]
    snap = SchedulerSnapshot.build(
        0.0, decodes, [], kv_free_tokens=3, kv_admission_tokens=100, **TOKENS
    )
    dec = FairBatchingPolicy(CM).decide(snap)
    assert len(dec.run_decode_indices) == 3 and len(dec.unserved_decode_indices) == 2


def test_without_admission_room_the_free_kv_is_both():
    for tokens, expected in ((1000, [(0, 1000, True)]), (1001, [])):
        snap = SchedulerSnapshot.build(
            0.0, [], [_prefill(tokens, kv_reserve_tokens=100)], kv_free_tokens=1100, **TOKENS
        )
        assert _chunks(snap) == expected, tokens

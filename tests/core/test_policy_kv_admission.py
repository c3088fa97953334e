"""KV: decodes use the free KV, prefill admission the room left after the running reservation."""

from __future__ import annotations

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


def test_admission_room_caps_the_chunk_with_its_reserve():
    snap = SchedulerSnapshot.build(
        0.0,
        [_decode(3000.0)],
        [_prefill(4000, kv_reserve_tokens=500)],
        kv_free_tokens=100_000,
        kv_admission_tokens=1500,
        **TOKENS,
    )
    (chunk,) = FairBatchingPolicy(CM).decide(snap).prefill_chunks
    # 1500 - 500 (its reserve) = 1000 tokens of chunk; the decode's token is its own.
    assert chunk.num_tokens == 1000


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
    snap = SchedulerSnapshot.build(
        0.0, [], [_prefill(4000, kv_reserve_tokens=100)], kv_free_tokens=1100, **TOKENS
    )
    (chunk,) = FairBatchingPolicy(CM).decide(snap).prefill_chunks
    assert chunk.num_tokens == 1000

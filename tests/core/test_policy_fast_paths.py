"""The policy's hot-path shortcuts give exactly what the plain formulas give."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings

from fairbatching_sglang.core import (
    FairBatchingConfig,
    FairBatchingPolicy,
    SchedulerSnapshot,
    decode_slack_ms,
    next_token_slack_ms,
)
from fairbatching_sglang.core.slo import SloTargets
from fairbatching_sglang.core.snapshot import DecodeRequest
from tests.core.strategies import DEFAULT_MODEL, any_snapshots, configs, cost_models

FAST_SETTINGS = settings(max_examples=300, deadline=None)


@FAST_SETTINGS
@given(any_snapshots, configs)
def test_first_token_anchor_slack_is_bit_identical_to_the_shifted_envelope(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig
) -> None:
    dec = snap.decodes
    h = cfg.deadline_headroom
    ttft = dec.ttft_slo_ms * h if h != 1.0 else dec.ttft_slo_ms
    tpot = dec.tpot_slo_ms * h if h != 1.0 else dec.tpot_slo_ms
    plain = next_token_slack_ms(snap.now_ms, dec.arrival_ms, ttft, tpot, dec.num_output_tokens)
    if cfg.decode_deadline_anchor == "first_token":
        known = ~np.isnan(dec.first_token_ms)
        plain = np.where(known, plain + (dec.first_token_ms - (dec.arrival_ms + ttft)), plain)
    fast = decode_slack_ms(snap, cfg)
    assert fast.dtype == plain.dtype
    assert np.array_equal(fast, plain)  # no NaN: every row has a deadline


@FAST_SETTINGS
@given(any_snapshots, configs, cost_models)
def test_decision_lists_are_sorted_distinct_and_complete(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, cm: object
) -> None:
    dec = FairBatchingPolicy(cm, cfg).decide(snap)  # type: ignore[arg-type]
    for rows in (dec.run_decode_indices, dec.parked_decode_indices, dec.unserved_decode_indices):
        assert list(rows) == sorted(set(rows))
        assert all(type(i) is int for i in rows)
    every = sorted(dec.run_decode_indices + dec.parked_decode_indices + dec.unserved_decode_indices)
    assert every == list(range(snap.decodes.num_reqs))


def test_all_urgent_decodes_run_without_ordering() -> None:
    """Every decode urgent and within the caps: all run (the path that skips the slack sort),
    and the KV sum is the whole column's."""
    slo = SloTargets(1000.0, 50.0)
    decodes = [  # same slack except the last (a little later): all within the guard
        DecodeRequest(arrival_ms=float(a), slo=slo, num_output_tokens=2, kv_tokens=100 + i)
        for i, a in enumerate((0, 0, 0, 3))
    ]
    snap = SchedulerSnapshot.build(
        1000.0, decodes, max_num_batched_tokens=64, max_prefill_tokens=64, kv_free_tokens=1000
    )
    dec = FairBatchingPolicy(DEFAULT_MODEL).decide(snap)
    assert dec.run_decode_indices == (0, 1, 2, 3)
    assert dec.num_urgent_decodes == 4
    assert dec.predicted_step_ms == DEFAULT_MODEL.predict_raw_ms(
        4, float(4 * 100 + 6), 0.0, num_decode_reqs=4
    )
    # One token of room fewer than decodes: the most urgent run, the latest is unserved.
    tight = dataclasses.replace(snap, max_num_batched_tokens=3)
    dec = FairBatchingPolicy(DEFAULT_MODEL).decide(tight)
    assert dec.run_decode_indices == (0, 1, 2) and dec.unserved_decode_indices == (3,)

"""Guarantees of FairBatching batch formation, checked over random snapshots."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fairbatching_sglang.core import (
    BatchDecision,
    FairBatchingConfig,
    FairBatchingPolicy,
    HingeCostModel,
    SchedulerSnapshot,
    chunk_attn_work,
    decode_slack_ms,
    next_token_slack_ms,
)
from tests.core.strategies import DEFAULT_MODEL, any_snapshots, configs, cost_models, snapshots

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


def _slack(snap: SchedulerSnapshot, cfg: FairBatchingConfig) -> np.ndarray:
    return decode_slack_ms(snap, cfg)


def _recount(snap: SchedulerSnapshot, dec: BatchDecision, cm: HingeCostModel) -> dict:
    run = list(dec.run_decode_indices)
    prefill_tokens = sum(c.num_tokens for c in dec.prefill_chunks)
    # A reserve is charged with a request's last chunk (SGLang's adder charges none for a cut one).
    reserve = sum(
        int(snap.prefills.kv_reserve_tokens[c.prefill_index])
        for c in dec.prefill_chunks
        if c.completes_prefill
    )
    decode_kv = int(snap.decodes.kv_tokens[run].sum()) if run else 0
    work = sum(
        chunk_attn_work(c.num_tokens, int(snap.prefills.num_cached_tokens[c.prefill_index]))
        for c in dec.prefill_chunks
    )
    tokens = len(run) + prefill_tokens
    return {
        "tokens": tokens,
        "prefill_tokens": prefill_tokens,
        "kv": len(run) + prefill_tokens + reserve,
        "reserve": reserve,
        "predicted": cm.predict_raw_ms(tokens, decode_kv, work, num_decode_reqs=len(run)),
    }


@PROPERTY_SETTINGS
@given(snap=any_snapshots, cfg=configs, cm=cost_models)
def test_decision_respects_caps_and_kv_limit(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, cm: HingeCostModel
) -> None:
    dec = FairBatchingPolicy(cm, cfg).decide(snap)
    counts = _recount(snap, dec, cm)
    assert counts["tokens"] == dec.num_batched_tokens <= snap.max_num_batched_tokens
    assert counts["prefill_tokens"] == dec.num_prefill_tokens <= snap.max_prefill_tokens
    assert counts["kv"] == dec.kv_tokens_used
    # What the step occupies fits the free KV. A new request is admitted only when its whole
    # remaining prompt and its reserve fit the admission room left (SGLang's NO_TOKEN rule);
    # a continuing chunk may run on the physical KV once that room is spent.
    assert counts["tokens"] <= snap.kv_free_tokens
    pre = snap.prefills
    charged = 0
    for c in dec.prefill_chunks:
        i = c.prefill_index
        if pre.is_continuing[i]:
            charged += c.num_tokens + (int(pre.kv_reserve_tokens[i]) if c.completes_prefill else 0)
        else:
            charged += int(pre.num_remaining_tokens[i]) + int(pre.kv_reserve_tokens[i])
            assert charged <= snap.admission_room_tokens
    assert abs(counts["predicted"] - dec.predicted_step_ms) < 1e-6
    new_admitted = sum(
        1 for c in dec.prefill_chunks if not snap.prefills.is_continuing[c.prefill_index]
    )
    if snap.max_new_prefills is not None:
        assert new_admitted <= snap.max_new_prefills


@PROPERTY_SETTINGS
@given(snap=any_snapshots, cfg=configs, cm=cost_models)
def test_decode_rows_are_partitioned_and_chunks_well_formed(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, cm: HingeCostModel
) -> None:
    dec = FairBatchingPolicy(cm, cfg).decide(snap)
    groups = [dec.run_decode_indices, dec.parked_decode_indices, dec.unserved_decode_indices]
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(snap.decodes.num_reqs))
    pre = snap.prefills
    idx = [c.prefill_index for c in dec.prefill_chunks]
    assert len(set(idx)) == len(idx)
    for pos, chunk in enumerate(dec.prefill_chunks):
        remaining = int(pre.num_remaining_tokens[chunk.prefill_index])
        assert 1 <= chunk.num_tokens <= remaining
        assert chunk.completes_prefill == (chunk.num_tokens == remaining)
        if not chunk.completes_prefill:
            assert pos == len(dec.prefill_chunks) - 1, "only the last chunk may be partial"
        if pre.is_continuing[chunk.prefill_index]:
            assert pos == 0, "the continuing chunk goes first"


@PROPERTY_SETTINGS
@given(snap=any_snapshots, cfg=configs, cm=cost_models)
def test_decode_with_slack_below_step_time_is_never_parked(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, cm: HingeCostModel
) -> None:
    dec = FairBatchingPolicy(cm, cfg).decide(snap)
    if not dec.parked_decode_indices:
        return
    slack = _slack(snap, cfg)
    d = snap.decodes
    # Parking must leave at least one more decode-only step of slack after this step.
    next_step_ms = cm.predict_raw_ms(
        d.num_reqs, float(d.kv_tokens.sum()), 0.0, num_decode_reqs=d.num_reqs
    )
    for i in dec.parked_decode_indices:
        assert slack[i] > dec.predicted_step_ms
        assert slack[i] >= dec.predicted_step_ms + next_step_ms - 1e-9
        assert d.can_park[i]
        if cfg.max_consecutive_parked_steps is not None:
            assert d.parked_steps[i] < cfg.max_consecutive_parked_steps
    caps_full = (
        dec.num_batched_tokens == snap.max_num_batched_tokens
        or dec.kv_tokens_used == snap.kv_free_tokens
    )
    # Parking only makes room for prefill; otherwise a decode sits out only when caps are full.
    assert dec.prefill_chunks or caps_full
    if dec.prefill_chunks and not caps_full:
        assert dec.predicted_step_ms <= dec.budget_ms + 1e-9
    assert cfg.enable_parking


@PROPERTY_SETTINGS
@given(snap=snapshots(with_prefills=False), cfg=configs, cm=cost_models)
def test_without_competing_work_every_decode_runs(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, cm: HingeCostModel
) -> None:
    dec = FairBatchingPolicy(cm, cfg).decide(snap)
    n = snap.decodes.num_reqs
    if n <= min(snap.max_num_batched_tokens, snap.kv_free_tokens):
        assert not dec.parked_decode_indices
        assert dec.run_decode_indices == tuple(range(n))
        assert not dec.unserved_decode_indices


@PROPERTY_SETTINGS
@given(snap=any_snapshots, cfg=configs, cm=cost_models)
def test_same_snapshot_same_decision(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, cm: HingeCostModel
) -> None:
    policy = FairBatchingPolicy(cm, cfg)
    first = policy.decide(snap)
    rebuilt = dataclasses.replace(
        snap,
        decodes=dataclasses.replace(
            snap.decodes,
            **{f: getattr(snap.decodes, f).copy() for f in ("arrival_ms", "kv_tokens")},
        ),
    )
    assert policy.decide(snap) == first
    assert FairBatchingPolicy(cm, cfg).decide(rebuilt) == first


def _advance(snap: SchedulerSnapshot, dec: BatchDecision) -> SchedulerSnapshot:
    """The next step's snapshot: run decodes gain a token, parked ones count a parked step."""
    d = snap.decodes
    ran = np.zeros(d.num_reqs, dtype=bool)
    ran[list(dec.run_decode_indices)] = True
    decodes = dataclasses.replace(
        d,
        num_output_tokens=d.num_output_tokens + ran,
        kv_tokens=d.kv_tokens + ran,
        parked_steps=np.where(ran, 0, d.parked_steps + 1),
    )
    return dataclasses.replace(snap, now_ms=snap.now_ms + dec.predicted_step_ms, decodes=decodes)


@PROPERTY_SETTINGS
@given(snap=any_snapshots, cfg=configs, steps=st.integers(2, 4))
def test_repeated_parking_never_pushes_a_decode_past_its_deadline(
    snap: SchedulerSnapshot, cfg: FairBatchingConfig, steps: int
) -> None:
    policy = FairBatchingPolicy(DEFAULT_MODEL, cfg)
    was_parked: set[int] = set()
    for _ in range(steps):
        dec = policy.decide(snap)
        slack = _slack(snap, cfg)
        for i in dec.parked_decode_indices:
            # Parked again (or first time): its next token is still due after this step ends.
            assert slack[i] > dec.predicted_step_ms
        for i in set(dec.run_decode_indices) & was_parked:
            # Back after parking: it was parked with at least one step of slack to spare.
            assert slack[i] > 0 or snap.decodes.num_reqs == 0
        was_parked = set(dec.parked_decode_indices)
        snap = _advance(snap, dec)


def test_vectorised_slack_matches_scalar_deadline() -> None:
    from fairbatching_sglang.core import SloTargets, token_slack_ms

    slo = SloTargets(800.0, 40.0)
    got = next_token_slack_ms(
        1000.0, np.array([100.0]), np.array([800.0]), np.array([40.0]), np.array([3])
    )
    assert got[0] == token_slack_ms(1000.0, 100.0, slo, 3) == 100 + 800 + 3 * 40 - 1000

"""Build the core SchedulerSnapshot from SGLang's running batch, chunked request and queue.

Per step the only per-row Python work is C-level: one attribute read per request for its state
(`map(attrgetter)`), one for `len(output_ids)` (and `prefix_len` for queued ones); every other
column is a numpy gather from the hook's per-request pool (req_state.ReqStatePool). At 256
running and hundreds waiting this is the adapter's main cost per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from fairbatching_sglang.core.slo import SloTargets
from fairbatching_sglang.core.snapshot import DecodeRows, PrefillRows, SchedulerSnapshot
from fairbatching_sglang.sglang_adapter.req_state import (
    STATE_ATTR,
    ReqStatePool,
    ReqTiming,
    timing_of,
)

# SGLang's PrefillAdder clips a request's reserved future output at this many tokens.
CLIP_MAX_NEW_TOKENS = 4096


@dataclass(slots=True)
class SnapshotInputs:
    """What the scheduler exposes for one decision (plain values, so tests can build it).

    Made once per step and only read (not frozen: a frozen dataclass pays ~1 us to build).
    """

    now_ms: float
    running_reqs: list[Any]
    chunked_req: Any | None
    waiting_reqs: list[Any]
    batch_can_park: bool
    max_num_batched_tokens: int
    max_prefill_tokens: int
    kv_free_tokens: int  # free + evictable now; build_snapshot subtracts the running reserve
    max_new_prefills: int | None
    new_token_ratio: float


def row_can_park(req: Any) -> bool:
    """False for rows whose sampling state a split/merge would lose (DESIGN.md section 2)."""
    sp = req.sampling_params
    return not (
        req.return_logprob
        or req.custom_logit_processor is not None
        or getattr(req, "beam_group", None) is not None
        or sp.min_new_tokens > 0
        or sp.frequency_penalty != 0.0
        or sp.presence_penalty != 0.0
        or sp.repetition_penalty != 1.0
    )


def batch_can_park(batch: Any) -> bool:
    """Batch-level state shared by a shallow split: penalizers, custom processors, logprobs."""
    info = getattr(batch, "sampling_info", None)
    if info is None:
        return True
    orchestrator = getattr(info, "penalizer_orchestrator", None)
    return not (
        (orchestrator is not None and orchestrator.is_required)
        or getattr(info, "has_custom_logit_processor", False)
        or batch.return_logprob
    )


_get_state = attrgetter(STATE_ATTR)
_get_slot = attrgetter("slot")
_get_output_ids = attrgetter("output_ids")
_get_prefix_len = attrgetter("prefix_len")


class SnapshotCache:
    """Hook-owned state kept between steps: the per-request column pool, and the running rows'
    slots and constant columns (arrival, SLOs, prompt length, output cap, can_park).

    The running batch changes rarely between steps (a new list object, the same requests), so
    the states, slots and constant columns are gathered again only when the sequence of
    requests differs from the previous step's (a request's state never changes once made).
    """

    __slots__ = (
        "arrival",
        "can_park",
        "max_new",
        "max_new_sum",
        "pool",
        "prompt_len",
        "reqs",
        "slots",
        "tpot",
        "ttft",
    )

    def __init__(self, pool: ReqStatePool | None = None) -> None:
        self.pool = pool if pool is not None else ReqStatePool()
        self.reqs: list[Any] = []
        self.slots = np.empty(0, dtype=np.int64)
        empty_f = np.empty(0, dtype=np.float64)
        empty_i = np.empty(0, dtype=np.int64)
        self.arrival = self.ttft = self.tpot = empty_f
        self.prompt_len = self.max_new = empty_i
        self.can_park = np.empty(0, dtype=bool)
        self.max_new_sum = 0

    def update(self, reqs: list[Any], default_slo: SloTargets, now_ms: float) -> None:
        if reqs == self.reqs:  # identity per element (SGLang's Req has no __eq__)
            return
        pool = self.pool
        slots = slots_of(states_of(reqs, pool, default_slo, now_ms))
        arrival = pool.arrival_ms[slots]
        ttft = pool.ttft_slo_ms[slots]
        tpot = pool.tpot_slo_ms[slots]
        prompt_len = pool.prompt_len[slots]
        max_new = pool.max_new_tokens[slots]
        can_park = pool.can_park[slots]
        for arr in (slots, arrival, ttft, tpot, prompt_len, max_new, can_park):
            arr.flags.writeable = False  # shared by successive snapshots
        self.slots, self.arrival, self.ttft, self.tpot = slots, arrival, ttft, tpot
        self.prompt_len, self.max_new, self.can_park = prompt_len, max_new, can_park
        self.max_new_sum = int(max_new.sum())
        self.reqs = list(reqs)  # last: a failure above leaves the previous (consistent) entry


def states_of(
    reqs: list[Any], pool: ReqStatePool, default_slo: SloTargets, now_ms: float
) -> list[ReqTiming]:
    """Each request's ReqTiming (created on first sight); one attribute read per row.

    Requests without a state yet (just queued: usually a few at the queue's tail) stop the
    C-level pass; their state is made and the pass resumes after them.
    """
    states: list[ReqTiming] = []
    rest = iter(reqs)
    while True:
        try:
            states.extend(map(_get_state, rest))
            return states
        except AttributeError:
            pass
        # list.extend keeps what it appended before the error (CPython), so the request
        # without a state is reqs[len(states)]; anything else takes the plain path.
        i = len(states)
        if i >= len(reqs) or getattr(reqs[i], STATE_ATTR, None) is not None:
            return [
                getattr(req, STATE_ATTR, None)
                or timing_of(req, pool, default_slo, now_ms, row_can_park)
                for req in reqs
            ]
        states.append(timing_of(reqs[i], pool, default_slo, now_ms, row_can_park))


def slots_of(states: list[ReqTiming]) -> np.ndarray:
    return np.fromiter(map(_get_slot, states), np.int64, len(states))


def output_lens(reqs: list[Any]) -> np.ndarray:
    """len(req.output_ids) per request."""
    return np.fromiter(map(len, map(_get_output_ids, reqs)), np.int64, len(reqs))


def build_snapshot(
    inp: SnapshotInputs, default_slo: SloTargets, cache: SnapshotCache
) -> SchedulerSnapshot:
    """Columns gathered from the per-request pool; kv_free_tokens loses the KV the running
    requests will still grow into (what the PrefillAdder reserves for them).

    The arrays are built here, so the core rows are made without re-validating them
    (`DecodeRows.trusted`); tests compare the result with the validating constructors.
    `cache` is the hook's: the requests' states hold slots in its pool, so a fresh pool would
    read other rows (or bind new states to a pool nothing else reads).
    """
    pool = cache.pool
    now = inp.now_ms
    ratio = inp.new_token_ratio
    running = inp.running_reqs
    n = len(running)
    cache.update(running, default_slo, now)
    slots = cache.slots
    num_out = np.maximum(output_lens(running), pool.num_scheduled_tokens[slots])
    can_park = cache.can_park if inp.batch_can_park else np.zeros(n, dtype=bool)
    decodes = DecodeRows.trusted(
        arrival_ms=cache.arrival,
        ttft_slo_ms=cache.ttft,
        tpot_slo_ms=cache.tpot,
        num_output_tokens=num_out,
        kv_tokens=cache.prompt_len + num_out,
        can_park=can_park,
        parked_steps=pool.parked_steps[slots],
        first_token_ms=pool.first_token_ms[slots],
    )
    future_kv = cache.max_new_sum - int(num_out.sum())  # sum of (max_new - num_out), exact
    kv_free = inp.kv_free_tokens - int(future_kv * ratio)

    chunked = inp.chunked_req
    candidates = [chunked, *inp.waiting_reqs] if chunked is not None else inp.waiting_reqs
    m = len(candidates)
    p_slots = slots_of(states_of(candidates, pool, default_slo, now))
    p_out = output_lens(candidates)
    # A continuing chunk's KV reaches extend_end (the last chunk, maybe still in flight);
    # a queued request's prefix_len is the last prefix match (0 if none yet: conservative).
    cached = np.fromiter(map(_get_prefix_len, candidates), np.int64, m)
    if chunked is not None and (chunked.extend_end or 0) > cached[0]:
        cached[0] = chunked.extend_end
    remaining = np.maximum(pool.prompt_len[p_slots] + p_out - cached, 1)
    # Future output the adder reserves: min(left, clip) * ratio, none once nothing is left.
    left = pool.max_new_tokens[p_slots] - p_out
    np.maximum(left, 0, out=left)
    np.minimum(left, CLIP_MAX_NEW_TOKENS, out=left)
    reserve = (left * ratio).astype(np.int64)
    continuing = np.zeros(m, dtype=bool)
    if chunked is not None:
        continuing[0] = True
    prefills = PrefillRows.trusted(
        arrival_ms=pool.arrival_ms[p_slots],
        ttft_slo_ms=pool.ttft_slo_ms[p_slots],
        num_remaining_tokens=remaining,
        num_cached_tokens=cached,
        kv_reserve_tokens=reserve,
        is_continuing=continuing,
    )
    return SchedulerSnapshot(
        now_ms=now,
        decodes=decodes,
        prefills=prefills,
        max_num_batched_tokens=inp.max_num_batched_tokens,
        max_prefill_tokens=inp.max_prefill_tokens,
        kv_free_tokens=max(0, kv_free),
        max_new_prefills=inp.max_new_prefills,
    )

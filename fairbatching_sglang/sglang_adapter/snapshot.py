"""Build the core SchedulerSnapshot from SGLang's running batch, chunked request and queue.

One pass over the rows, straight into numpy columns (no per-row dataclasses): at 256 running and
hundreds waiting this is the adapter's main cost per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fairbatching_sglang.core.slo import SloTargets
from fairbatching_sglang.core.snapshot import DecodeRows, PrefillRows, SchedulerSnapshot
from fairbatching_sglang.sglang_adapter.req_state import ReqTiming, timing_of

# SGLang's PrefillAdder clips a request's reserved future output at this many tokens.
CLIP_MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class SnapshotInputs:
    """What the scheduler exposes for one decision (plain values, so tests can build it)."""

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


class SnapshotCache:
    """Per-request constants of the running rows, kept between steps.

    The running batch changes rarely between steps (a new list object, the same requests), so
    the constant columns (arrival, SLOs, prompt length, output cap, can_park) are rebuilt only
    when the sequence of per-request states differs from the previous step's.
    """

    __slots__ = ("arrival", "can_park", "max_new", "prompt_len", "states", "tpot", "ttft")

    def __init__(self) -> None:
        self.states: list[ReqTiming] = []
        empty_f = np.empty(0, dtype=np.float64)
        empty_i = np.empty(0, dtype=np.int64)
        self.arrival = self.ttft = self.tpot = empty_f
        self.prompt_len = self.max_new = empty_i
        self.can_park = np.empty(0, dtype=bool)

    def update(self, states: list[ReqTiming]) -> None:
        if states == self.states:  # identity per element (ReqTiming has no __eq__)
            return
        n = len(states)
        self.arrival = np.fromiter([st.arrival_ms for st in states], np.float64, n)
        self.ttft = np.fromiter([st.ttft_slo_ms for st in states], np.float64, n)
        self.tpot = np.fromiter([st.tpot_slo_ms for st in states], np.float64, n)
        self.prompt_len = np.fromiter([st.prompt_len for st in states], np.int64, n)
        self.max_new = np.fromiter([st.max_new_tokens for st in states], np.int64, n)
        self.can_park = np.fromiter([st.can_park for st in states], bool, n)
        for arr in (self.arrival, self.ttft, self.tpot, self.prompt_len, self.max_new):
            arr.flags.writeable = False  # shared by successive snapshots
        self.can_park.flags.writeable = False
        self.states = states


def states_of(reqs: list[Any], default_slo: SloTargets, now_ms: float) -> list[ReqTiming]:
    """Each request's ReqTiming (created on first sight); one attribute read per row."""
    try:
        states = [req.fairbatching_state for req in reqs]
    except AttributeError:
        states = [None] * len(reqs)
    if None in states:
        states = [
            st if st is not None else timing_of(req, default_slo, now_ms, row_can_park)
            for req, st in zip(reqs, states, strict=True)
        ]
    return states


def build_snapshot(
    inp: SnapshotInputs, default_slo: SloTargets, cache: SnapshotCache | None = None
) -> SchedulerSnapshot:
    """Columns straight from per-request state; kv_free_tokens loses the KV the running
    requests will still grow into (what the PrefillAdder reserves for them)."""
    now = inp.now_ms
    ratio = inp.new_token_ratio
    running = inp.running_reqs
    n = len(running)
    states = states_of(running, default_slo, now)
    if cache is None:
        cache = SnapshotCache()
    cache.update(states)
    num_out = np.maximum(
        np.fromiter([len(req.output_ids) for req in running], np.int64, n),
        np.fromiter([st.num_scheduled_tokens for st in states], np.int64, n),
    )
    can_park = cache.can_park if inp.batch_can_park else np.zeros(n, dtype=bool)
    decodes = DecodeRows(
        arrival_ms=cache.arrival,
        ttft_slo_ms=cache.ttft,
        tpot_slo_ms=cache.tpot,
        num_output_tokens=num_out,
        kv_tokens=cache.prompt_len + num_out,
        can_park=can_park,
        parked_steps=np.fromiter([st.parked_steps for st in states], np.int64, n),
        first_token_ms=np.fromiter([st.first_token_ms for st in states], np.float64, n),
    )
    future_kv = int((cache.max_new - num_out).sum()) if n else 0
    kv_free = inp.kv_free_tokens - int(future_kv * ratio)

    chunked = inp.chunked_req
    candidates = ([chunked] if chunked is not None else []) + inp.waiting_reqs
    m = len(candidates)
    p_states = states_of(candidates, default_slo, now)
    p_out = np.fromiter([len(req.output_ids) for req in candidates], np.int64, m)
    # A continuing chunk's KV reaches extend_end (the last chunk, maybe still in flight);
    # a queued request's prefix_len is the last prefix match (0 if none yet: conservative).
    cached = np.fromiter([req.prefix_len for req in candidates], np.int64, m)
    if chunked is not None and (chunked.extend_end or 0) > cached[0]:
        cached[0] = chunked.extend_end
    prompt_len = np.fromiter([st.prompt_len for st in p_states], np.int64, m)
    remaining = np.maximum(prompt_len + p_out - cached, 1)
    left = np.fromiter([st.max_new_tokens for st in p_states], np.int64, m) - p_out
    reserve = np.where(
        left > 0, (np.minimum(left, CLIP_MAX_NEW_TOKENS) * ratio).astype(np.int64), 0
    )
    continuing = np.zeros(m, dtype=bool)
    if chunked is not None:
        continuing[0] = True
    prefills = PrefillRows(
        arrival_ms=np.fromiter([st.arrival_ms for st in p_states], np.float64, m),
        ttft_slo_ms=np.fromiter([st.ttft_slo_ms for st in p_states], np.float64, m),
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

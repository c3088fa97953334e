"""Build the core SchedulerSnapshot from SGLang's running batch, chunked request and queue.

Per step the only per-row Python work is C-level: one attribute read per request for its state
(`map(attrgetter)`), one for `len(output_ids)` (and `prefix_len` for queued ones); every other
column is a numpy gather from the hook's per-request pool (req_state.ReqStatePool). At 256
running and hundreds waiting this is the adapter's main cost per step.
"""

from __future__ import annotations

import dataclasses
import math
import os
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

# SGLang's PrefillAdder clips a request's reserved future output at this many tokens (read
# from the same environment variable, managers/schedule_policy.py:89-91).
CLIP_MAX_NEW_TOKENS = int(os.environ.get("SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION", "4096"))


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
    # Free + evictable KV now (the adder's PrefillBudget.remaining_total before any offset);
    # build_snapshot subtracts what the adder reserves for the running rows.
    kv_free_tokens: int
    max_new_prefills: int | None
    new_token_ratio: float
    # KV the adder charges per admitted request beyond its chunk: per_req_token_overhead, the
    # page size without KV sharding (schedule_policy.py:733-737, charged by
    # _update_prefill_budget -> PrefillBudget.reserve, prefill_budget.py:156-168).
    req_token_overhead: int = 1


def row_can_park(req: Any) -> bool:
    """False for rows whose sampling state a split/merge would lose (DESIGN.md section 2), and
    for rows already aborting or finished. Evaluated once per request (its first sight); an
    abort that comes later is caught by parks_aborting_rows."""
    sp = req.sampling_params
    return not (
        req.to_finish
        or req.finished()
        or req.return_logprob
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
_get_to_finish = attrgetter("to_finish")


class SnapshotCache:
    """Hook-owned state kept between steps: the per-request column pool, and the running rows'
    slots and constant columns (arrival, SLOs, prompt length, output cap, can_park).

    The running batch changes rarely between steps (a new list object, the same requests), so
    the states, slots and constant columns are gathered again only when the sequence of
    requests differs from the previous step's (a request's state never changes once made).
    """

    __slots__ = (
        "all_ignore_eos",
        "any_ignore_eos",
        "arrival",
        "can_park",
        "ignore_eos",
        "max_new",
        "max_new_over_clip",
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
        self.can_park = self.ignore_eos = np.empty(0, dtype=bool)
        self.max_new_over_clip = self.any_ignore_eos = False
        self.all_ignore_eos = True

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
        ignore_eos = pool.ignore_eos[slots]
        for arr in (slots, arrival, ttft, tpot, prompt_len, max_new, can_park, ignore_eos):
            arr.flags.writeable = False  # shared by successive snapshots
        self.slots, self.arrival, self.ttft, self.tpot = slots, arrival, ttft, tpot
        self.prompt_len, self.max_new, self.can_park = prompt_len, max_new, can_park
        self.ignore_eos = ignore_eos
        # Shortcuts for the per-step reserve (the common cases skip a numpy pass each).
        self.max_new_over_clip = bool(len(max_new)) and int(max_new.max()) > CLIP_MAX_NEW_TOKENS
        self.any_ignore_eos = bool(ignore_eos.any())
        self.all_ignore_eos = bool(ignore_eos.all())
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


def running_reserve(cache: SnapshotCache, out_lens: np.ndarray, ratio: float) -> float:
    """What PrefillAdder.__init__ adds to its KV offset for the running rows
    (schedule_policy.py:673-680 -> _get_running_request_total_token_offset, :785-795): per row
    min(max_new_tokens - len(output_ids), CLIP) * ratio, ratio 1.0 for ignore_eos rows (which
    cannot stop early). `len(output_ids)`, not the hook's scheduled count: the adder reads it
    as is, one step stale under overlap. Up to float summation order, the adder's value."""
    left = cache.max_new - out_lens
    if cache.max_new_over_clip:
        left = np.minimum(left, CLIP_MAX_NEW_TOKENS)
    if cache.all_ignore_eos:
        return float(left.sum())
    if not cache.any_ignore_eos:
        return float((left * ratio).sum())
    return float((left * np.where(cache.ignore_eos, 1.0, ratio)).sum())


def parks_aborting_rows(running: list[Any], parked_rows: tuple[int, ...]) -> bool:
    """Whether the decision parks a row being aborted.

    Scheduler.abort_request only sets `req.to_finish` on a running request
    (scheduler.py:5824-5839); the abort completes, and the KV is freed, when the row runs once
    more (Req.update_finish_state, schedule_batch.py:2011-2014, then the result processor).
    A parked row would hold its KV and its client for as long as the policy keeps parking it.
    Checked on the parked rows only, after the decision (C-level; nothing on steps that park
    nothing), instead of on every running row before it.
    """
    return bool(parked_rows) and any(map(_get_to_finish, map(running.__getitem__, parked_rows)))


def forbid_parking_aborting(snap: SchedulerSnapshot, running: list[Any]) -> SchedulerSnapshot:
    """The same snapshot with the rows being aborted unparkable (rare: after an abort)."""
    dec = snap.decodes
    aborting = np.fromiter(map(bool, map(_get_to_finish, running)), bool, len(running))
    decodes = DecodeRows.trusted(
        arrival_ms=dec.arrival_ms,
        ttft_slo_ms=dec.ttft_slo_ms,
        tpot_slo_ms=dec.tpot_slo_ms,
        num_output_tokens=dec.num_output_tokens,
        kv_tokens=dec.kv_tokens,
        can_park=dec.can_park & ~aborting,
        parked_steps=dec.parked_steps,
        first_token_ms=dec.first_token_ms,
    )
    return dataclasses.replace(snap, decodes=decodes)


def build_snapshot(
    inp: SnapshotInputs, default_slo: SloTargets, cache: SnapshotCache
) -> SchedulerSnapshot:
    """Columns gathered from the per-request pool; KV room and request reserves are the
    PrefillAdder's (schedule_policy.py, mem_cache/prefill_budget.py):
    - kv_free_tokens: free + evictable, what this step's tokens occupy (decodes that do not fit
      it are left to SGLang's retraction, as check_decode_mem decides).
    - kv_admission_tokens: free + evictable minus the running rows' reserve (running_reserve),
      minus one because the adder admits only while `total_tokens < remaining_total` (strict,
      prefill_budget.py:128), minus one token per running row: the adder charges the mixed
      decode tokens against the same budget (apply_adder_budgets gives the parked rows' token
      back, so this is conservative by the number parked). The core charges admitted chunks
      and their reserves only.
    - kv_reserve_tokens of a request: what the adder charges on admission beyond the chunk,
      min(max_new_tokens, CLIP) (the whole clipped output, no new_token_ratio:
      _select_prefill_admission, schedule_policy.py:1636, committed by
      _commit_prefill_admission :1685-1700; add_chunked_req :1207-1218 for a continuing chunk)
      plus per_req_token_overhead. The adder charges the output only with the request's last
      chunk and, to admit a new request at all, wants room for its whole remaining prompt
      (:1406-1411); charging it for a cut chunk too keeps the plan within what the adder admits
      except when the KV is short of the whole prompt, where the adder admits less.
    Rows being aborted are not looked at here (a per-row pass each step for a rare event):
    see parks_aborting_rows.

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
    out_lens = output_lens(running)
    num_out = np.maximum(out_lens, pool.num_scheduled_tokens[slots])
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
    kv_admission = math.ceil(inp.kv_free_tokens - running_reserve(cache, out_lens, ratio)) - 1 - n

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
    reserve = np.minimum(pool.max_new_tokens[p_slots], CLIP_MAX_NEW_TOKENS)
    reserve += inp.req_token_overhead
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
        kv_free_tokens=max(0, inp.kv_free_tokens),
        max_new_prefills=inp.max_new_prefills,
        kv_admission_tokens=max(0, kv_admission),
    )

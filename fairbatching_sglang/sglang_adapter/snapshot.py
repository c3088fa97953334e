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
from fairbatching_sglang.sglang_adapter.req_state import timing_of

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


def build_snapshot(inp: SnapshotInputs, default_slo: SloTargets) -> SchedulerSnapshot:
    """Columns straight from per-request state; kv_free_tokens loses the KV the running
    requests will still grow into (what the PrefillAdder reserves for them)."""
    now = inp.now_ms
    arrival: list[float] = []
    ttft: list[float] = []
    tpot: list[float] = []
    out: list[int] = []
    kv: list[int] = []
    park: list[bool] = []
    parked_steps: list[int] = []
    first_token: list[float] = []
    future_kv = 0
    for req in inp.running_reqs:
        st = getattr(req, "fairbatching_state", None) or timing_of(
            req, default_slo, now, row_can_park
        )
        num_out = len(req.output_ids)
        if st.num_scheduled_tokens > num_out:
            num_out = st.num_scheduled_tokens
        arrival.append(st.arrival_ms)
        ttft.append(st.ttft_slo_ms)
        tpot.append(st.tpot_slo_ms)
        out.append(num_out)
        kv.append(st.prompt_len + num_out)
        park.append(st.can_park)
        parked_steps.append(st.parked_steps)
        first_token.append(st.first_token_ms)
        future_kv += st.max_new_tokens - num_out
    can_park = np.array(park, dtype=bool)
    if not inp.batch_can_park:
        can_park[:] = False
    decodes = DecodeRows(
        arrival_ms=np.array(arrival, dtype=np.float64),
        ttft_slo_ms=np.array(ttft, dtype=np.float64),
        tpot_slo_ms=np.array(tpot, dtype=np.float64),
        num_output_tokens=np.array(out, dtype=np.int64),
        kv_tokens=np.array(kv, dtype=np.int64),
        can_park=can_park,
        parked_steps=np.array(parked_steps, dtype=np.int64),
        first_token_ms=np.array(first_token, dtype=np.float64),
    )
    kv_free = inp.kv_free_tokens - int(future_kv * inp.new_token_ratio)

    chunked = inp.chunked_req
    candidates = ([chunked] if chunked is not None else []) + inp.waiting_reqs
    p_arrival: list[float] = []
    p_ttft: list[float] = []
    remaining: list[int] = []
    cached: list[int] = []
    reserve: list[int] = []
    ratio = inp.new_token_ratio
    for req in candidates:
        st = getattr(req, "fairbatching_state", None) or timing_of(
            req, default_slo, now, row_can_park
        )
        p_arrival.append(st.arrival_ms)
        p_ttft.append(st.ttft_slo_ms)
        num_out = len(req.output_ids)
        # A continuing chunk's KV reaches extend_end (the last chunk, maybe still in flight);
        # a queued request's prefix_len is the last prefix match (0 if none yet: conservative).
        done = req.prefix_len
        if req is chunked and (req.extend_end or 0) > done:
            done = req.extend_end
        cached.append(done)
        remaining.append(max(1, st.prompt_len + num_out - done))
        left = st.max_new_tokens - num_out
        reserve.append(int(min(left, CLIP_MAX_NEW_TOKENS) * ratio) if left > 0 else 0)
    continuing = np.zeros(len(candidates), dtype=bool)
    if chunked is not None:
        continuing[0] = True
    prefills = PrefillRows(
        arrival_ms=np.array(p_arrival, dtype=np.float64),
        ttft_slo_ms=np.array(p_ttft, dtype=np.float64),
        num_remaining_tokens=np.array(remaining, dtype=np.int64),
        num_cached_tokens=np.array(cached, dtype=np.int64),
        kv_reserve_tokens=np.array(reserve, dtype=np.int64),
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

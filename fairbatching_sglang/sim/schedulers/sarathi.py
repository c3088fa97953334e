"""Sarathi / vLLM v1 default: decode-first stall-free batching with a fixed token budget.

Every running decode is served each step; prefill (the partial one first, then the queue in
order) gets what is left of max_num_batched_tokens. KV is paged without reserving future output;
when a decode step would not fit, the most recently admitted request is preempted (recompute).
"""

from __future__ import annotations

from fairbatching_sglang.sim.request import SimRequest
from fairbatching_sglang.sim.schedulers.base import StepPlan
from fairbatching_sglang.sim.state import InstanceState


class SarathiScheduler:
    name = "sarathi"

    def plan(self, now_ms: float, state: InstanceState) -> StepPlan:
        cfg = state.config
        while len(state.running) > 1 and state.kv_free_tokens < len(state.running):
            state.retract(state.running[-1])
        decodes = tuple(state.running)
        budget = cfg.sarathi_token_budget - len(decodes)
        kv_room = state.kv_free_tokens - len(decodes)
        chunks: list[tuple[SimRequest, int]] = []
        candidates = [state.chunked] if state.chunked is not None else []
        num_running = len(decodes) + len(candidates)
        for req in [*candidates, *state.waiting]:
            if budget <= 0 or kv_room <= 0:
                break
            if req is not state.chunked:
                if num_running >= cfg.max_running_requests:
                    break
                num_running += 1
            state.start_prefill(req)
            c = min(req.remaining_prefill, budget, kv_room)
            if c <= 0:
                break
            chunks.append((req, c))
            budget -= c
            kv_room -= c
            if c < req.remaining_prefill:
                break
        return StepPlan(decodes=decodes, chunks=tuple(chunks))

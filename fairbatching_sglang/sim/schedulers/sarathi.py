"""Sarathi / vLLM v1 default: decode-first stall-free batching with a fixed token budget.

Every running decode is served each step; prefill (the partial one first, then the queue in
order) gets what is left of max_num_batched_tokens. KV is paged without reserving future output;
when a decode step would not fit, the most recently admitted request is preempted (recompute)
and put back at the front of the waiting queue, as vLLM v1's scheduler does
(`self.running.pop()` ... `self.waiting.prepend_request(preempted_req)`). It resumes with its
prompt as a prefix hit (InstanceState.retract); vLLM's prefix cache would also keep the output's
full blocks, which this does not model.
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
            state.retract(state.running[-1], requeue_front=True)
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
                if num_running >= state.max_running_requests:
                    break
                num_running += 1
            state.start_prefill(req)
            # A cache hit the request pins comes out of the free KV with its first chunk.
            c = min(req.remaining_prefill, budget, kv_room - req.pending_cached_tokens)
            if c <= 0:
                break
            chunks.append((req, c))
            budget -= c
            kv_room -= c + req.pending_cached_tokens
            if c < req.remaining_prefill:
                break
        return StepPlan(decodes=decodes, chunks=tuple(chunks))

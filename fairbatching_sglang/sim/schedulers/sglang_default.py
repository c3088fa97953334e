"""SGLang 0.5.23 default: prefill-first. A prefill batch runs alone whenever one can be formed
(every decode stalls that step); otherwise all running requests decode."""

from __future__ import annotations

from fairbatching_sglang.sim.schedulers.base import StepPlan
from fairbatching_sglang.sim.schedulers.sglang_adder import sglang_prefill_chunks
from fairbatching_sglang.sim.state import InstanceState


class SglangDefaultScheduler:
    name = "sglang-default"

    def plan(self, now_ms: float, state: InstanceState) -> StepPlan:
        chunks = sglang_prefill_chunks(state, num_mixed_decode_tokens=0)
        if chunks:
            return StepPlan(chunks=chunks)
        state.retract_for_decode()
        return StepPlan(decodes=tuple(state.running), decays_token_ratio=True)

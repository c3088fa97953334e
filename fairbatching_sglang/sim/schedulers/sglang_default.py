"""SGLang 0.5.23 default: prefill-first. A prefill batch runs alone whenever one can be formed
(every decode stalls that step); otherwise all running requests decode, after SGLang's
retraction if they do not fit KV (managers/scheduler.py:4001-4013 get_next_batch_to_run: prefill
first, else update_running_batch, which retracts at :4503-4567)."""

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
        # A step that retracted re-estimates the ratio instead of decaying it (:4568-4569).
        retracted = state.retract_for_decode()
        return StepPlan(decodes=tuple(state.running), decays_token_ratio=not retracted)

"""SGLang 0.5.23 with --enable-mixed-chunk: every running decode rides with the prefill chunk and
costs one token of rem_chunk_tokens / rem_input_tokens (Sarathi-like stall-free batching)."""

from __future__ import annotations

from fairbatching_sglang.sim.schedulers.base import StepPlan
from fairbatching_sglang.sim.schedulers.sglang_adder import sglang_prefill_chunks
from fairbatching_sglang.sim.state import InstanceState


class SglangMixedScheduler:
    name = "sglang-mixed"

    def plan(self, now_ms: float, state: InstanceState) -> StepPlan:
        state.retract_for_decode()
        chunks = sglang_prefill_chunks(state, num_mixed_decode_tokens=len(state.running))
        if chunks:
            return StepPlan(decodes=tuple(state.running), chunks=chunks)
        return StepPlan(decodes=tuple(state.running), decays_token_ratio=True)

"""SGLang 0.5.23 with --enable-mixed-chunk: every running decode rides with the prefill chunk and
costs one token of rem_chunk_tokens / rem_input_tokens / rem_total_tokens (Sarathi-like
stall-free batching).

The prefill is formed first (managers/scheduler.py:4001-4003). When the KV it takes leaves no
room for the decode rows, they sit out this step and the mixed step does not retract them
(:4412-4415, check_decode_mem); retraction runs only when a decode-only step is formed
(update_running_batch, :4503-4567), which decays the ratio only when it did not retract
(:4568-4569).

Not modelled: with the overlap loop, SGLang leaves requests whose in-flight token finishes them
out of the batch and, if the rest do not fit, skips decoding for a step instead of retracting
(:4489-4501, `kv_full_retract_flag and finishing_reqs`). The simulator applies a step's results
before forming the next one, so those requests have already freed their KV here.
"""

from __future__ import annotations

from fairbatching_sglang.sim.schedulers.base import StepPlan
from fairbatching_sglang.sim.schedulers.sglang_adder import sglang_prefill_chunks
from fairbatching_sglang.sim.state import InstanceState


class SglangMixedScheduler:
    name = "sglang-mixed"

    def plan(self, now_ms: float, state: InstanceState) -> StepPlan:
        chunks = sglang_prefill_chunks(state, num_mixed_decode_tokens=len(state.running))
        if chunks:
            if state.decodes_fit(state.chunk_kv_tokens(chunks)):
                return StepPlan(decodes=tuple(state.running), chunks=chunks)
            return StepPlan(chunks=chunks)  # the decodes sit out this step
        # A step that retracted re-estimates the ratio instead of decaying it (:4568-4569).
        retracted = state.retract_for_decode()
        return StepPlan(decodes=tuple(state.running), decays_token_ratio=not retracted)

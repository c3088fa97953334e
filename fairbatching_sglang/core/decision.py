"""The policy's output: which rows run, which are parked, which prefills get how many tokens."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrefillChunk:
    """prefill_index: row in the snapshot's prefills; num_tokens: new tokens this step."""

    prefill_index: int
    num_tokens: int
    completes_prefill: bool


@dataclass(frozen=True)
class BatchDecision:
    """One step's batch. Indices refer to rows of the snapshot the decision was made from.

    run_decode_indices: decodes that produce a token this step (ascending).
    parked_decode_indices: decodes ahead of their envelope left out to make room for prefill.
    unserved_decode_indices: decodes that had to run but did not fit the KV or token caps; the
        engine must retract (requeue) them, as SGLang does when decode memory runs out.
    budget_ms: the step's time budget; predicted_step_ms: the cost model's price of the batch.
    """

    run_decode_indices: tuple[int, ...]
    parked_decode_indices: tuple[int, ...]
    unserved_decode_indices: tuple[int, ...]
    prefill_chunks: tuple[PrefillChunk, ...]
    budget_ms: float
    predicted_step_ms: float
    num_prefill_tokens: int
    num_batched_tokens: int
    kv_tokens_used: int
    num_urgent_decodes: int

    @property
    def is_empty(self) -> bool:
        return not self.run_decode_indices and not self.prefill_chunks

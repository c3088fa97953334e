"""StepPlan: the part of a core BatchDecision the SGLang scheduler applies, in its own indices.

The scheduler does not execute the decision row by row; it steers SGLang's own batch formation:
- the waiting queue is reordered so the policy's chosen requests come first, in its order;
- the PrefillAdder gets a prefill token budget (the sum of the policy's chunks) and a request
  cap (the number of chunks), so it admits exactly those and cuts the last one where the policy
  did (it still applies its own memory checks, which may only admit less);
- the parked decode rows are split off the running batch before it is mixed in.

With TP > 1 every rank must form the same batch, but the decision reads the wall clock. Rank 0
decides and the plan travels to the other ranks as a flat tuple of ints (`encode`/`decode`),
the way managers/prefill_delayer.py agrees on rank 0's values.
"""

from __future__ import annotations

from dataclasses import dataclass

from fairbatching_sglang.core.decision import BatchDecision


@dataclass(frozen=True)
class StepPlan:
    """prefill_token_budget: prefill tokens the adder may admit this step (0: no prefill).
    admit_queue_indices: waiting-queue indices of the new requests to admit, in order.
    num_prefill_reqs: requests the adder may admit, the continuing chunk included.
    parked_rows: running-batch rows to leave out of this step (ascending).
    num_run_decodes: decode rows the policy runs (the rest of the running batch is parked).
    """

    prefill_token_budget: int
    admit_queue_indices: tuple[int, ...]
    num_prefill_reqs: int
    parked_rows: tuple[int, ...]
    num_run_decodes: int
    budget_ms: float
    predicted_step_ms: float

    def encode(self) -> tuple[int | float, ...]:
        return (
            self.prefill_token_budget,
            self.num_prefill_reqs,
            self.num_run_decodes,
            self.budget_ms,
            self.predicted_step_ms,
            len(self.admit_queue_indices),
            *self.admit_queue_indices,
            *self.parked_rows,
        )

    @classmethod
    def decode(cls, data: tuple[int | float, ...]) -> StepPlan:
        n_admit = int(data[5])
        return cls(
            prefill_token_budget=int(data[0]),
            num_prefill_reqs=int(data[1]),
            num_run_decodes=int(data[2]),
            budget_ms=float(data[3]),
            predicted_step_ms=float(data[4]),
            admit_queue_indices=tuple(int(x) for x in data[6 : 6 + n_admit]),
            parked_rows=tuple(int(x) for x in data[6 + n_admit :]),
        )


def plan_from_decision(decision: BatchDecision, has_chunked_req: bool) -> StepPlan:
    """Snapshot prefill row 0 is the continuing chunk when there is one; the others are
    waiting-queue rows in queue order (see snapshot.build_snapshot)."""
    offset = 1 if has_chunked_req else 0
    admit = tuple(
        c.prefill_index - offset for c in decision.prefill_chunks if c.prefill_index >= offset
    )
    return StepPlan(
        prefill_token_budget=decision.num_prefill_tokens,
        admit_queue_indices=admit,
        num_prefill_reqs=len(decision.prefill_chunks),
        parked_rows=decision.parked_decode_indices,
        num_run_decodes=len(decision.run_decode_indices),
        budget_ms=float(decision.budget_ms),
        predicted_step_ms=float(decision.predicted_step_ms),
    )

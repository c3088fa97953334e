"""Apply a StepPlan to SGLang objects: queue order, adder budgets, parked-row split.

Budgets only ever shrink SGLang's own (chunked_prefill_size / max_prefill_tokens size the pools
and CUDA graphs), and every operation here uses SGLang's own ScheduleBatch methods.
"""

from __future__ import annotations

import copy
from typing import Any

from fairbatching_sglang.sglang_adapter.plan import StepPlan


def reorder_waiting_queue(queue: list[Any], admit: tuple[int, ...]) -> list[Any]:
    """The chosen requests first in the plan's order, then the rest in their queue order.

    The same list object when that is already the queue's order (the common case: the policy
    admits the queue's head), so SGLang's own queue is not copied.
    """
    if admit == tuple(range(len(admit))):
        return queue
    chosen = set(admit)
    return [queue[i] for i in admit] + [r for i, r in enumerate(queue) if i not in chosen]


def apply_adder_budgets(adder: Any, plan: StepPlan, min_budget: int = 0) -> None:
    """Cap the adder at the plan's prefill tokens and request count.

    The stock mixed-chunk adder was built with num_mixed_decode_tokens = running batch size, so
    parked rows give their token back first; the result is then capped at the plan's budget and
    can never exceed what the adder started with plus the parked rows, i.e. the configured
    chunked_prefill_size / max_prefill_tokens minus the decodes that do run.
    """
    budget = max(plan.prefill_token_budget, min_budget)
    returned = len(plan.parked_rows)
    if adder.rem_chunk_tokens is not None:
        adder.rem_chunk_tokens = min(adder.rem_chunk_tokens + returned, budget)
    adder.rem_input_tokens = min(adder.rem_input_tokens + returned, budget)
    num_reqs = max(plan.num_prefill_reqs, 1)
    cap = adder.prefill_max_requests
    adder.prefill_max_requests = num_reqs if cap is None else min(cap, num_reqs)


def split_parked(batch: Any, parked_reqs: frozenset[Any]) -> tuple[Any, Any | None]:
    """Split `batch` into (rows that run, parked rows) without losing state.

    Shallow copy with its own sampling_info, then filter_batch with complementary indices: both
    halves rebind their tensors (filter never writes in place), so they are independent. Callers
    only pass rows that row_can_park / batch_can_park allowed. Requests are matched by identity,
    so rows filtered out since the plan was made (finished in flight) are simply absent.
    """
    if not parked_reqs:
        return batch, None
    keep = [i for i, r in enumerate(batch.reqs) if r not in parked_reqs]
    park = [i for i, r in enumerate(batch.reqs) if r in parked_reqs]
    if not park:
        return batch, None
    parked = copy.copy(batch)
    parked.sampling_info = copy.copy(batch.sampling_info)
    parked.filter_batch(keep_indices=park)
    batch.filter_batch(keep_indices=keep)
    parked.batch_is_full = batch.batch_is_full
    return batch, parked

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

    The stock mixed-chunk adder was built with num_mixed_decode_tokens = running batch size
    (scheduler.py:4182), charged to rem_input/rem_chunk tokens and to its KV budget's offsets
    (schedule_policy.py:638,654-658; mem_cache/prefill_budget.py:72-73). Parked rows neither
    run nor allocate a decode slot this step, so they give both back first, as if the adder had
    been built without them; the token budgets are then capped at the plan's budget and can never
    exceed what the adder started with plus the parked rows, i.e. the configured
    chunked_prefill_size / max_prefill_tokens minus the decodes that do run. The KV budget keeps
    every other charge (running rows' future output, admitted requests).
    """
    budget = max(plan.prefill_token_budget, min_budget)
    returned = len(plan.parked_rows)
    if adder.rem_chunk_tokens is not None:
        adder.rem_chunk_tokens = min(adder.rem_chunk_tokens + returned, budget)
    adder.rem_input_tokens = min(adder.rem_input_tokens + returned, budget)
    memory = getattr(adder, "memory_budget", None)
    if returned and hasattr(memory, "total_offset") and hasattr(memory, "current_offset"):
        memory.total_offset -= returned
        memory.current_offset -= returned
    num_reqs = max(plan.num_prefill_reqs, 1)
    cap = adder.prefill_max_requests
    adder.prefill_max_requests = num_reqs if cap is None else min(cap, num_reqs)


class _NoRows:
    """A batch without rows: what a fresh orchestrator reads while it is built (weak-referable,
    unlike SimpleNamespace)."""

    __slots__ = ("__weakref__", "device")
    reqs: tuple[Any, ...] = ()

    def __init__(self, device: Any) -> None:
        self.device = device


def _own_orchestrator(shared: Any, parked: Any) -> Any:
    """A penalizer orchestrator for the parked half, bound to it (weakly, as SGLang's are).

    The orchestrator holds a weak reference to *its* batch and reads `batch.reqs` whenever it
    prepares a penalizer, which merge_batch does the moment a penalized request joins
    (sampling/penaltylib/orchestrator.py:31-43,152-164,229-236). A shallow copy shares the kept
    half's orchestrator: once the kept half is mixed and dropped, or the halves differ in size,
    merging penalized requests into the parked half prepares tensors for the wrong rows (the
    "index [66, 1] ... self [6, 1000]" crash). Built like SamplingBatchInfo.from_schedule_batch
    does (sampling/sampling_batch_info.py:276-284), with the same penalizer classes, over no
    rows: the split only takes batches none of whose rows needs a penalizer (so none is
    prepared, exactly what the constructor would compute for the parked rows, without a Python
    pass over them), then bound to the parked batch through the orchestrator's own setter.
    """
    orch = type(shared)(
        vocab_size=shared.vocab_size,
        batch=_NoRows(shared.device),
        penalizers=set(shared.penalizers) or _default_penalizers(),
    )
    orch.batch = parked
    return orch


def _default_penalizers() -> set[type]:
    from sglang.srt.sampling import penaltylib

    return {
        penaltylib.BatchedFrequencyPenalizer,
        penaltylib.BatchedMinNewTokensPenalizer,
        penaltylib.BatchedPresencePenalizer,
        penaltylib.BatchedRepetitionPenalizer,
    }


def split_parked(batch: Any, parked_reqs: frozenset[Any]) -> tuple[Any, Any | None]:
    """Split `batch` into (rows that run, parked rows) without losing state.

    Shallow copy with its own sampling_info (and its own penalizer orchestrator), then
    filter_batch with complementary indices: both halves rebind their tensors (filter never
    writes in place), so they are independent, and SGLang's own filter/merge keep each half's
    sampling state aligned with its rows from then on (penalized requests merged into either
    half, the halves merged back). Callers only pass rows that row_can_park / batch_can_park
    allowed; a batch with batch-level sampling state a split would corrupt raises before
    anything is changed (the hook then runs the step unsplit). Requests are matched by identity,
    so rows filtered out since the plan was made (finished in flight) are simply absent.
    """
    if not parked_reqs:
        return batch, None
    info = batch.sampling_info
    orchestrator = info.penalizer_orchestrator
    if orchestrator.is_required or info.has_custom_logit_processor:
        raise ValueError("batch-level sampling state (penalizers, custom logit processors)")
    keep = [i for i, r in enumerate(batch.reqs) if r not in parked_reqs]
    park = [i for i, r in enumerate(batch.reqs) if r in parked_reqs]
    if not park:
        return batch, None
    parked = copy.copy(batch)
    parked.sampling_info = copy.copy(info)
    parked.sampling_info.penalizer_orchestrator = _own_orchestrator(orchestrator, parked)
    parked.filter_batch(keep_indices=park)
    batch.filter_batch(keep_indices=keep)
    # Stock mixed-chunk SGLang drops batch_is_full after every mixed step: next step's running
    # batch is the mixed batch itself, built with batch_is_full=False (scheduler.py:3963-3969,
    # 4430-4432). The parked batch becomes next step's running batch (the mixed one merges into
    # it), so it must not carry the flag either, or admission stays shut (scheduler.py:4110-4113)
    # until a request finishes.
    parked.batch_is_full = False
    return batch, parked

"""FairBatching in the simulator: the same core policy object the SGLang adapter drives.

The instance state is turned into a core SchedulerSnapshot with SGLang's accounting (the same
caps the patched server passes: chunked_prefill_size for the step, SGLang's rem_total_tokens for
KV admission, the free KV for the step's tokens, the running-request limit for new
admissions), and the core decision is applied as is. When the free KV cannot hold the urgent
decodes, the step is decode-only and SGLang's own retraction runs (state.retract_for_decode:
its victim order and ratio re-estimate), exactly as on the patched server, where the hook leaves
retraction to SGLang's update_running_batch.

Closed loop (FairBatchingConfig.closed_loop): the engine reports each step's real duration
(`observe_step`); the policy plans with the loop's planning model, never with the device model.
"""

from __future__ import annotations

import numpy as np

from fairbatching_sglang.core import (
    DecodeRows,
    FairBatchingPolicy,
    PrefillRows,
    SchedulerSnapshot,
    StepShape,
)
from fairbatching_sglang.core.closed_loop import ClosedLoopPlanner
from fairbatching_sglang.sim.request import SimRequest
from fairbatching_sglang.sim.schedulers.base import StepPlan
from fairbatching_sglang.sim.state import InstanceState


class FairBatchingScheduler:
    """max_prefill_rows: how much of the waiting queue (in queue order) the policy sees each
    step. It admits from the head of its EDF order only; with one SLO class that order is the
    queue order, so a window of a few hundred rows decides as the whole queue would (unless more
    requests than that fit one step) at a fraction of the cost."""

    name = "fairbatching"

    def __init__(self, policy: FairBatchingPolicy, max_prefill_rows: int = 512) -> None:
        self.policy = policy
        self.max_prefill_rows = max_prefill_rows
        loop_config = policy.config.closed_loop
        self.closed_loop = (
            ClosedLoopPlanner(policy.cost_model, loop_config) if loop_config is not None else None
        )

    def observe_step(self, shape: StepShape, measured_ms: float) -> None:
        loop = self.closed_loop
        if loop is None:
            return
        loop.observe(shape, measured_ms)
        self.policy = loop.steer(self.policy)

    def plan(self, now_ms: float, state: InstanceState) -> StepPlan:
        # Decodes that do not fit the free KV: SGLang retracts before a decode-only step (its
        # order, its ratio re-estimate) and the batch is formed again on the freed memory.
        while True:
            running = list(state.running)
            prefill_reqs = self._prefill_candidates(state)
            dec = self.policy.decide(self._snapshot(now_ms, state, running, prefill_reqs))
            if not dec.unserved_decode_indices:
                break
            if not state.retract_for_decode():
                # Nothing retractable (SGLang keeps at least one request): run what fits.
                break
        chunks = tuple((prefill_reqs[c.prefill_index], c.num_tokens) for c in dec.prefill_chunks)
        return StepPlan(
            decodes=tuple(running[i] for i in dec.run_decode_indices),
            chunks=chunks,
            parked=tuple(running[i] for i in dec.parked_decode_indices),
            budget_ms=dec.budget_ms,
            decays_token_ratio=not chunks,
        )

    def _prefill_candidates(self, state: InstanceState) -> list[SimRequest]:
        reqs: list[SimRequest] = [] if state.chunked is None else [state.chunked]
        for req in state.waiting:
            if len(reqs) >= self.max_prefill_rows:
                break
            state.start_prefill(req)
            reqs.append(req)
        return reqs

    @staticmethod
    def _snapshot(
        now_ms: float,
        state: InstanceState,
        running: list[SimRequest],
        prefill_reqs: list[SimRequest],
    ) -> SchedulerSnapshot:
        cfg = state.config
        return SchedulerSnapshot(
            now_ms=now_ms,
            decodes=_decode_rows(running),
            prefills=_prefill_rows(prefill_reqs, state),
            max_num_batched_tokens=cfg.chunked_prefill_size,
            max_prefill_tokens=min(cfg.chunked_prefill_size, cfg.max_prefill_tokens),
            kv_free_tokens=max(0, state.kv_free_tokens),
            # SGLang's rem_total_tokens; decode tokens come out of the running reservation.
            kv_admission_tokens=max(
                0, min(state.kv_free_tokens, int(state.admission_room_tokens()))
            ),
            max_new_prefills=max(
                0, state.max_running_requests - len(running) - (state.chunked is not None)
            ),
        )


def _decode_rows(reqs: list[SimRequest]) -> DecodeRows:
    n = len(reqs)
    return DecodeRows(
        arrival_ms=np.fromiter((r.arrival_ms for r in reqs), np.float64, n),
        ttft_slo_ms=np.fromiter((r.ttft_slo_ms for r in reqs), np.float64, n),
        tpot_slo_ms=np.fromiter((r.tpot_slo_ms for r in reqs), np.float64, n),
        num_output_tokens=np.fromiter((r.num_output for r in reqs), np.int64, n),
        kv_tokens=np.fromiter((r.kv_tokens for r in reqs), np.int64, n),
        can_park=np.ones(n, dtype=bool),
        parked_steps=np.fromiter((r.parked_steps for r in reqs), np.int64, n),
        first_token_ms=np.fromiter((r.first_token_ms for r in reqs), np.float64, n),
    )


def _prefill_rows(reqs: list[SimRequest], state: InstanceState) -> PrefillRows:
    n = len(reqs)
    continuing = np.zeros(n, dtype=bool)
    # A continuing request already holds its KV (no pending cache hit), so this is its clipped
    # output, as the adapter passes it; the core charges it with the last chunk.
    reserve = np.fromiter((state.new_request_reserve(r) for r in reqs), np.int64, n)
    if state.chunked is not None and n:
        continuing[0] = True
    return PrefillRows(
        arrival_ms=np.fromiter((r.arrival_ms for r in reqs), np.float64, n),
        ttft_slo_ms=np.fromiter((r.ttft_slo_ms for r in reqs), np.float64, n),
        num_remaining_tokens=np.fromiter((r.remaining_prefill for r in reqs), np.int64, n),
        num_cached_tokens=np.fromiter((r.prefilled for r in reqs), np.int64, n),
        kv_reserve_tokens=reserve,
        is_continuing=continuing,
    )

"""FairBatchingHook: the object the patched SGLang scheduler calls (see patches/README.md).

Call points, once per scheduler iteration:
1. `plan_prefill(scheduler, running_batch)` in `_get_new_batch_prefill_raw`, after the queue is
   sorted: snapshot -> policy -> StepPlan (agreed across TP ranks), waiting queue reordered.
   Returns True when the policy runs no prefill this step (the caller then returns no batch and
   all running decodes run as a plain decode step).
2. `apply_adder(adder)` right after the PrefillAdder is built: token/request budgets.
3. `split_running(running_batch)` in the mixed-chunk block: (rows to mix, parked rows). The
   caller mixes only the kept rows and returns `running_batch = parked`, so the parked rows
   merge back automatically next step when the mixed batch (last_batch) is merged into it.
4. `on_batch_formed(scheduler, batch)` at the end of `get_next_batch_to_run`: per-request token
   counts, parked-step counters, step log, metrics.
5. `annotate_load(scheduler, load)` when SGLang publishes its LoadSnapshot (/v1/loads).

Overlap scheduling (event_loop_overlap, the default): when the next batch is formed, the
previous one is still running and its results are not processed, so SGLang's per-request state
is one step stale. The hook does not read it for timing: it counts the tokens it scheduled
(in-flight ones included) and prices the decision at the predicted start of the next step,
now + the predicted duration of the step in flight (the loop forms step t+1 just after
processing step t-1, when step t has just started). Requests that finish in the
in-flight step are still in the running batch; SGLang's mixed block filters them
(`_reqs_finishing_inflight`) before the split, and the split matches rows by identity.

Closed loop (FairBatchingConfig.closed_loop, on by default): the measured wall time of each
step feeds core/closed_loop.py, and the policy plans with its planning model (recalibrated and
with a margin), never with a number it did not measure. A step's wall time is the interval
between two batch formations while the engine stays busy: in the normal loop that interval
(formation t to t+1) is step t (run + result processing + the next formation's CPU time); in the
overlap loop formation t+1 follows the processing of step t-1, so the interval is step t-1.
The same observation gives decodes their real first-token time (the step's observed end), which
the first-token deadline anchor uses instead of the predicted end.

Failure: every call is guarded. If the policy (or snapshot) raises, the step is logged, counted
and run as stock mixed-chunk SGLang (no budget cap, no parking). The server never dies for the
policy.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np

from fairbatching_sglang.core.closed_loop import ClosedLoopPlanner
from fairbatching_sglang.core.cost_model import HingeCostModel, StepShape
from fairbatching_sglang.core.load_estimate import LoadEstimate, estimate_load
from fairbatching_sglang.core.policy import FairBatchingPolicy
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.sglang_adapter.batch_ops import (
    apply_adder_budgets,
    reorder_waiting_queue,
    split_parked,
)
from fairbatching_sglang.sglang_adapter.plan import StepPlan, plan_from_decision
from fairbatching_sglang.sglang_adapter.req_state import ReqStatePool, timing_of
from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings
from fairbatching_sglang.sglang_adapter.snapshot import (
    SnapshotCache,
    SnapshotInputs,
    batch_can_park,
    build_snapshot,
    forbid_parking_aborting,
    output_lens,
    parks_aborting_rows,
    row_can_park,
    slots_of,
    states_of,
)
from fairbatching_sglang.sglang_adapter.telemetry import StepLog, StepRecord, make_metrics

logger = logging.getLogger(__name__)

# Waiting requests the policy looks at per step (queue order after SGLang's calc_priority).
# Bounds the snapshot cost under a deep queue; the policy admits far fewer in one step.
MAX_PREFILL_CANDIDATES = 256


class FairBatchingHook:
    def __init__(
        self,
        settings: FairBatchingSettings,
        *,
        chunked_prefill_size: int,
        max_prefill_tokens: int,
        enable_overlap: bool = False,
        tp_size: int = 1,
        tp_rank: int = 0,
        tp_group: Any = None,
        enable_metrics: bool = False,
        metric_labels: dict[str, str] | None = None,
        clock: Any = time.perf_counter,
    ) -> None:
        profile = load_profile(settings.profile)
        cost: HingeCostModel = profile.cost_model
        if settings.overhead_ms is not None:
            cost = cost.with_overhead(settings.overhead_ms)
        self.settings = settings
        self.default_slo = settings.default_slo
        config = settings.policy_config()
        self.policy = FairBatchingPolicy(cost, config)
        self.cost_model = cost  # the offline model (+ the configured overhead)
        self.closed_loop = (
            ClosedLoopPlanner(cost, config.closed_loop) if config.closed_loop is not None else None
        )
        # Formed steps whose end is not yet observed: (shape, predicted ms, first-token states,
        # their predicted first-token time). One in the normal loop, two in the overlap loop.
        self._unobserved: deque[tuple[StepShape, float, list[Any], float]] = deque()
        self.chunked_prefill_size = chunked_prefill_size
        self.max_prefill_tokens = min(chunked_prefill_size, max_prefill_tokens)
        self.enable_overlap = enable_overlap
        self.tp_size = tp_size
        self.tp_rank = tp_rank
        self.tp_group = tp_group
        self.clock = clock
        self.metrics = make_metrics(enable_metrics and tp_rank == 0, metric_labels or {})
        self.step_log = StepLog(settings.step_log) if settings.step_log and tp_rank == 0 else None
        self.current_plan: StepPlan | None = None
        self.last_plan: StepPlan | None = None  # the latest applied plan (tests, debugging)
        self._parked_reqs: frozenset[Any] = frozenset()  # the plan's parked rows
        # The rows split_running actually parked this step (only those count as parked: a plan
        # whose split never happened, or rows filtered since, parked nothing).
        self._split_parked: list[Any] = []
        self._last_formed_ms: float | None = None
        self._last_predicted_ms = 0.0
        self._num_fallbacks_logged = 0
        # Per-request counters and constants, one slot per request (req_state.ReqStatePool).
        self._pool = ReqStatePool()
        self._snapshot_cache = SnapshotCache(self._pool)
        # (rows, their slots, num_output_tokens, kv_tokens) of this step's snapshot decodes.
        self._snap_rows: tuple[list[Any], Any, Any, Any] | None = None
        self.num_steps = 0
        self.num_fallbacks = 0
        self.last_load: LoadEstimate | None = None

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_scheduler(cls, scheduler: Any) -> FairBatchingHook:
        from sglang.srt.runtime_context import get_parallel, get_schedule

        sched_cfg = get_schedule()
        parallel = get_parallel()
        tp_size = int(getattr(parallel, "tp_size", 1) or 1)
        settings = FairBatchingSettings.from_server_args(sched_cfg)
        enable_metrics = bool(
            getattr(getattr(scheduler, "metrics_reporter", None), "enable_metrics", False)
        )
        hook = cls(
            settings,
            chunked_prefill_size=int(scheduler.chunked_prefill_size),
            max_prefill_tokens=int(scheduler.max_prefill_tokens),
            enable_overlap=bool(scheduler.enable_overlap),
            tp_size=tp_size,
            tp_rank=int(getattr(scheduler, "tp_rank", 0) or 0),
            tp_group=parallel.tp_group if tp_size > 1 else None,
            enable_metrics=enable_metrics,
            metric_labels={"tp_rank": str(getattr(scheduler, "tp_rank", 0))},
        )
        logger.info(
            "FairBatching enabled: profile=%s ttft_slo=%.0fms tpot_slo=%.0fms config=%s",
            settings.profile,
            settings.ttft_slo_ms,
            settings.tpot_slo_ms,
            hook.policy.config,
        )
        return hook

    # ------------------------------------------------------------------------------------------
    def plan_prefill(self, scheduler: Any, running_batch: Any) -> bool:
        """Decide this step. True: skip prefill (the policy schedules none)."""
        self.current_plan = None
        self._parked_reqs = frozenset()
        self._split_parked = []
        self._snap_rows = None
        plan: StepPlan | None = None
        if self.tp_rank == 0:
            try:
                plan = self._decide(scheduler, running_batch)
            except Exception:
                self._fallback("policy raised")
                plan = None
        if self.tp_size > 1:
            # One decision for all ranks: rank 0's (its clock), or fallback everywhere.
            encoded = plan.encode() if plan is not None else None
            encoded = self.tp_group.broadcast_object(encoded, src=0)
            plan = StepPlan.decode(encoded) if encoded is not None else None
            if plan is None and self.tp_rank != 0:
                self.num_fallbacks += 1
        if plan is None:
            return False
        try:
            if plan.parked_rows:
                running = running_batch.reqs
                self._parked_reqs = frozenset(running[i] for i in plan.parked_rows)
            scheduler.waiting_queue = reorder_waiting_queue(
                scheduler.waiting_queue, plan.admit_queue_indices
            )
        except Exception:
            self._parked_reqs = frozenset()
            self._fallback("applying the plan raised")
            return False
        self.current_plan = self.last_plan = plan
        return plan.prefill_token_budget <= 0 and scheduler.chunked_req is None

    def _decide(self, scheduler: Any, running_batch: Any) -> StepPlan:
        now = self.clock() * 1000.0
        if self.enable_overlap and self._last_formed_ms is not None:
            # The overlap loop forms step t+1 right after processing step t-1, i.e. when t-1
            # has just ended and t (formed earlier, already launched) has just started: t+1
            # starts when t ends, about now + t's predicted time. (Formation time + predicted
            # time, used before, is about now: one whole step too early, which planned parked
            # decodes to miss their deadlines by up to a step.)
            now += self._last_predicted_ms
        running = running_batch.reqs
        # Free + evictable KV exactly as the adder's budget counts it, whatever the allocator
        # and tree cache (schedule_policy.py:656-658; mem_cache/prefill_budget.py:91-101).
        kv_free = scheduler.token_to_kv_pool_allocator.create_prefill_budget(
            scheduler.tree_cache
        ).remaining_total
        ratio = float(scheduler.new_token_ratio_tracker.current)
        max_new = scheduler.get_num_allocatable_reqs(len(running), running_batch=running_batch)
        queue = scheduler.waiting_queue  # read only here (no copy unless it must be cut)
        inputs = SnapshotInputs(
            now_ms=now,
            running_reqs=running,
            chunked_req=scheduler.chunked_req,
            waiting_reqs=queue
            if len(queue) <= MAX_PREFILL_CANDIDATES
            else queue[:MAX_PREFILL_CANDIDATES],
            batch_can_park=batch_can_park(running_batch) if running else True,
            max_num_batched_tokens=self.chunked_prefill_size,
            max_prefill_tokens=self.max_prefill_tokens,
            kv_free_tokens=int(kv_free),
            max_new_prefills=max(0, int(max_new)),
            new_token_ratio=ratio,
            req_token_overhead=int(scheduler.page_size),
        )
        cache = self._snapshot_cache
        snap = build_snapshot(inputs, self.default_slo, cache)
        dec = snap.decodes
        self._snap_rows = (cache.reqs, cache.slots, dec.num_output_tokens, dec.kv_tokens)
        decision = self.policy.decide(snap)
        if parks_aborting_rows(running, decision.parked_decode_indices):
            # An aborted row must run once more to finish and free its KV: decide again.
            decision = self.policy.decide(forbid_parking_aborting(snap, running))
        return plan_from_decision(decision, scheduler.chunked_req is not None)

    def apply_adder(self, adder: Any, scheduler: Any) -> None:
        plan = self.current_plan
        if plan is None:
            return
        # A continuing chunk is always served (SGLang keeps it pinned); give it a floor.
        floor = self.policy.config.min_chunk_tokens if scheduler.chunked_req is not None else 0
        try:
            apply_adder_budgets(adder, plan, min_budget=floor)
        except Exception:
            self._fallback("adder budgets raised")

    def split_running(self, running_batch: Any) -> tuple[Any, Any | None]:
        if not self._parked_reqs or self.current_plan is None:
            return running_batch, None
        # split_parked only mutates after both index lists exist; a failure before that
        # leaves the batch whole (stock behaviour for this step).
        try:
            kept, parked = split_parked(running_batch, self._parked_reqs)
        except Exception:
            self._fallback("split raised")
            return running_batch, None
        if parked is not None:
            self._split_parked = parked.reqs
        return kept, parked

    # ------------------------------------------------------------------------------------------
    def on_batch_formed(self, scheduler: Any, batch: Any) -> None:
        try:
            self._account(scheduler, batch)
        except Exception:
            logger.exception("FairBatching: step accounting failed (ignored)")

    def _account(self, scheduler: Any, batch: Any) -> None:
        now_ms = self.clock() * 1000.0
        plan = self.current_plan
        # Rows that sat out this step by the policy's choice: those split off (they never run
        # in the step they are split from; if the kept rows failed check_decode_mem they were
        # merged back and sat out with them). A planned park that never happened (no mixed
        # step, a failed split) or rows finished in flight count nothing.
        parked = self._split_parked
        self.current_plan = None
        self._parked_reqs = frozenset()
        self._split_parked = []
        if batch is None or not batch.reqs:
            self._last_formed_ms = None  # idle: the next step starts now
            self._resolve_unobserved(now_ms)
            if self.step_log is not None:
                self.step_log.record(None, now_ms / 1000.0)
            return
        self.num_steps += 1
        default = self.default_slo
        decoding = batch.decoding_reqs if batch.forward_mode.is_mixed() else None
        if batch.forward_mode.is_decode():
            decode_reqs, prefill_reqs = batch.reqs, []
        elif decoding:
            # mix_with_running appended exactly these rows (SGLang then sets decoding_reqs to
            # them), so they are batch.reqs[n_pre:] without copying 256 references.
            n_pre = len(batch.reqs) - len(decoding)
            decode_reqs, prefill_reqs = decoding, batch.reqs[:n_pre]
        else:
            decode_reqs, prefill_reqs = [], batch.reqs
        # One token scheduled per decode row: counters advance, parked streaks reset.
        pool = self._pool
        snap_rows = self._snap_rows
        self._snap_rows = None
        if snap_rows is not None and decode_reqs == snap_rows[0]:
            # Every snapshot row runs: its token count was read this step (nothing appends
            # output tokens during batch formation).
            slots, num_out, kv_tokens = snap_rows[1], snap_rows[2], snap_rows[3]
        else:
            slots = slots_of(states_of(decode_reqs, pool, default, now_ms))
            num_out = np.maximum(output_lens(decode_reqs), pool.num_scheduled_tokens[slots])
            kv_tokens = pool.prompt_len[slots] + num_out
        if parked:
            pool.parked_steps[slots_of(states_of(parked, pool, default, now_ms))] += 1
        pool.num_scheduled_tokens[slots] = num_out + 1
        pool.parked_steps[slots] = 0  # after the parked rows: a row that ran counts 0
        decode_kv = int(kv_tokens.sum()) + len(decode_reqs)
        num_prefill_tokens = 0
        attn_work = 0.0
        chunked = scheduler.chunked_req
        extend_lens = batch.extend_lens or []
        prefix_lens = batch.prefix_lens or []
        first_tokens = []
        for i, req in enumerate(prefill_reqs):
            c = int(extend_lens[i]) if i < len(extend_lens) else 0
            k = int(prefix_lens[i]) if i < len(prefix_lens) else 0
            num_prefill_tokens += c
            attn_work += c * (k + c / 2.0)
            if req is not chunked:  # its last chunk: the first token comes out of this step
                st = timing_of(req, pool, default, now_ms, row_can_park)
                st.num_scheduled_tokens = max(st.num_scheduled_tokens, len(req.output_ids)) + 1
                first_tokens.append(st)
        shape = StepShape(num_prefill_tokens, len(decode_reqs), decode_kv, attn_work)
        predicted = self.believed_model().predict_ms(shape)
        if self._last_formed_ms is not None:
            self._observe_step_end(now_ms, now_ms - self._last_formed_ms)
        else:
            self._resolve_unobserved(now_ms)
        # When this step starts: now, or after the step in flight (overlap loop, see _decide).
        start_ms = now_ms
        if self.enable_overlap and self._last_formed_ms is not None:
            start_ms += self._last_predicted_ms
        end_ms = start_ms + predicted
        self._last_formed_ms = now_ms
        self._last_predicted_ms = predicted
        new_first = [st for st in first_tokens if st.num_scheduled_tokens == 1]
        for st in new_first:
            st.first_token_ms = end_ms  # until the step's end is observed
        self._unobserved.append((shape, predicted, new_first, end_ms))
        if self.metrics is not None:
            self.metrics.parked.set(len(parked))
            self.metrics.predicted.set(predicted)
            if plan is not None:
                self.metrics.budget_ms.set(plan.budget_ms)
        if self.step_log is not None:
            fell_back = self.num_fallbacks != self._num_fallbacks_logged
            self._num_fallbacks_logged = self.num_fallbacks
            self.step_log.record(
                StepRecord(
                    time_s=now_ms / 1000.0,
                    num_prefill_tokens=num_prefill_tokens,
                    num_decode_reqs=len(decode_reqs),
                    decode_kv_tokens=decode_kv,
                    prefill_attn_work=attn_work,
                    predicted_ms=predicted,
                    num_parked=len(parked),
                    budget_ms=plan.budget_ms if plan is not None else None,
                    fallback=fell_back,
                ),
                now_ms / 1000.0,
            )

    # ------------------------------------------------------------------------------------------
    def believed_model(self) -> HingeCostModel:
        """Best guess of a step's time: the recalibrated model (no margin), or the offline one."""
        return (
            self.closed_loop.believed_model() if self.closed_loop is not None else self.cost_model
        )

    def _observe_step_end(self, now_ms: float, interval_ms: float) -> None:
        """The engine stayed busy since the last formation: the oldest step whose result the
        loop has processed by now ended about now, after `interval_ms` of wall time."""
        pending = self._unobserved
        if self.enable_overlap and len(pending) < 2:
            return  # the step in flight has not ended yet
        shape, predicted, first_states, predicted_end = pending.popleft()
        for st in first_states:
            if st.first_token_ms == predicted_end:  # not re-anchored meanwhile (retraction)
                st.first_token_ms = now_ms
        if self.metrics is not None:
            self.metrics.measured_hist.observe(interval_ms)
            self.metrics.error_hist.observe(interval_ms - predicted)
        loop = self.closed_loop
        if loop is None:
            return
        loop.observe(shape, interval_ms)
        policy = loop.steer(self.policy)
        if policy is not self.policy:
            self.policy = policy
            if self.metrics is not None:
                self.metrics.margin.set(loop.margin)

    def _resolve_unobserved(self, now_ms: float) -> None:
        """After an idle gap every formed step has ended by now; their durations are unknown
        (the end was not seen), but their first tokens are out: now is an upper bound."""
        for _, _, first_states, predicted_end in self._unobserved:
            for st in first_states:
                if st.first_token_ms == predicted_end:
                    st.first_token_ms = now_ms
        self._unobserved.clear()

    # ------------------------------------------------------------------------------------------
    def estimate_load(self, scheduler: Any) -> LoadEstimate:
        running = scheduler.running_batch.reqs
        decode_kv = sum(len(r.origin_input_ids) + len(r.output_ids) for r in running)
        queued = sum(
            max(0, len(r.origin_input_ids) + len(r.output_ids) - r.prefix_len)
            for r in scheduler.waiting_queue
        )
        chunked = scheduler.chunked_req
        if chunked is not None:
            queued += max(0, len(chunked.origin_input_ids) - (chunked.extend_end or 0))
        return estimate_load(
            self.believed_model(),
            num_decodes=len(running),
            decode_kv_tokens=decode_kv,
            queued_prefill_tokens=queued,
            ttft_slo_ms=self.default_slo.ttft_slo_ms,
            tpot_slo_ms=self.default_slo.tpot_slo_ms,
            max_prefill_tokens=self.max_prefill_tokens,
        )

    def annotate_load(self, scheduler: Any, load: Any) -> Any:
        """Fill the FairBatching fields of SGLang's LoadSnapshot (/v1/loads); never raises."""
        try:
            est = self.estimate_load(scheduler)
            self.last_load = est
            scheduler.max_running_requests_under_SLO = est.max_running_requests_under_slo
            load.fairbatching_prefill_admission_tokens = est.prefill_admission_tokens
            if est.max_running_requests_under_slo > 0:
                load.utilization = round(
                    max(
                        load.num_running_reqs / est.max_running_requests_under_slo,
                        load.token_usage / 0.9,
                    ),
                    4,
                )
            if self.metrics is not None:
                self.metrics.admission.set(est.prefill_admission_tokens)
        except Exception:
            logger.exception("FairBatching: load estimate failed (load published without it)")
        return load

    # ------------------------------------------------------------------------------------------
    def _fallback(self, why: str) -> None:
        self.num_fallbacks += 1
        if self.metrics is not None:
            self.metrics.fallbacks.inc()
        # Full traceback for the first few, then one line every 1000 (a persistent bug must not
        # flood the log at one line per step).
        if self.num_fallbacks <= 5:
            logger.exception("FairBatching: %s; this step runs stock scheduling", why)
        elif self.num_fallbacks % 1000 == 0:
            logger.error("FairBatching: %d fallbacks so far (last: %s)", self.num_fallbacks, why)

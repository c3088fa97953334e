"""Discrete-event engine in virtual time: one simulated serving instance.

Events (see event_queue): ARRIVAL queues a request; SCHEDULE wakes an idle engine; STEP_END applies
a step's results and schedules the next. Step durations come from a device model
(profiles/device_model.py: what a step really costs), by default the run's cost profile plus a
per-step CPU overhead; the policies plan with their own cost model, which may differ.

Fast-forward: while only decodes run and nothing waits, consecutive steps differ only by KV growth,
so a block of k steps is priced in closed form and ends at the first step boundary at or after the
next arrival, the first completion or the KV limit - exactly what stepping one at a time gives
(tests check the two agree).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fairbatching_sglang.core import HingeCostModel, StepShape, chunk_attn_work
from fairbatching_sglang.profiles.device_model import DeviceModel, ProfileDevice
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.event_queue import EventKind, EventQueue
from fairbatching_sglang.sim.prefix_cache import PrefixCache
from fairbatching_sglang.sim.records import RecordSink
from fairbatching_sglang.sim.request import SimRequest
from fairbatching_sglang.sim.schedulers.base import SimScheduler, StepPlan
from fairbatching_sglang.sim.state import InstanceState
from fairbatching_sglang.sim.workload_arrays import SimWorkload

MAX_FAST_FORWARD_STEPS = 4096


@dataclass(frozen=True)
class SimSummary:
    num_requests: int
    num_finished: int
    num_rejected: int
    num_steps: int
    num_events: int
    num_retractions: int
    end_ms: float


def plan_shape(plan: StepPlan) -> StepShape:
    """The step's shape as the device prices it (KV read before this step's token)."""
    num_prefill = 0
    work = 0.0
    for req, c in plan.chunks:
        num_prefill += c
        work += chunk_attn_work(c, req.prefilled)
    return StepShape(
        num_prefill,
        len(plan.decodes),
        sum(r.kv_tokens for r in plan.decodes),
        work,
        num_prefill_chunks=len(plan.chunks),
    )


def observe_block(
    observe: Callable[[StepShape, float], None],
    shape: StepShape,
    end_times: np.ndarray,
    start_ms: float,
) -> None:
    k = len(end_times)
    observe(shape, float(end_times[0]) - start_ms)
    if k > 1:
        last = StepShape(
            shape.num_prefill_tokens,
            shape.num_decode_reqs,
            shape.decode_kv_tokens + (k - 1) * shape.num_decode_reqs,
            shape.prefill_attn_work,
            shape.num_prefill_chunks,
        )
        observe(last, float(end_times[-1] - end_times[-2]))


def make_request(workload: SimWorkload, i: int) -> SimRequest:
    w = workload
    hash_ids = w.hash_ids[i] if w.hash_ids is not None else None
    return SimRequest(
        rid=i,
        arrival_ms=float(w.arrival_ms[i]),
        input_tokens=int(w.input_tokens[i]),
        output_tokens=int(w.output_tokens[i]),
        ttft_slo_ms=float(w.ttft_slo_ms[i]),
        tpot_slo_ms=float(w.tpot_slo_ms[i]),
        hash_ids=tuple(hash_ids) if hash_ids is not None else None,
    )


class Simulator:
    def __init__(
        self,
        workload: SimWorkload,
        scheduler: SimScheduler,
        cost_model: HingeCostModel,
        config: SimConfig,
        sink: RecordSink,
        kv_capacity_tokens: int,
        progress: Callable[[int, int], None] | None = None,
        device: DeviceModel | None = None,
    ) -> None:
        """cost_model: the run's profile (KV arithmetic, default device). device: what steps
        really cost; None = exactly cost_model + config.step_overhead_ms."""
        self.workload = workload
        self.scheduler = scheduler
        self.cost_model = cost_model
        self.device: DeviceModel = device or ProfileDevice(
            cost_model, "run profile", default_overhead_ms=config.step_overhead_ms
        )
        self.config = config
        self.sink = sink
        # Schedulers with a closed loop take each step's real duration (resolved once here).
        self._observe_step = getattr(scheduler, "observe_step", None)
        self.progress = progress
        capacity = config.kv_capacity_tokens or kv_capacity_tokens
        cache = None
        if config.enable_prefix_cache and workload.hash_ids is not None:
            cache = PrefixCache(capacity // config.prefix_block_tokens, config.prefix_block_tokens)
        self.state = InstanceState(config, cost_model, capacity, prefix_cache=cache)
        self._queue = EventQueue()
        self._next_index = 0
        self._busy = False
        self._wake_pending = False
        self._num_steps = 0
        self._num_events = 0
        self._num_finished = 0
        self._num_rejected = 0
        # Overlap scheduling (SGLang's default event_loop_overlap): the batch that runs after
        # step t is formed when step t starts (its predecessor's results are processed then),
        # so a request received while step t runs is first seen one step later. Received
        # requests wait here, with their receive time, until a formation can see them.
        self._pending: deque[tuple[float, SimRequest]] = deque()
        self._last_step_start_ms: float | None = None

    # -- event loop ------------------------------------------------------------------------------
    def run(self) -> SimSummary:
        self._push_next_arrival()
        q = self._queue
        now = 0.0
        while len(q):
            event = q.pop()
            now = event.time_ms
            self._num_events += 1
            if event.kind is EventKind.ARRIVAL:
                self._on_arrival(event.payload, now)
            elif event.kind is EventKind.SCHEDULE:
                self._wake_pending = False
                if not self._busy:
                    self._busy = self._start_step(now)
            else:
                self._finish_step(event.payload, now)
                self._busy = self._start_step(now)
            if self.progress is not None and self._num_events % 4096 == 0:
                self.progress(self._num_finished + self._num_rejected, self.workload.num_requests)
        self.sink.close()
        if self.progress is not None:
            self.progress(self._num_finished + self._num_rejected, self.workload.num_requests)
        return SimSummary(
            num_requests=self.workload.num_requests,
            num_finished=self._num_finished,
            num_rejected=self._num_rejected,
            num_steps=self._num_steps,
            num_events=self._num_events,
            num_retractions=self.state.num_retractions,
            end_ms=now,
        )

    def _push_next_arrival(self) -> None:
        i = self._next_index
        if i < self.workload.num_requests:
            self._queue.push(float(self.workload.arrival_ms[i]), EventKind.ARRIVAL, i)
            self._next_index = i + 1

    def _on_arrival(self, i: int, now: float) -> None:
        req = make_request(self.workload, i)
        self._push_next_arrival()
        self.admit(req, now)

    def admit(self, req: SimRequest, now: float) -> None:
        """Queue a request that reaches this instance at `now` (the cluster's router calls this)."""
        # A request whose whole sequence can never fit the KV pool is refused up front, as
        # SGLang refuses prompts beyond its token capacity.
        if req.input_tokens + req.output_tokens > self.state.kv_capacity_tokens:
            self._record(req, "rejected")
            return
        if self.config.overlap_schedule and self._busy:
            self._pending.append((now, req))
            return
        self.state.waiting.append(req)
        if not self._busy and not self._wake_pending:
            self._wake_pending = True
            self._queue.push(now, EventKind.SCHEDULE)

    # -- steps -----------------------------------------------------------------------------------
    def _release_pending(self, now: float) -> None:
        """Move the requests the formation at `now` can see into the waiting queue: with the
        overlap loop, those received before the step that just ended started (or all of them
        when nothing else is left to run: the idle loop sees a request at once)."""
        cutoff = self._last_step_start_ms if self._last_step_start_ms is not None else now
        self._last_step_start_ms = None
        pending = self._pending
        state = self.state
        if pending and not state.running and not state.waiting and state.chunked is None:
            cutoff = now
        while pending and pending[0][0] <= cutoff:
            state.waiting.append(pending.popleft()[1])

    def _start_step(self, now: float) -> bool:
        state = self.state
        if self._pending or self._last_step_start_ms is not None:
            self._release_pending(now)
        while True:
            if not state.running and not state.waiting and state.chunked is None:
                # SGLang's on_idle resets the token ratio (managers/scheduler.py:5345).
                state.reset_new_token_ratio()
                return False
            plan = self.scheduler.plan(now, state)
            if not plan.is_empty:
                break
            if state.running or state.chunked is not None:
                raise RuntimeError(
                    f"{self.scheduler.name} formed an empty step with work in flight at {now} ms"
                )
            # Nothing runs and nothing will free memory: the head request cannot be served.
            self._record(state.waiting.popleft(), "rejected")
        shape = plan_shape(plan)
        end_times = self._step_end_times(now, plan, shape)
        self._queue.push(float(end_times[-1]), EventKind.STEP_END, (plan, end_times, now, shape))
        return True

    def _step_end_times(self, now: float, plan: StepPlan, shape: StepShape) -> np.ndarray:
        decodes = plan.decodes
        num_decodes = len(decodes)
        state = self.state
        if not (
            self.config.fast_forward
            and not plan.chunks
            and not plan.parked
            and not state.waiting
            and not self._pending
            and state.chunked is None
            and num_decodes == len(state.running)
        ):
            return np.array([now + self.device.step_ms(shape)])
        k = min(
            min(r.remaining_output for r in decodes),
            state.kv_free_tokens // num_decodes,
            MAX_FAST_FORWARD_STEPS,
        )
        if k <= 1:
            return np.array([now + self.device.step_ms(shape)])
        # Step j reads decode_kv + j * num_decodes KV tokens; everything else is constant.
        # A noisy device draws one factor per priced step, including the steps past the next
        # arrival that are then cut: still deterministic for a seed, though not the same
        # draws as stepping one at a time (an exact device gives identical times either way).
        ends = now + np.cumsum(self.device.decode_block_ms(shape, k))
        next_arrival = self._queue.peek_time_ms()
        cut = int(np.searchsorted(ends, next_arrival, side="left"))
        return ends[: cut + 1] if cut < k else ends

    def _finish_step(
        self, payload: tuple[StepPlan, np.ndarray, float, StepShape], end: float
    ) -> None:
        plan, end_times, start, shape = payload
        state = self.state
        observe = self._observe_step
        if observe is not None:
            # The closed loop measures what the step really took (the planner never sees the
            # device model itself): one observation per priced step, or for a fast-forwarded
            # block its first and last step (they bracket the KV growth; all steps of a block
            # have the same shape otherwise).
            observe_block(observe, shape, end_times, start)
        # The next formation sees what arrived before the last step of this block started.
        self._last_step_start_ms = float(end_times[-2]) if len(end_times) > 1 else start
        k = len(end_times)
        self._num_steps += k
        times = end_times.tolist()
        finished: list[SimRequest] = []
        for req in plan.decodes:
            req.num_output += k
            req.kv_tokens += k
            req.parked_steps = 0
            req.token_times_ms.extend(times)
            if req.is_done:
                finished.append(req)
        state.kv_used_tokens += k * len(plan.decodes)
        if plan.decays_token_ratio and plan.decodes:
            state.decay_new_token_ratio(k)
        for req in plan.parked:
            req.parked_steps += 1
            req.total_parked_steps += 1
        num_prefill_tokens = 0
        for req, c in plan.chunks:
            num_prefill_tokens += c
            if req.kv_tokens == 0 and req.prefilled:
                # Prefix-cache hit: its blocks are pinned once the request starts.
                req.kv_tokens = req.prefilled
                state.kv_used_tokens += req.prefilled
            req.prefilled += c
            req.kv_tokens += c
            state.kv_used_tokens += c
            if state.chunked is req:
                state.chunked = None
            else:
                state.waiting.remove(req)
            if req.remaining_prefill > 0:
                state.chunked = req
                continue
            if req.first_token_ms < 0:
                req.first_token_ms = end
            req.num_output += 1
            req.token_times_ms.append(end)
            if req.is_done:
                finished.append(req)
            else:
                state.running.append(req)
        if finished:
            done = {id(r) for r in finished}
            state.running = [r for r in state.running if id(r) not in done]
            for req in finished:
                state.kv_used_tokens -= req.kv_tokens
                req.kv_tokens = 0
                if state.prefix_cache is not None:
                    state.prefix_cache.insert(req.hash_ids)
                req.finish_ms = end
                self._record(req, "ok")
        self.sink.add_step(
            {
                "start_ms": start,
                "end_ms": end,
                "num_steps": k,
                "num_decodes": len(plan.decodes),
                "num_parked": len(plan.parked),
                "num_prefill_reqs": len(plan.chunks),
                "num_prefill_tokens": num_prefill_tokens,
                "num_waiting": len(state.waiting),
                "num_running": len(state.running),
                "kv_used_tokens": state.kv_used_tokens,
                "budget_ms": plan.budget_ms,
                "step_ms": (end - start) / k,
            }
        )

    def _record(self, req: SimRequest, status: str) -> None:
        if status == "ok":
            self._num_finished += 1
        else:
            self._num_rejected += 1
        self.sink.add_request(
            {
                "rid": req.rid,
                "status": status,
                "arrival_ms": req.arrival_ms,
                "input_tokens": req.input_tokens,
                "output_tokens": req.output_tokens,
                "cached_tokens": req.cached_tokens,
                "ttft_slo_ms": req.ttft_slo_ms,
                "tpot_slo_ms": req.tpot_slo_ms,
                "first_token_ms": req.first_token_ms,
                "finish_ms": req.finish_ms,
                "num_retractions": req.num_retractions,
                "total_parked_steps": req.total_parked_steps,
                "token_times_ms": req.token_times_ms,
            }
        )
        req.token_times_ms = []

"""The cluster's event loop: N replicas and a router in one virtual time.

Events are the single-instance ones tagged with a replica index, plus the router's:
- ARRIVAL (request i reaches the router): the router chooses a replica, or queues the request
  FIFO when it returns None (admission-budget only); a queued request goes out strictly in order.
- STEP_END (replica r): apply the step, then let the router retry its queue (a step end is when
  a replica's budget can open), then start r's next step, so a request dispatched at that
  instant can join it.
- SCHEDULE (replica r): wake an idle replica.
- POLL: the router refreshes its load snapshot (every load_poll_interval_ms while requests are
  left; none when loads are fresh), then retries its queue.
Ordering key (time, kind, seq) as in sim/event_queue.py: deterministic for the same inputs (the
only randomness, power-of-two's draws, comes from a seeded generator).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fairbatching_sglang.core import HingeCostModel
from fairbatching_sglang.profiles.device_model import DeviceModel
from fairbatching_sglang.sim.cluster.config import RouterConfig
from fairbatching_sglang.sim.cluster.replica import Replica
from fairbatching_sglang.sim.cluster.routers import Router, make_router
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.engine import make_request
from fairbatching_sglang.sim.event_queue import EventKind, EventQueue
from fairbatching_sglang.sim.records import RecordSink
from fairbatching_sglang.sim.request import SimRequest
from fairbatching_sglang.sim.schedulers.base import SimScheduler
from fairbatching_sglang.sim.workload_arrays import SimWorkload


@dataclass(frozen=True)
class ClusterSummary:
    num_requests: int
    num_finished: int
    num_rejected: int
    num_steps: int
    num_events: int
    num_retractions: int
    num_router_queued: int  # requests that waited at the router at all
    max_router_queue: int
    end_ms: float
    requests_per_replica: tuple[int, ...]


def _per_replica(value: object, n: int, name: str) -> list:  # type: ignore[type-arg]
    """One value for every replica, or a sequence of exactly n."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: {len(value)} values for {n} replicas")
        return list(value)
    return [value] * n


class ClusterSimulator:
    def __init__(
        self,
        workload: SimWorkload,
        schedulers: list[SimScheduler],
        cost_model: HingeCostModel | Sequence[HingeCostModel],
        config: SimConfig,
        sink: RecordSink,
        kv_capacity_tokens: int | Sequence[int],
        router_config: RouterConfig,
        *,
        planning_model: HingeCostModel | Sequence[HingeCostModel] | None = None,
        ttft_slo_ms: float = 1000.0,
        tpot_slo_ms: float = 50.0,
        progress: Callable[[int, int], None] | None = None,
        devices: Sequence[DeviceModel] | None = None,
    ) -> None:
        """schedulers: one per replica (same policy; each keeps its own state). planning_model:
        the cost model the admission-budget estimate uses (default: cost_model). ttft/tpot:
        the SLO the replicas' load estimates assume (the deployment's default class).

        Heterogeneous replicas: cost_model, kv_capacity_tokens and planning_model may each be one
        value (every replica) or one per replica (replica i prices its steps with cost_model[i],
        holds kv_capacity_tokens[i] KV tokens, and the admission-budget router estimates its
        load with planning_model[i]; its scheduler should plan with the same model).

        devices: what replica i's steps really cost (one each: a device holds its own random
        stream; see devices.py); None = exactly cost_model[i] + the step overhead."""
        if not schedulers:
            raise ValueError("a cluster needs at least one replica")
        n = len(schedulers)
        cost_models = _per_replica(cost_model, n, "cost_model")
        kv_caps = _per_replica(kv_capacity_tokens, n, "kv_capacity_tokens")
        planning = _per_replica(
            planning_model if planning_model is not None else cost_model, n, "planning_model"
        )
        if devices is not None and len(devices) != n:
            raise ValueError(f"devices: {len(devices)} for {n} replicas")
        devs = list(devices) if devices is not None else [None] * n
        self.workload = workload
        self.sink = sink
        self.router_config = router_config
        self.progress = progress
        self.queue = EventQueue()
        self.next_external_ms = float("inf")
        self.replicas = [
            Replica(self, i, workload, s, cost_models[i], config, sink, kv_caps[i], devs[i])
            for i, s in enumerate(schedulers)
        ]
        self.router: Router = make_router(
            self.replicas,
            router_config,
            cost_models=planning,
            ttft_slo_ms=ttft_slo_ms,
            tpot_slo_ms=tpot_slo_ms,
            max_prefill_tokens=min(config.chunked_prefill_size, config.max_prefill_tokens),
        )
        self._polling = self.router.reads_loads and not router_config.fresh_loads
        self._router_queue: deque[SimRequest] = deque()
        self._next_index = 0
        self._next_arrival_ms = float("inf")
        self._next_poll_ms = float("inf")
        self._num_done = 0
        self._num_router_queued = 0
        self._max_router_queue = 0

    def on_request_done(self) -> None:
        self._num_done += 1

    # -- event loop ------------------------------------------------------------------------------
    def run(self) -> ClusterSummary:
        q = self.queue
        n = self.workload.num_requests
        self._push_next_arrival()
        if self._polling and n:
            self._next_poll_ms = 0.0
            q.push(0.0, EventKind.POLL)
        self._update_horizon()
        now = 0.0
        end_ms = 0.0  # the last event that was not a poll
        num_events = 0
        replicas = self.replicas
        while len(q):
            event = q.pop()
            now = event.time_ms
            num_events += 1
            kind = event.kind
            if kind is EventKind.STEP_END:
                r, payload = event.payload
                rep = replicas[r]
                rep.finish_step(payload, now)
                if self._router_queue:
                    self._drain(now)
                rep.start_if_idle(now)
            elif kind is EventKind.ARRIVAL:
                req = make_request(self.workload, event.payload)
                self._push_next_arrival()
                self._update_horizon()
                if self._router_queue:
                    self._enqueue(req)
                    self._drain(now)
                else:
                    self._route(req, now)
            elif kind is EventKind.SCHEDULE:
                replicas[event.payload[0]].on_schedule(now)
            else:  # POLL
                if self._num_done >= n:
                    continue  # a poll left over after the last request: nothing to observe
                self.router.poll(now)
                self._next_poll_ms = now + self.router_config.load_poll_interval_ms
                q.push(self._next_poll_ms, EventKind.POLL)
                self._update_horizon()
                if self._router_queue:
                    self._drain(now)
            if kind is not EventKind.POLL:
                end_ms = now
            if self.progress is not None and num_events % 8192 == 0:
                self.progress(self._num_done, n)
        self.sink.close()
        if self.progress is not None:
            self.progress(self._num_done, n)
        if self._router_queue or self._num_done != n:
            raise RuntimeError(
                f"cluster ended with {len(self._router_queue)} requests queued at the router and "
                f"{n - self._num_done} unfinished"
            )
        return ClusterSummary(
            num_requests=n,
            num_finished=sum(r._num_finished for r in replicas),
            num_rejected=sum(r._num_rejected for r in replicas),
            num_steps=sum(r._num_steps for r in replicas),
            num_events=num_events,
            num_retractions=sum(r.state.num_retractions for r in replicas),
            num_router_queued=self._num_router_queued,
            max_router_queue=self._max_router_queue,
            end_ms=end_ms,
            requests_per_replica=tuple(r._num_finished + r._num_rejected for r in replicas),
        )

    def _push_next_arrival(self) -> None:
        i = self._next_index
        if i < self.workload.num_requests:
            t = float(self.workload.arrival_ms[i])
            self.queue.push(t, EventKind.ARRIVAL, i)
            self._next_index = i + 1
            self._next_arrival_ms = t
        else:
            self._next_arrival_ms = float("inf")

    def _update_horizon(self) -> None:
        """A replica's fast-forward block must end at the next arrival or poll."""
        self.next_external_ms = min(self._next_arrival_ms, self._next_poll_ms)

    # -- routing ---------------------------------------------------------------------------------
    def _route(self, req: SimRequest, now: float) -> None:
        r = self.router.choose(req, now)
        if r is None:
            self._enqueue(req)
            return
        self._dispatch(r, req, now)

    def _enqueue(self, req: SimRequest) -> None:
        self._router_queue.append(req)
        self._num_router_queued += 1
        self._max_router_queue = max(self._max_router_queue, len(self._router_queue))

    def _drain(self, now: float) -> None:
        queue = self._router_queue
        while queue:
            r = self.router.choose(queue[0], now)
            if r is None:
                return
            self._dispatch(r, queue.popleft(), now)

    def _dispatch(self, r: int, req: SimRequest, now: float) -> None:
        self.router.on_dispatch(r, req, now)
        self.replicas[r].dispatch(req, now)

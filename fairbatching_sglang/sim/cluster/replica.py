"""One replica of a simulated cluster: the single-instance engine driven from a shared loop.

A Replica is the single-instance `Simulator` (same state, scheduler, step pricing and records)
whose event queue is a view onto the cluster's queue: its events carry the replica index, and
its fast-forward horizon is the cluster's next external event (the next arrival at the router
or the next load poll), since either may change what this replica is asked to do.

Fast-forward and the router: a decode-only block contains no admission and no completion
before its last step, so a router reading the replica mid-block sees everything but the block's
KV growth (at most one step's worth once arrivals are dense, as in every capacity probe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fairbatching_sglang.core import HingeCostModel
from fairbatching_sglang.profiles.device_model import DeviceModel
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.engine import Simulator
from fairbatching_sglang.sim.event_queue import Event, EventKind
from fairbatching_sglang.sim.records import RecordSink
from fairbatching_sglang.sim.schedulers.base import SimScheduler
from fairbatching_sglang.sim.workload_arrays import SimWorkload

if TYPE_CHECKING:
    from fairbatching_sglang.sim.cluster.engine import ClusterSimulator


class _ReplicaQueue:
    """The replica's window onto the cluster queue."""

    __slots__ = ("cluster", "index")

    def __init__(self, cluster: ClusterSimulator, index: int) -> None:
        self.cluster = cluster
        self.index = index

    def push(self, time_ms: float, kind: EventKind, payload: Any = None) -> Event:
        return self.cluster.queue.push(time_ms, kind, (self.index, payload))

    def peek_time_ms(self) -> float:
        return self.cluster.next_external_ms


class _ReplicaSink:
    """Tags this replica's rows and keeps the counters the router and its load reports need."""

    __slots__ = ("inner", "replica")

    def __init__(self, inner: RecordSink, replica: Replica) -> None:
        self.inner = inner
        self.replica = replica

    def add_request(self, row: dict[str, Any]) -> None:
        rep = self.replica
        rid = row["rid"]
        dispatch_ms = rep.dispatch_ms.pop(rid)
        row["replica"] = rep.index
        row["router_queue_ms"] = dispatch_ms - row["arrival_ms"]
        rep.num_outstanding -= 1
        rep.cluster.on_request_done()
        self.inner.add_request(row)

    def add_step(self, row: dict[str, Any]) -> None:
        rep = self.replica
        if row["num_decodes"]:
            rep.log_decode_steps(row["num_steps"], row["num_decodes"], row["end_ms"])
        row["replica"] = rep.index
        self.inner.add_step(row)

    def close(self) -> None:  # the cluster closes the shared sink once
        pass


class Replica(Simulator):
    def __init__(
        self,
        cluster: ClusterSimulator,
        index: int,
        workload: SimWorkload,
        scheduler: SimScheduler,
        cost_model: HingeCostModel,
        config: SimConfig,
        sink: RecordSink,
        kv_capacity_tokens: int,
        device: DeviceModel | None = None,
    ) -> None:
        super().__init__(
            workload, scheduler, cost_model, config, sink, kv_capacity_tokens, device=device
        )
        self.cluster = cluster
        self.index = index
        self._queue = _ReplicaQueue(cluster, index)  # type: ignore[assignment]
        self.sink = _ReplicaSink(sink, self)
        self.dispatch_ms: dict[int, float] = {}
        self.num_outstanding = 0  # dispatched and not yet finished or rejected
        # SGLang's gen_throughput: decode tokens over the wall time of the last completed log
        # interval of decode_log_interval decode steps (0 until the first one completes).
        self._log_tic_ms = 0.0
        self._log_steps = 0
        self._log_tokens = 0
        self.gen_throughput = 0.0

    # -- driven by the cluster loop --------------------------------------------------------------
    def dispatch(self, req: Any, now: float) -> None:
        self.dispatch_ms[req.rid] = now
        self.num_outstanding += 1
        self.admit(req, now)

    def on_schedule(self, now: float) -> None:
        self._wake_pending = False
        self.start_if_idle(now)

    def finish_step(self, payload: Any, now: float) -> None:
        self._finish_step(payload, now)
        self._busy = False

    def start_if_idle(self, now: float) -> None:
        if not self._busy:
            self._busy = self._start_step(now)

    # -- what a load report would say ------------------------------------------------------------
    def queued_prefill_tokens(self) -> int:
        """Prompt tokens still to prefill (waiting queue + the chunk in progress), as SGLang's
        num_waiting_uncached_tokens (prefix hits are known once a request is first considered)."""
        state = self.state
        total = sum(r.remaining_prefill for r in state.waiting)
        total += sum(r.remaining_prefill for _, r in self._pending)  # received, not yet seen
        if state.chunked is not None:
            total += state.chunked.remaining_prefill
        return total

    def decode_kv_tokens(self) -> int:
        state = self.state
        chunked = state.chunked.kv_tokens if state.chunked is not None else 0
        return state.kv_used_tokens - chunked

    def token_usage(self) -> float:
        return self.state.kv_used_tokens / self.state.kv_capacity_tokens

    def log_decode_steps(self, num_steps: int, num_decodes: int, end_ms: float) -> None:
        """Count steps with decode rows as SGLang's log_decode_stats does (every
        decode_log_interval steps: tokens generated since the last log / time since it). A
        fast-forwarded block of decode steps is counted, and may log, at its end."""
        self._log_steps += num_steps
        self._log_tokens += num_steps * num_decodes
        if self._log_steps >= self.cluster.router_config.decode_log_interval:
            gap = end_ms - self._log_tic_ms
            if gap > 0:
                self.gen_throughput = self._log_tokens * 1000.0 / gap
            self._log_tic_ms = end_ms
            self._log_steps = 0
            self._log_tokens = 0

    def gen_throughput_tps(self, now: float) -> float:
        """The last reported gen_throughput (tokens/s), as `/v1/loads` would return it."""
        return self.gen_throughput

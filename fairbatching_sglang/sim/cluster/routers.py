"""The routing policies of the simulated cluster (choices themselves live in core.routing).

- round-robin: replicas in turn.
- least-outstanding: fewest requests dispatched and not finished (the router's own count,
  always current; smg's per-worker `load()`), ties -> lowest index.
- power-of-two: SGLang-router-like: two distinct replicas drawn with a seeded RNG, keep the one
  with the lower token load = KV tokens in use (running requests) + prompt tokens waiting to be
  prefilled, from the last poll; the first on a tie. No in-flight correction (as sglang-router
  and smg's power_of_two, which compare cached loads only).
- least-load: smg's `least_load` policy (lightseekorg/smg, model_gateway/src/policies/
  least_load.rs). It minimises an estimated time-to-drain plus a KV-pressure barrier:
  `(num_waiting_uncached_tokens + tokens dispatched since the last poll) / gen_throughput
  + 0.15 s * k / (1 - k)`, k = `token_usage` from `/v1/loads`, throughput falling back to
  2000 tok/s when a replica reports none. So the load field it minimises is the waiting-queue
  token work (`num_waiting_uncached_tokens`), normalised by `gen_throughput`, with `token_usage`
  as a barrier; it credits each dispatch's prompt tokens until the next poll (the gRPC path,
  where token counts are known). `gen_throughput` is SGLang's: decode tokens per second over the
  last log interval of 40 decode steps, which grows with the decode batch size, so a busier
  replica looks faster and attracts more work until the next poll (a positive feedback the
  published cluster reports show on the bursty Azure code trace).
- admission-budget: FairBatching (DESIGN.md section 1): each replica's prefill admission budget
  (`core.load_estimate`: capacity within the TTFT SLO next to its running decodes, minus its
  queued prefill), highest budget that fits the prompt wins (`core.routing.
  choose_by_admission_budget`); None = keep the request queued at the router (FIFO).

See config.py for polling and the between-poll corrections.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairbatching_sglang.core import HingeCostModel
from fairbatching_sglang.core.load_estimate import idle_admission_tokens, prefill_capacity_tokens
from fairbatching_sglang.core.routing import (
    choose_by_admission_budget,
    choose_least,
    choose_power_of_two,
    least_load_score,
)
from fairbatching_sglang.sim.cluster.config import RouterConfig
from fairbatching_sglang.sim.cluster.replica import Replica
from fairbatching_sglang.sim.request import SimRequest


class Router:
    """choose() returns a replica index or None (queue at the router); on_dispatch() is told
    where a request went; poll() refreshes the snapshot (only when the interval is > 0)."""

    name = ""
    reads_loads = False

    def __init__(self, replicas: Sequence[Replica], config: RouterConfig) -> None:
        self.replicas = list(replicas)
        self.config = config
        self.fresh = config.fresh_loads

    def choose(self, req: SimRequest, now: float) -> int | None:
        raise NotImplementedError

    def on_dispatch(self, index: int, req: SimRequest, now: float) -> None:
        pass

    def poll(self, now: float) -> None:
        pass


class RoundRobinRouter(Router):
    name = "round-robin"

    def __init__(self, replicas: Sequence[Replica], config: RouterConfig) -> None:
        super().__init__(replicas, config)
        self._next = 0

    def choose(self, req: SimRequest, now: float) -> int | None:
        i = self._next
        self._next = (i + 1) % len(self.replicas)
        return i


class LeastOutstandingRouter(Router):
    name = "least-outstanding"

    def choose(self, req: SimRequest, now: float) -> int | None:
        return choose_least([r.num_outstanding for r in self.replicas])


class PowerOfTwoRouter(Router):
    name = "power-of-two"
    reads_loads = True

    def __init__(self, replicas: Sequence[Replica], config: RouterConfig) -> None:
        super().__init__(replicas, config)
        self.rng = np.random.default_rng(config.seed)
        self.loads = [0.0] * len(self.replicas)

    @staticmethod
    def token_load(rep: Replica) -> float:
        return float(rep.state.kv_used_tokens + rep.queued_prefill_tokens())

    def poll(self, now: float) -> None:
        self.loads = [self.token_load(r) for r in self.replicas]

    def choose(self, req: SimRequest, now: float) -> int | None:
        if self.fresh:
            self.poll(now)
        return choose_power_of_two(self.loads, self.rng)


class LeastLoadRouter(Router):
    name = "least-load"
    reads_loads = True

    def __init__(self, replicas: Sequence[Replica], config: RouterConfig) -> None:
        super().__init__(replicas, config)
        n = len(self.replicas)
        self.queued = [0.0] * n
        self.throughput = [0.0] * n
        self.usage = [0.0] * n
        self.inflight = [0.0] * n

    def poll(self, now: float) -> None:
        for i, r in enumerate(self.replicas):
            self.queued[i] = float(r.queued_prefill_tokens())
            self.throughput[i] = r.gen_throughput_tps(now)
            self.usage[i] = r.token_usage()
            self.inflight[i] = 0.0

    def choose(self, req: SimRequest, now: float) -> int | None:
        if self.fresh:
            self.poll(now)
        cfg = self.config
        scores = [
            least_load_score(
                self.queued[i],
                self.inflight[i],
                self.throughput[i],
                self.usage[i],
                kv_pressure_weight_s=cfg.kv_pressure_weight_s,
                default_throughput_tps=cfg.default_throughput_tps,
            )
            for i in range(len(self.replicas))
        ]
        return choose_least(scores)

    def on_dispatch(self, index: int, req: SimRequest, now: float) -> None:
        if not self.fresh:
            self.inflight[index] += req.input_tokens


class AdmissionBudgetRouter(Router):
    """Fresh loads (interval 0): the budget read at decision time t is exactly LoadEstimate's
    prefill_admission_tokens, C(B, S) - Q, with B running decodes holding S KV tokens, C the
    prefill capacity next to them (core.load_estimate) and Q the queued prefill tokens.

    Stale loads (last poll at t0; since then d requests with D prompt tokens dispatched here):
    C(B + d, S + D) - max(0, Q + D - (t - t0) * C / ttft_slo). The requests dispatched since
    the poll count as decodes soon (they lower the capacity next to them, so a replica cannot
    soak up a whole interval's arrivals on an old, roomy snapshot), and the queued prefill
    drains at the replica's prefill capacity rate (drain_between_polls) so a budget spent
    between polls refills as the replica works. Decodes finishing between polls are not seen
    until the next poll (conservative)."""

    name = "admission-budget"
    reads_loads = True

    def __init__(
        self,
        replicas: Sequence[Replica],
        config: RouterConfig,
        cost_models: Sequence[HingeCostModel],
        ttft_slo_ms: float,
        tpot_slo_ms: float,
        max_prefill_tokens: int,
    ) -> None:
        """cost_models: one per replica (each replica's budget is estimated with its own)."""
        super().__init__(replicas, config)
        n = len(self.replicas)
        if len(cost_models) != n:
            raise ValueError(f"{len(cost_models)} cost models for {n} replicas")
        self.cost_models = list(cost_models)
        self.ttft_slo_ms = ttft_slo_ms
        self.tpot_slo_ms = tpot_slo_ms
        self.max_prefill_tokens = max_prefill_tokens
        self.idle = [
            idle_admission_tokens(
                cm,
                ttft_slo_ms=ttft_slo_ms,
                tpot_slo_ms=tpot_slo_ms,
                max_prefill_tokens=max_prefill_tokens,
            )
            for cm in self.cost_models
        ]
        # A prompt larger than an idle replica's budget needs only that much; with mixed
        # replicas, the largest idle budget (only the roomiest replica can take it, when idle).
        self.idle_tokens = max(self.idle)
        self.num_decodes = [0] * n  # at the last poll
        self.decode_kv = [0] * n
        self.queued = [0] * n
        self.rate_capacity = list(self.idle)  # C at the poll: the drain rate's C
        self.capacity = list(self.idle)  # C with the since-poll dispatches as decodes
        self.num_dispatched = [0] * n
        self.dispatched = [0] * n
        self.poll_ms = 0.0

    def _capacity(self, i: int, num_decodes: int, decode_kv: int) -> int:
        return prefill_capacity_tokens(
            self.cost_models[i],
            num_decodes=num_decodes,
            decode_kv_tokens=decode_kv,
            ttft_slo_ms=self.ttft_slo_ms,
            tpot_slo_ms=self.tpot_slo_ms,
            max_prefill_tokens=self.max_prefill_tokens,
        )

    def poll(self, now: float) -> None:
        for i, r in enumerate(self.replicas):
            self.num_decodes[i] = len(r.state.running)
            self.decode_kv[i] = r.decode_kv_tokens()
            self.queued[i] = r.queued_prefill_tokens()
            self.capacity[i] = self.rate_capacity[i] = self._capacity(
                i, self.num_decodes[i], self.decode_kv[i]
            )
            self.num_dispatched[i] = 0
            self.dispatched[i] = 0
        self.poll_ms = now

    def budgets(self, now: float) -> list[int]:
        if self.fresh:
            self.poll(now)
            return [max(0, c - q) for c, q in zip(self.capacity, self.queued, strict=True)]
        out = []
        elapsed = now - self.poll_ms
        drain = self.config.drain_between_polls
        for i, c in enumerate(self.capacity):
            backlog = self.queued[i] + self.dispatched[i]
            if drain:
                backlog -= int(elapsed * self.rate_capacity[i] / self.ttft_slo_ms)
            out.append(max(0, c - max(0, backlog)))
        return out

    def choose(self, req: SimRequest, now: float) -> int | None:
        return choose_by_admission_budget(
            self.budgets(now), req.remaining_prefill, max_admission_tokens=self.idle_tokens
        )

    def on_dispatch(self, index: int, req: SimRequest, now: float) -> None:
        if self.fresh:
            return
        self.num_dispatched[index] += 1
        self.dispatched[index] += req.remaining_prefill
        self.capacity[index] = self._capacity(
            index,
            self.num_decodes[index] + self.num_dispatched[index],
            self.decode_kv[index] + self.dispatched[index],
        )


def make_router(
    replicas: Sequence[Replica],
    config: RouterConfig,
    *,
    cost_models: Sequence[HingeCostModel],
    ttft_slo_ms: float,
    tpot_slo_ms: float,
    max_prefill_tokens: int,
) -> Router:
    """cost_models: the admission-budget estimate's model, one per replica."""
    name = config.name
    if name == "round-robin":
        return RoundRobinRouter(replicas, config)
    if name == "least-outstanding":
        return LeastOutstandingRouter(replicas, config)
    if name == "power-of-two":
        return PowerOfTwoRouter(replicas, config)
    if name == "least-load":
        return LeastLoadRouter(replicas, config)
    if name == "admission-budget":
        return AdmissionBudgetRouter(
            replicas, config, cost_models, ttft_slo_ms, tpot_slo_ms, max_prefill_tokens
        )
    raise ValueError(f"unknown router {name!r}")

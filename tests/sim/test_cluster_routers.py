"""Each router on small hand-checked scenarios."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fairbatching_sglang.core.load_estimate import idle_admission_tokens
from fairbatching_sglang.sim.cluster import RouterConfig
from fairbatching_sglang.sim.cluster.routers import LeastLoadRouter, PowerOfTwoRouter
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from tests.sim.cluster_helpers import simulate_cluster
from tests.sim.helpers import CM


def _wl(arrivals, inputs, outputs, ttft=1000.0):  # type: ignore[no-untyped-def]
    return SimWorkload.uniform_slo(arrivals, inputs, outputs, ttft, 50.0)


def _placement(reqs):  # type: ignore[no-untyped-def]
    return reqs.sort_values("rid").replica.tolist()


def test_round_robin_order() -> None:
    wl = _wl(np.arange(8) * 5.0, [100] * 8, [5] * 8)
    _, reqs, _ = simulate_cluster(wl, "sglang-mixed", "round-robin", 3)
    assert _placement(reqs) == [0, 1, 2, 0, 1, 2, 0, 1]


def test_least_outstanding_choice() -> None:
    # r0, r1, r2 long; r3 at t=3 ties (1 each) -> replica 0; r1 is short and done by t=500,
    # so r4 goes to replica 1, the only one with a single request outstanding... after r3.
    wl = _wl([0.0, 1.0, 2.0, 3.0, 500.0], [100] * 5, [400, 2, 400, 400, 400])
    _, reqs, _ = simulate_cluster(wl, "sglang-mixed", "least-outstanding", 3)
    assert _placement(reqs) == [0, 1, 2, 0, 1]


class _FakeReplica(SimpleNamespace):
    def queued_prefill_tokens(self) -> int:
        return self.queued

    def gen_throughput_tps(self, now: float) -> float:
        return self.tps

    def token_usage(self) -> float:
        return self.usage


def _req(tokens: int) -> SimpleNamespace:
    return SimpleNamespace(input_tokens=tokens, remaining_prefill=tokens)


def test_least_load_minimises_waiting_tokens_over_throughput_plus_kv_barrier() -> None:
    # Replica 1 runs many more requests but has less waiting prefill work: smg's score ignores
    # the running count; replica 2 has no queue but nearly full KV (the barrier dominates).
    reps = [
        _FakeReplica(queued=4000, tps=2000.0, usage=0.2, running=1),
        _FakeReplica(queued=1000, tps=2000.0, usage=0.2, running=100),
        _FakeReplica(queued=0, tps=2000.0, usage=0.98, running=1),
    ]
    router = LeastLoadRouter(reps, RouterConfig("least-load", load_poll_interval_ms=1000.0))
    router.poll(0.0)
    assert router.choose(_req(500), 1.0) == 1
    router.on_dispatch(1, _req(4000), 1.0)  # in-flight credit until the next poll
    assert router.choose(_req(500), 2.0) == 0
    router.poll(1000.0)  # the poll resets the credit
    assert router.choose(_req(500), 1001.0) == 1


def test_power_of_two_reads_token_load_and_is_seeded() -> None:
    state = lambda kv: SimpleNamespace(kv_used_tokens=kv)  # noqa: E731
    reps = [
        SimpleNamespace(state=state(5000), queued_prefill_tokens=lambda: 0),
        SimpleNamespace(state=state(0), queued_prefill_tokens=lambda: 100),
    ]
    router = PowerOfTwoRouter(reps, RouterConfig("power-of-two", load_poll_interval_ms=0.0))
    assert all(router.choose(_req(1), 0.0) == 1 for _ in range(10))
    many = [SimpleNamespace(state=state(0), queued_prefill_tokens=lambda: 0) for _ in range(5)]
    picks = []
    for _ in range(2):
        r = PowerOfTwoRouter(many, RouterConfig("power-of-two", load_poll_interval_ms=0.0, seed=4))
        picks.append([r.choose(_req(1), 0.0) for _ in range(30)])
    assert picks[0] == picks[1] and len(set(picks[0])) > 1


def _idle_budget(ttft: float) -> int:
    return idle_admission_tokens(CM, ttft_slo_ms=ttft, tpot_slo_ms=50.0, max_prefill_tokens=8192)


def test_admission_budget_queues_at_router_then_dispatches_when_room_frees() -> None:
    idle = _idle_budget(1000.0)
    big = int(idle * 0.8)
    # A and B fill both replicas' budgets; C fits neither until a prefill progresses.
    wl = _wl([0.0, 1.0, 2.0], [big, big, int(idle * 0.5)], [3, 3, 3])
    cfg = RouterConfig("admission-budget", load_poll_interval_ms=0.0)
    summary, reqs, _ = simulate_cluster(wl, "sglang-mixed", cfg, 2)
    reqs = reqs.sort_values("rid").reset_index(drop=True)
    assert reqs.replica.tolist()[:2] == [0, 1]
    assert summary.num_router_queued == 1
    assert reqs.router_queue_ms[0] == reqs.router_queue_ms[1] == 0
    assert reqs.router_queue_ms[2] > 0
    assert summary.num_finished == 3
    # C left the router at a step end of the replica it went to, before that replica finished.
    c = reqs.iloc[2]
    assert c.arrival_ms + c.router_queue_ms < reqs.finish_ms[int(c.replica)]


def test_admission_budget_prefers_largest_budget() -> None:
    idle = _idle_budget(1000.0)
    wl = _wl([0.0, 1.0, 2.0], [int(idle * 0.5), int(idle * 0.2), 100], [3, 3, 3])
    cfg = RouterConfig("admission-budget", load_poll_interval_ms=0.0)
    _, reqs, _ = simulate_cluster(wl, "sglang-mixed", cfg, 3)
    # A -> 0 (all idle, lowest index); B -> 1 (idle); C -> 2 (the only idle one left).
    assert _placement(reqs) == [0, 1, 2]


@pytest.mark.parametrize("poll_ms", [0.0, 200.0])
def test_oversize_request_is_not_stuck(poll_ms: float) -> None:
    idle = _idle_budget(500.0)
    huge = idle * 3  # more than any replica can admit within the TTFT SLO
    wl = _wl([0.0, 1.0, 2.0, 3.0], [2000, 2000, huge, 500], [50, 50, 2, 2], ttft=500.0)
    cfg = RouterConfig("admission-budget", load_poll_interval_ms=poll_ms)
    summary, reqs, _ = simulate_cluster(wl, "sglang-mixed", cfg, 2)
    assert summary.num_finished == 4
    reqs = reqs.sort_values("rid").reset_index(drop=True)
    h = reqs.iloc[2]
    assert h.status == "ok"
    if poll_ms == 0:
        # It went out only once its replica was idle: after that replica's earlier request.
        # (With stale loads "idle" is the router's estimate from the last poll.)
        dispatched = h.arrival_ms + h.router_queue_ms
        earlier = reqs[(reqs.rid < 2) & (reqs.replica == h.replica)]
        assert (earlier.finish_ms <= dispatched + 1e-9).all()
    # FIFO at the router: the small request behind it waited too.
    assert reqs.router_queue_ms[3] > 0

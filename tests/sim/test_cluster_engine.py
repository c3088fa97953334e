"""Cluster loop: N=1 equals the single instance, conservation, determinism, staleness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fairbatching_sglang.sim.cluster import ROUTER_NAMES, RouterConfig
from fairbatching_sglang.sim.schedulers import POLICY_NAMES
from tests.sim.cluster_helpers import simulate_cluster
from tests.sim.helpers import random_workload, simulate

SINGLE_COLUMNS = [
    "rid",
    "status",
    "arrival_ms",
    "first_token_ms",
    "finish_ms",
    "num_retractions",
    "total_parked_steps",
    "token_times_ms",
]


@pytest.mark.parametrize("policy", POLICY_NAMES)
@pytest.mark.parametrize("router", ["round-robin", "least-outstanding", "admission-budget"])
def test_one_replica_equals_single_instance(policy: str, router: str) -> None:
    wl = random_workload(3, n=200, rate_per_s=20.0)
    single_summary, single, _ = simulate(wl, policy)
    # With fresh loads no poll events exist, so the event sequence is the single instance's.
    cfg = RouterConfig(router, load_poll_interval_ms=0.0)
    summary, cluster, _ = simulate_cluster(wl, policy, cfg, 1)
    assert summary.num_steps == single_summary.num_steps
    pd.testing.assert_frame_equal(cluster[single.columns], single)
    assert (cluster.replica == 0).all()
    assert (cluster.router_queue_ms == 0).all() or router == "admission-budget"


@pytest.mark.parametrize("router", ROUTER_NAMES)
@pytest.mark.parametrize("poll_ms", [0.0, 500.0])
def test_every_request_finishes_once_on_one_replica(router: str, poll_ms: float) -> None:
    wl = random_workload(4, n=400, rate_per_s=60.0)
    summary, reqs, steps = simulate_cluster(
        wl, "sglang-mixed", RouterConfig(router, load_poll_interval_ms=poll_ms), 3
    )
    assert sorted(reqs.rid) == list(range(wl.num_requests))
    assert summary.num_finished == wl.num_requests
    assert sum(summary.requests_per_replica) == wl.num_requests
    assert set(reqs.replica) <= {0, 1, 2}
    for _, r in reqs.iterrows():
        t = np.asarray(r.token_times_ms)
        assert len(t) == r.output_tokens
        assert t[0] == r.first_token_ms > r.arrival_ms + r.router_queue_ms - 1e-9
        assert r.router_queue_ms >= 0
    # Each replica's steps never overlap (one engine, one step at a time).
    for _, g in steps.groupby("replica"):
        g = g.sort_values("start_ms")
        assert np.all(g.start_ms.to_numpy()[1:] >= g.end_ms.to_numpy()[:-1] - 1e-9)


@pytest.mark.parametrize("router", ROUTER_NAMES)
def test_runs_are_deterministic(router: str) -> None:
    wl = random_workload(5, n=300, rate_per_s=60.0)
    cfg = RouterConfig(router, load_poll_interval_ms=250.0, seed=7)
    _, a, _ = simulate_cluster(wl, "fairbatching", cfg, 3)
    _, b, _ = simulate_cluster(wl, "fairbatching", cfg, 3)
    pd.testing.assert_frame_equal(a, b)


def test_power_of_two_seed_changes_placement() -> None:
    wl = random_workload(6, n=200, rate_per_s=60.0)
    _, a, _ = simulate_cluster(wl, "sglang-mixed", RouterConfig("power-of-two", seed=1), 4)
    _, b, _ = simulate_cluster(wl, "sglang-mixed", RouterConfig("power-of-two", seed=2), 4)
    assert not np.array_equal(a.sort_values("rid").replica, b.sort_values("rid").replica)


def test_stale_loads_herd_power_of_two() -> None:
    """Between polls power-of-two compares the same cached loads (no in-flight correction, as
    sglang-router), so a long interval concentrates a burst on fewer replicas than fresh loads
    do; the placement differs and is less even."""
    wl = random_workload(7, n=400, rate_per_s=200.0)
    fresh = simulate_cluster(wl, "sglang-mixed", RouterConfig("power-of-two", 0.0), 4)[1]
    stale = simulate_cluster(wl, "sglang-mixed", RouterConfig("power-of-two", 60_000.0), 4)[1]
    assert not np.array_equal(fresh.sort_values("rid").replica, stale.sort_values("rid").replica)
    spread = lambda df: np.bincount(df.replica, minlength=4).std()  # noqa: E731
    assert spread(stale) >= spread(fresh)


def test_least_load_in_flight_credit_spreads_between_polls() -> None:
    """With a poll interval longer than the run, only the in-flight credit tells replicas
    apart: the router water-fills prompt tokens across replicas (smg's correction)."""
    wl = random_workload(8, n=200, rate_per_s=100.0)
    _, reqs, _ = simulate_cluster(wl, "sglang-mixed", RouterConfig("least-load", 1e9), 4)
    tokens = reqs.groupby("replica").input_tokens.sum()
    assert len(tokens) == 4
    assert tokens.max() - tokens.min() < 3000  # within one prompt of each other


def test_gen_throughput_is_sglangs_decode_log_interval_rate() -> None:
    from fairbatching_sglang.sim.cluster import ClusterSimulator
    from fairbatching_sglang.sim.config import SimConfig
    from fairbatching_sglang.sim.records import MemorySink
    from fairbatching_sglang.sim.schedulers import make_scheduler
    from fairbatching_sglang.sim.workload_arrays import SimWorkload
    from tests.sim.helpers import CM

    wl = SimWorkload.uniform_slo([0.0], [500], [100], 1000.0, 50.0)
    sink = MemorySink()
    cfg = SimConfig(step_overhead_ms=0.0, fast_forward=False)
    sim = ClusterSimulator(
        wl, [make_scheduler("sglang-mixed", CM)], CM, cfg, sink, 100_000, RouterConfig("least-load")
    )
    sim.run()
    t = sink.requests[0]["token_times_ms"]  # t[j] = end of decode step j (t[0]: the prefill)
    # Decode steps 1..99: logs after steps 40 and 80; the last covers steps 41..80.
    assert sim.replicas[0].gen_throughput_tps(0.0) == pytest.approx(40 * 1000.0 / (t[80] - t[40]))

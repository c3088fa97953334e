"""Heterogeneous replicas: one cost profile (step pricing, KV capacity, planning) per replica."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.core import HingeCostModel, SloTable, SloTargets
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.cluster_capacity import router_variants, run_cluster_capacity
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.report.cluster_report import build_cluster_report
from fairbatching_sglang.sim.cluster import (
    ROUTER_NAMES,
    ClusterSimulator,
    ClusterSummary,
    RouterConfig,
    parse_replica_profiles,
    run_cluster_simulation,
)
from fairbatching_sglang.sim.cluster.config import mix_label
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.records import MemorySink
from fairbatching_sglang.sim.schedulers import make_scheduler
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from fairbatching_sglang.workload import generate, get_preset
from tests.sim.cluster_helpers import simulate_cluster
from tests.sim.helpers import CM, random_workload


def _slower(cm: HingeCostModel, k: float) -> HingeCostModel:
    """cm with every cost k times larger (same knees)."""
    return dataclasses.replace(
        cm,
        c0_ms=cm.c0_ms * k,
        c1_ms_per_token=cm.c1_ms_per_token * k,
        c3_ms_per_kv_token=cm.c3_ms_per_kv_token * k,
        c4_ms_per_attn_unit=cm.c4_ms_per_attn_unit * k,
        c5_ms_per_token_below_knee=cm.c5_ms_per_token_below_knee * k,
        c6_ms_if_prefill=cm.c6_ms_if_prefill * k,
        c7_ms_per_token_above_knee2=cm.c7_ms_per_token_above_knee2 * k,
    )


def simulate_mixed(
    workload: SimWorkload,
    policy: str,
    router: str | RouterConfig,
    models: list[HingeCostModel],
    kv_caps: list[int] | None = None,
) -> tuple[ClusterSimulator, ClusterSummary, pd.DataFrame]:
    rcfg = router if isinstance(router, RouterConfig) else RouterConfig(router)
    sink = MemorySink(keep_steps=False)
    sim = ClusterSimulator(
        workload,
        [make_scheduler(policy, m, None) for m in models],
        models,
        SimConfig(step_overhead_ms=0.0),
        sink,
        kv_caps or [400_000] * len(models),
        rcfg,
        planning_model=models,
    )
    summary = sim.run()
    return sim, summary, pd.DataFrame(sink.requests)


def test_parse_replica_profiles() -> None:
    assert parse_replica_profiles("2xa,b, 1xc") == ["a", "a", "b", "c"]
    assert parse_replica_profiles("h100-llama3.1-8b,h200-llama3.1-8b") == [
        "h100-llama3.1-8b",
        "h200-llama3.1-8b",
    ]
    assert mix_label(["a", "a", "b", "b", "a"]) == "2xa,2xb,1xa"
    with pytest.raises(ValueError):
        parse_replica_profiles(" , ")
    with pytest.raises(ValueError):
        parse_replica_profiles("0xa")


@pytest.mark.parametrize("router", ROUTER_NAMES)
def test_per_replica_list_of_one_model_equals_default(router: str) -> None:
    """The per-replica path with the same model everywhere is the default path, record for
    record (stale loads: polls included)."""
    wl = random_workload(5, n=300, rate_per_s=60.0)
    cfg = RouterConfig(router, load_poll_interval_ms=500.0)
    s1, default, _ = simulate_cluster(wl, "fairbatching", cfg, 3)
    _, s2, mixed = simulate_mixed(wl, "fairbatching", cfg, [CM] * 3)
    assert s1 == s2
    pd.testing.assert_frame_equal(default, mixed)


@pytest.mark.parametrize("router", ROUTER_NAMES)
def test_heterogeneous_run_conserves_requests(router: str) -> None:
    wl = random_workload(6, n=300, rate_per_s=50.0)
    _, summary, reqs = simulate_mixed(wl, "sglang-mixed", router, [CM, _slower(CM, 3.0)])
    assert sorted(reqs.rid) == list(range(wl.num_requests))
    assert summary.num_finished == wl.num_requests
    assert sum(summary.requests_per_replica) == wl.num_requests


def test_each_replica_prices_with_its_own_profile() -> None:
    wl = random_workload(7, n=300, rate_per_s=30.0)
    slow = _slower(CM, 4.0)
    sim, _, rr = simulate_mixed(wl, "sglang-mixed", "round-robin", [CM, slow], [400_000, 50_000])
    assert sim.replicas[0].state.kv_capacity_tokens == 400_000
    assert sim.replicas[1].state.kv_capacity_tokens == 50_000
    # Round-robin splits evenly; the slow replica takes longer per request.
    service = (rr.finish_ms - rr.arrival_ms) / rr.output_tokens
    per = service.groupby(rr.replica).mean()
    assert per[1] > 2.0 * per[0]
    # least-outstanding sees the slow replica's requests linger and sends it fewer.
    _, summary, _ = simulate_mixed(wl, "sglang-mixed", "least-outstanding", [CM, slow])
    assert summary.requests_per_replica[1] < summary.requests_per_replica[0]


@pytest.mark.parametrize("poll_ms", [0.0, 1000.0])
def test_admission_budget_favours_the_faster_replica(poll_ms: float) -> None:
    wl = random_workload(8, n=400, rate_per_s=40.0)
    models = [_slower(CM, 3.0), CM]  # replica 1 is the fast one
    _, rr, _ = simulate_mixed(wl, "fairbatching", "round-robin", models)
    cfg = RouterConfig("admission-budget", load_poll_interval_ms=poll_ms)
    sim, ab, _ = simulate_mixed(wl, "fairbatching", cfg, models)
    assert sim.router.cost_models == models  # type: ignore[attr-defined]
    share = ab.requests_per_replica[1] / wl.num_requests
    assert share > rr.requests_per_replica[1] / wl.num_requests + 0.1


def test_runner_records_replica_profiles(tmp_path: Path) -> None:
    table = generate(get_preset("conv"), 20.0, seed=3)
    mix = [load_profile("h100-llama3.1-8b"), load_profile("h200-llama3.1-8b")]
    slo = SloTable(SloTargets(1000.0, 50.0))
    with pytest.raises(ValueError):
        run_cluster_simulation(
            table,
            "sglang-mixed",
            mix[0],
            num_replicas=3,
            router_config=RouterConfig("round-robin"),
            slo_table=slo,
            replica_profiles=mix,
        )
    res = run_cluster_simulation(
        table,
        "fairbatching",
        mix[0],
        num_replicas=2,
        router_config=RouterConfig("admission-budget"),
        slo_table=slo,
        out_dir=tmp_path,
        replica_profiles=mix,
    )
    assert res.engine.num_finished == table.num_requests
    meta = json.loads((tmp_path / "run.json").read_text())
    assert [p["name"] for p in meta["replica_profiles"]] == [p.name for p in mix]
    assert meta["replica_profiles"][1]["kv_capacity_tokens"] == mix[1].kv_capacity_tokens


def test_capacity_with_a_mix_and_report(tmp_path: Path) -> None:
    table = generate(get_preset("conv"), 30.0, seed=0)
    mix = [load_profile("h100-llama3.1-8b"), load_profile("h200-llama3.1-8b")]
    docs = run_cluster_capacity(
        table,
        mix[0],
        SloTable(SloTargets(1000.0, 50.0)),
        SimConfig(),
        replicas=[4, 8],  # replaced by the mix
        routers=router_variants(["round-robin", "admission-budget"], 10_000.0),
        arms=["sglang-mixed"],
        out_dir=tmp_path,
        meta={"command": "test", "trace": {"mean_rate_rps": table.mean_rate_rps}},
        targets=(0.9,),
        capacity=CapacityConfig(start_rate=2.0, rel_tol=0.25, max_probes=4),
        replica_profiles=mix,
    )
    assert {d["num_replicas"] for d in docs} == {2}
    assert all(d["replica_profiles"] == [p.name for p in mix] for d in docs)
    index = json.loads((tmp_path / "cluster.json").read_text())
    assert index["replica_profiles"] == [p.name for p in mix]
    text = build_cluster_report(tmp_path, "test").read_text()
    assert "Heterogeneous replicas" in text and "requests per replica" in text


def test_cli_simulate_and_capacity_with_a_mix(tmp_path: Path) -> None:
    from fairbatching_sglang.cli import app

    trace = generate(get_preset("conv"), 20.0, seed=2).to_csv(tmp_path / "t.csv")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "cluster", "simulate", "--trace", str(trace),
            "--replica-profiles", "1xh100-llama3.1-8b,h200-llama3.1-8b",
            "--router", "admission-budget", "--policy", "fairbatching-ft", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "h200-llama3.1-8b" in result.output
    assert json.loads((out / "run.json").read_text())["num_replicas"] == 2
    rep = tmp_path / "cap"
    result = CliRunner().invoke(
        app,
        [
            "cluster", "capacity", "--trace", str(trace), "--out", str(rep),
            "--replica-mix", "2xh100-llama3.1-8b,1xh200-llama3.1-8b",
            "--routers", "round-robin", "--arms", "sglang-mixed", "--targets", "0.9",
            "--max-probes", "3", "--rel-tol", "0.3", "--jobs", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    index = json.loads((rep / "cluster.json").read_text())
    assert index["replicas"] == [3]
    assert index["profile"]["name"] == "2xh100-llama3.1-8b,1xh200-llama3.1-8b"
    assert "Heterogeneous replicas" in (rep / "report.md").read_text()


def test_mismatched_per_replica_lengths_raise() -> None:
    wl = random_workload(9, n=10, rate_per_s=40.0)
    with pytest.raises(ValueError):
        ClusterSimulator(
            wl,
            [make_scheduler("sglang-mixed", CM, None) for _ in range(2)],
            [CM, CM, CM],
            SimConfig(),
            MemorySink(),
            400_000,
            RouterConfig("round-robin"),
        )

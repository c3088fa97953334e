"""The cluster capacity search and its report, end to end on a tiny synthetic trace."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.cluster_capacity import router_variants, run_cluster_capacity
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.report.cluster_report import build_cluster_report
from fairbatching_sglang.sim.cluster import RouterConfig, run_cluster_simulation
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.workload import generate, get_preset


def test_capacity_search_and_report(tmp_path: Path) -> None:
    table = generate(get_preset("conv"), 40.0, seed=0)
    docs = run_cluster_capacity(
        table,
        load_profile(),
        SloTable(SloTargets(1000.0, 50.0)),
        SimConfig(),
        replicas=[2],
        routers=router_variants(["round-robin", "admission-budget"], 10_000.0, ["least-load"]),
        arms=["sglang-mixed"],
        out_dir=tmp_path,
        meta={"command": "test", "trace": {"mean_rate_rps": table.mean_rate_rps}},
        targets=(0.9,),
        capacity=CapacityConfig(start_rate=2.0, rel_tol=0.25, max_probes=5),
    )
    assert {d["router"] for d in docs} == {"round-robin", "admission-budget", "least-load@fresh"}
    common = json.loads((tmp_path / "cluster.json").read_text())["common_rate"]["2"]
    for d in docs:
        assert any(abs(p["rate_scale"] - common) < 1e-9 for p in d["probes"])
    report = build_cluster_report(tmp_path, "test")
    text = report.read_text()
    assert "SIMULATED" in text and "| round-robin | sglang-mixed |" in text
    assert (tmp_path / "capacity.csv").exists() and (tmp_path / "plots/attainment_n2.png").exists()


def test_parquet_records_carry_replica_and_router_queue(tmp_path: Path) -> None:
    table = generate(get_preset("conv"), 20.0, seed=1)
    res = run_cluster_simulation(
        table,
        "sglang-mixed",
        load_profile(),
        num_replicas=2,
        router_config=RouterConfig("round-robin"),
        slo_table=SloTable(SloTargets(1000.0, 50.0)),
        rate_scale=1.0,
        out_dir=tmp_path,
    )
    import pandas as pd

    reqs = pd.read_parquet(tmp_path / "requests.parquet")
    assert {"replica", "router_queue_ms"} <= set(reqs.columns)
    assert len(reqs) == table.num_requests == res.engine.num_finished
    assert json.loads((tmp_path / "run.json").read_text())["num_replicas"] == 2


def test_cli_simulate(tmp_path: Path) -> None:
    from fairbatching_sglang.cli import app

    trace = generate(get_preset("conv"), 20.0, seed=2).to_csv(tmp_path / "t.csv")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "cluster", "simulate", "--trace", str(trace), "--replicas", "2",
            "--router", "least-outstanding", "--policy", "fairbatching-ft", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.output and (out / "requests.parquet").exists()

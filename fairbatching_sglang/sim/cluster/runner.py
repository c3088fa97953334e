"""One simulated cluster run: trace + scheduling policy + router + N replicas -> records, summary.

Rate scaling: `rate_scale` is per replica. A run with N replicas at rate scale s replays the
trace compressed N*s times, so each replica sees on average what a single instance sees at s,
and cluster capacities read directly against single-instance ones (sim-azure-conv etc.).

Run directory: requests.parquet (the single-instance columns plus `replica` and
`router_queue_ms`; `arrival_ms` is the arrival at the router, so TTFT includes router
queueing), steps.parquet (+ `replica`), summary.json, run.json.

Heterogeneous replicas (`replica_profiles`, one cost profile per replica, e.g. 2 x H100 + 2 x
H200): each replica prices its steps with its own profile and holds its own KV capacity, its
scheduler plans with its own profile, and the admission-budget router estimates its load with
it. The rate scale keeps its definition (the trace compressed N*s times), but the replicas now
differ in capacity, so s no longer means "what one instance of the profile carries at s".

Device model (`device_model`, a --device-model spec): what the replicas' steps really cost,
apart from what their planners believe (the profile + step overhead). Each replica builds its
own device from the spec, with its own seed (devices.py: replica 0 the spec's seed, replica i
SeedSequence([seed, i])), so replicas' noise is never identical. run.json records the spec,
each replica's seed and device, and the planner's profile(s).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fairbatching_sglang.core import FairBatchingConfig, SloTable
from fairbatching_sglang.metrics import summarize
from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.profiles.device_spec import DeviceModelSpec, parse_device_model
from fairbatching_sglang.sim.cluster.config import RouterConfig, mix_label
from fairbatching_sglang.sim.cluster.devices import build_replica_devices, device_metadata
from fairbatching_sglang.sim.cluster.engine import ClusterSimulator, ClusterSummary
from fairbatching_sglang.sim.config import SimConfig, bind_profile_limits
from fairbatching_sglang.sim.records import (
    CLUSTER_REQUEST_SCHEMA,
    CLUSTER_STEP_SCHEMA,
    MemorySink,
    ParquetSink,
)
from fairbatching_sglang.sim.runner import (
    planning_model,
    profile_metadata,
    run_metadata,
    workload_from_table,
)
from fairbatching_sglang.sim.schedulers import make_scheduler
from fairbatching_sglang.workload import RequestTable


@dataclass(frozen=True)
class ClusterRunResult:
    policy: str
    router: str
    num_replicas: int
    rate_scale: float  # per replica
    summary: dict[str, float]
    engine: ClusterSummary
    wall_s: float
    out_dir: Path | None
    records: pd.DataFrame | None = None


def run_cluster_simulation(
    table: RequestTable,
    policy: str,
    profile: CostProfile,
    *,
    num_replicas: int,
    router_config: RouterConfig,
    slo_table: SloTable,
    rate_scale: float = 1.0,
    sim_config: SimConfig | None = None,
    fairbatching_config: FairBatchingConfig | None = None,
    out_dir: Path | None = None,
    keep_records: bool = False,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
    replica_profiles: Sequence[CostProfile] | None = None,
    device_model: DeviceModelSpec | None = None,
) -> ClusterRunResult:
    """Simulate N replicas of `policy` behind `router_config` at per-replica `rate_scale`.
    With out_dir, records stream to Parquet there; keep_records returns them in memory.

    replica_profiles: one profile per replica (len == num_replicas) instead of `profile` for
    all (heterogeneous replicas; see the module docstring).
    device_model: what steps really cost (default `profile`: each replica's own profile plus
    the step overhead); one device per replica, seeds per devices.py."""
    if num_replicas < 1:
        raise ValueError("num_replicas must be >= 1")
    if replica_profiles is not None and len(replica_profiles) != num_replicas:
        raise ValueError(
            f"{len(replica_profiles)} replica profiles for num_replicas={num_replicas}"
        )
    sim_config = sim_config or SimConfig()
    total_scale = rate_scale * num_replicas
    workload = workload_from_table(table, slo_table, total_scale)
    profiles = list(replica_profiles or [profile] * num_replicas)
    # SGLang's max_running_requests rule: one limit, or each replica's from its own KV capacity.
    sim_config = bind_profile_limits(sim_config, profiles)
    plannings = [planning_model(p, sim_config) for p in profiles]
    schedulers = [make_scheduler(policy, pm, fairbatching_config) for pm in plannings]
    device_model = device_model or parse_device_model("profile")
    devices = build_replica_devices(device_model, profiles, sim_config.step_overhead_ms)
    if out_dir is not None:
        sink = ParquetSink(
            out_dir, request_schema=CLUSTER_REQUEST_SCHEMA, step_schema=CLUSTER_STEP_SCHEMA
        )
    else:
        sink = MemorySink(keep_steps=False)
    t0 = time.perf_counter()
    engine = ClusterSimulator(
        workload,
        schedulers,
        [p.cost_model for p in profiles],
        sim_config,
        sink,
        [p.kv_capacity_tokens for p in profiles],
        router_config,
        planning_model=plannings,
        ttft_slo_ms=slo_table.default.ttft_slo_ms,
        tpot_slo_ms=slo_table.default.tpot_slo_ms,
        progress=progress,
        devices=devices,
    ).run()
    wall_s = time.perf_counter() - t0
    records = (
        pd.read_parquet(out_dir / "requests.parquet")
        if out_dir is not None
        else pd.DataFrame(sink.requests)  # type: ignore[union-attr]
    )
    summary = summarize(records, span_s=table.span_s / total_scale) if len(records) else {}
    if out_dir is not None:
        meta = run_metadata(
            table,
            policy,
            profile,
            slo_table,
            rate_scale,
            sim_config,
            fairbatching_config,
            None,
            command,
        )
        meta["kind"] = "simulated-cluster"
        meta["num_replicas"] = num_replicas
        meta["replica_profiles"] = (
            [profile_metadata(p) for p in replica_profiles]
            if replica_profiles is not None
            else None
        )
        meta["device_model"] = device_metadata(device_model, devices, num_replicas)
        meta["planner_profile"] = planner_profile_label(profiles)
        meta["rate_scale_total"] = total_scale
        meta["router"] = dataclasses.asdict(router_config)
        meta["engine"] = dataclasses.asdict(engine)
        meta["wall_s"] = wall_s
        (out_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return ClusterRunResult(
        policy,
        router_config.name,
        num_replicas,
        rate_scale,
        summary,
        engine,
        wall_s,
        out_dir,
        records if keep_records else None,
    )


def planner_profile_label(profiles: Sequence[CostProfile]) -> str:
    """What the replicas' planners believe: one profile name, or the mix as KxNAME,..."""
    names = [p.name for p in profiles]
    return names[0] if len(set(names)) == 1 else mix_label(names)

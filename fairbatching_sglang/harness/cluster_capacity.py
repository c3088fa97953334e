"""Cluster capacity search: every (replicas, router, scheduling arm) combination, simulated.

Per combination, `harness.capacity.find_capacity` (doubling then bisection, probes memoised in a
ProbeCache so the 90% and 99% searches share runs) over the per-replica rate scale s: N replicas
replay the trace compressed N*s times (see sim/cluster/runner.py), so a capacity of s means the
cluster carries N times what one instance carries at s, directly comparable with the
single-instance reports. Afterwards every combination of one N also runs at a common rate (the
90% capacity of round-robin + sglang-mixed at that N, see common_rates) for the latency table.

Layout: <out>/cluster.json (config, command, versions), <out>/n<N>/<router>/<arm>.json (every
probe's summary and the capacities), <out>/n<N>/<router>/<arm>.probes/ (one file per finished
probe, written at once by the worker: what Ctrl-C keeps and --resume starts from).
Combinations run in a process pool (`jobs`), each deterministic, so the result does not depend
on the pool.

Heterogeneous replicas (`replica_profiles`, one profile per replica): the mix replaces the
replica-count list (one N = len(mix)); the rate scale stays per replica (trace compressed N*s),
but the replicas differ in capacity. The mix is recorded in cluster.json and every job document.

Device model (`device_model`): what the replicas' steps really cost (sim/cluster/devices.py:
one device per replica, each with its own seed); the planners still believe the profile(s).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.arms import resolve_arms
from fairbatching_sglang.harness.capacity import CapacityConfig, ProbeCache, find_capacity
from fairbatching_sglang.harness.pool import run_all
from fairbatching_sglang.harness.probe_store import load_probes, probe_dir, save_probe
from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.profiles.device_spec import DeviceModelSpec
from fairbatching_sglang.sim.cluster import RouterConfig, run_cluster_simulation
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.workload import RequestTable


@dataclass(frozen=True)
class RouterVariant:
    """A router as a report row: `label` names it (e.g. "least-load@fresh")."""

    label: str
    config: RouterConfig


def router_variants(
    names: Sequence[str], poll_ms: float, fresh_for: Sequence[str] = ()
) -> list[RouterVariant]:
    """One variant per router at poll_ms; plus an "@fresh" (interval 0) one for each name in
    fresh_for."""
    out = [RouterVariant(n, RouterConfig(n, load_poll_interval_ms=poll_ms)) for n in names]
    out += [
        RouterVariant(f"{n}@fresh", RouterConfig(n, load_poll_interval_ms=0.0)) for n in fresh_for
    ]
    return out


@dataclass(frozen=True)
class ClusterJob:
    table: RequestTable
    profile: CostProfile
    slo_table: SloTable
    sim_config: SimConfig
    num_replicas: int
    router: RouterVariant
    arm: str
    targets: tuple[float, ...]
    capacity: CapacityConfig
    extra_rates: tuple[float, ...] = ()
    replica_profiles: tuple[CostProfile, ...] | None = None
    probe_dir: Path | None = None  # each finished probe is saved there (probe_store.py)
    device_model: DeviceModelSpec | None = None  # None: exactly the profile(s)


def _probe(job: ClusterJob, rate: float) -> dict[str, Any]:
    (arm,) = resolve_arms([job.arm], "sim")
    res = run_cluster_simulation(
        job.table,
        arm.sim_policy,
        job.profile,
        num_replicas=job.num_replicas,
        router_config=job.router.config,
        slo_table=job.slo_table,
        rate_scale=rate,
        sim_config=dataclasses.replace(job.sim_config, **arm.sim_overrides),
        fairbatching_config=arm.fairbatching_config(),
        replica_profiles=job.replica_profiles,
        device_model=job.device_model,
    )
    return {
        **res.summary,
        "wall_s": res.wall_s,
        "num_router_queued": res.engine.num_router_queued,
        "max_router_queue": res.engine.max_router_queue,
        "requests_per_replica": list(res.engine.requests_per_replica),
    }


def run_job(job: ClusterJob, prior: dict[float, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Capacity per target (when targets) and any extra rates; returns the job's document."""
    summaries: dict[float, dict[str, Any]] = dict(prior or {})

    def attainment(rate: float) -> float:
        if rate not in summaries:
            summaries[rate] = _probe(job, rate)
            if job.probe_dir is not None:
                save_probe(job.probe_dir, rate, summaries[rate])
        a = summaries[rate].get("slo_attainment", float("nan"))
        return 0.0 if a is None or math.isnan(a) else float(a)

    cache = ProbeCache(attainment)
    caps: dict[str, float | None] = {}
    for target in job.targets:
        caps[f"{target:g}"] = find_capacity(cache, target, job.capacity).capacity
    for rate in job.extra_rates:
        cache(rate)
    return {
        "num_replicas": job.num_replicas,
        "router": job.router.label,
        "router_config": dataclasses.asdict(job.router.config),
        "arm": job.arm,
        "replica_profiles": (
            [p.name for p in job.replica_profiles] if job.replica_profiles is not None else None
        ),
        "capacity": caps,
        "probes": [{"rate_scale": r, **s} for r, s in sorted(summaries.items())],
    }


def _job_path(out_dir: Path, doc: dict[str, Any]) -> Path:
    return out_dir / f"n{doc['num_replicas']}" / doc["router"] / f"{doc['arm']}.json"


def _write(out_dir: Path, doc: dict[str, Any]) -> None:
    path = _job_path(out_dir, doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def _run_pool(
    jobs: list[ClusterJob],
    priors: list[dict[float, dict[str, Any]] | None],
    num_workers: int,
    on_done: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any] | None] = [None] * len(jobs)

    def done(i: int, doc: dict[str, Any]) -> None:
        docs[i] = doc
        on_done(doc)

    # Ctrl-C: the pool stops at once (pool.py); finished jobs are written, finished probes of
    # the others are in their probe files.
    run_all(run_job, list(zip(jobs, priors, strict=True)), num_workers, done)
    return [d for d in docs if d is not None]


def run_cluster_capacity(
    table: RequestTable,
    profile: CostProfile,
    slo_table: SloTable,
    sim_config: SimConfig,
    *,
    replicas: Sequence[int],
    routers: Sequence[RouterVariant],
    arms: Sequence[str],
    out_dir: Path,
    meta: dict[str, Any],
    targets: tuple[float, ...] = (0.90, 0.99),
    capacity: CapacityConfig | None = None,
    num_workers: int = 1,
    on_progress: Callable[[str, int, int], None] | None = None,
    replica_profiles: Sequence[CostProfile] | None = None,
    resume: bool = False,
    device_model: DeviceModelSpec | None = None,
) -> list[dict[str, Any]]:
    """Search every combination, then run each N's combinations at its common rate. Returns the
    job documents (also written under out_dir, each as soon as it finishes; every probe is
    saved as it finishes, see probe_store.py).

    resume: start each search from the probes saved in out_dir by an earlier (interrupted) run
    of the same configuration (the caller checks that, see out_dir.py): they are not run again.

    replica_profiles: a heterogeneous mix (one profile per replica); replaces `replicas` with
    [len(mix)] and `profile` for pricing."""
    mix = tuple(replica_profiles) if replica_profiles is not None else None
    if mix is not None:
        if not mix:
            raise ValueError("replica_profiles: empty mix")
        replicas = [len(mix)]
    arm_objs = resolve_arms(list(arms), "sim")  # raises naming the known arms
    capacity = capacity or CapacityConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {
        **meta,
        "replicas": list(replicas),
        "replica_profiles": [p.name for p in mix] if mix is not None else None,
        "routers": {v.label: dataclasses.asdict(v.config) for v in routers},
        "arms": {a.name: dataclasses.asdict(a) for a in arm_objs},
        "targets": list(targets),
        "capacity_search": dataclasses.asdict(capacity),
        "sim_config": dataclasses.asdict(sim_config),
    }
    (out_dir / "cluster.json").write_text(json.dumps(index, indent=2, default=str) + "\n")
    jobs = [
        ClusterJob(
            table, profile, slo_table, sim_config, n, r, a, targets, capacity,
            replica_profiles=mix, probe_dir=probe_dir(out_dir, n, r.label, a),
            device_model=device_model,
        )
        for n in replicas
        for r in routers
        for a in arms
    ]  # fmt: skip
    total = len(jobs) * 2
    done = 0

    def on_done(doc: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        _write(out_dir, doc)
        if on_progress is not None:
            on_progress(f"n{doc['num_replicas']} {doc['router']} {doc['arm']}", done, total)

    saved = [load_probes(j.probe_dir) if resume and j.probe_dir else None for j in jobs]
    docs = _run_pool(jobs, saved, num_workers, on_done)
    common = common_rates(docs, targets[0])
    index["common_rate"] = {str(n): r for n, r in common.items()}
    (out_dir / "cluster.json").write_text(json.dumps(index, indent=2, default=str) + "\n")
    detail_jobs = [
        dataclasses.replace(job, targets=(), extra_rates=(common[job.num_replicas],))
        for job in jobs
    ]
    priors = [{p["rate_scale"]: _summary_of(p) for p in doc["probes"]} for doc in docs]
    by_key = {(d["num_replicas"], d["router"], d["arm"]): d for d in docs}

    def on_detail(detail: dict[str, Any]) -> None:
        doc = by_key[(detail["num_replicas"], detail["router"], detail["arm"])]
        doc["probes"] = detail["probes"]
        on_done(doc)

    _run_pool(detail_jobs, priors, num_workers, on_detail)
    return docs


def _summary_of(probe: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in probe.items() if k != "rate_scale"}


def common_rates(
    docs: list[dict[str, Any]],
    target: float,
    baseline: tuple[str, str] = ("round-robin", "sglang-mixed"),
) -> dict[int, float]:
    """Per N: the baseline combination's capacity at `target` (stock SGLang with mixed chunking
    behind round-robin: the rate where the baseline just meets the target, so the latency table
    shows who holds up there); without it, the lowest capacity among the combinations; 1.0 when
    none was found."""
    key = f"{target:g}"
    out: dict[int, float] = {}
    for n in sorted({d["num_replicas"] for d in docs}):
        mine = [d for d in docs if d["num_replicas"] == n]
        base = [d["capacity"].get(key) for d in mine if (d["router"], d["arm"]) == baseline]
        caps = [d["capacity"].get(key) for d in mine if d["capacity"].get(key) is not None]
        if base and base[0] is not None:
            out[n] = round(base[0], 4)
        else:
            out[n] = round(min(caps), 4) if caps else 1.0
    return out

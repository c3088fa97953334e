"""One simulated run: request table + policy + profile -> run directory with records and summary.

The run directory holds requests.parquet (every token's virtual time), steps.parquet (batch
composition, parked decodes, budget, step time per step or fast-forwarded block), summary.json,
summary.md and run.json (command, versions, configuration, profile and trace that made it).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairbatching_sglang import __version__
from fairbatching_sglang.core import FairBatchingConfig, HingeCostModel, SloTable
from fairbatching_sglang.metrics import summarize
from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.profiles.device_spec import DeviceModelSpec, parse_device_model
from fairbatching_sglang.sim.config import SimConfig, bind_profile_limits
from fairbatching_sglang.sim.engine import SimSummary, Simulator
from fairbatching_sglang.sim.records import MemorySink, ParquetSink
from fairbatching_sglang.sim.schedulers import make_scheduler
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from fairbatching_sglang.workload import RequestTable


@dataclass(frozen=True)
class SimRunResult:
    policy: str
    rate_scale: float
    summary: dict[str, float]
    engine: SimSummary
    wall_s: float
    out_dir: Path | None


def workload_from_table(
    table: RequestTable, slo_table: SloTable, rate_scale: float = 1.0
) -> SimWorkload:
    """Arrays for the simulator; rate_scale > 1 compresses time (more load, same burst shape)."""
    if rate_scale <= 0:
        raise ValueError(f"rate_scale must be > 0, got {rate_scale}")
    arrival_s, input_tokens, output_tokens = table.arrays()
    n = len(arrival_s)
    classes = table.slo_class
    if classes is None:
        slo = slo_table.default
        ttft = np.full(n, slo.ttft_slo_ms)
        tpot = np.full(n, slo.tpot_slo_ms)
    else:
        resolved = [slo_table.resolve(c if isinstance(c, str) and c else None) for c in classes]
        ttft = np.array([s.ttft_slo_ms for s in resolved], dtype=np.float64)
        tpot = np.array([s.tpot_slo_ms for s in resolved], dtype=np.float64)
    return SimWorkload(
        arrival_ms=np.asarray(arrival_s, dtype=np.float64) * (1000.0 / rate_scale),
        input_tokens=np.asarray(input_tokens, dtype=np.int64),
        output_tokens=np.asarray(output_tokens, dtype=np.int64),
        ttft_slo_ms=ttft,
        tpot_slo_ms=tpot,
        hash_ids=table.hash_ids,
    )


def planning_model(profile: CostProfile, sim_config: SimConfig) -> HingeCostModel:
    """The cost model FairBatching plans with: the profile plus the simulated per-step overhead
    (it plans with the step time it will see, as a deployment learns it online)."""
    cm = profile.cost_model
    return cm.with_overhead(cm.overhead_ms + sim_config.step_overhead_ms)


def run_simulation(
    table: RequestTable,
    policy: str,
    profile: CostProfile,
    *,
    slo_table: SloTable,
    rate_scale: float = 1.0,
    sim_config: SimConfig | None = None,
    fairbatching_config: FairBatchingConfig | None = None,
    policy_profile: CostProfile | None = None,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
    device_model: DeviceModelSpec | None = None,
) -> SimRunResult:
    """Simulate one policy at one rate scale. With out_dir, records stream to Parquet there.

    device_model: what a step really costs (default `profile`: exactly `profile` plus the
    step overhead). The planner always believes `policy_profile or profile` plus the step
    overhead, so a biased / noisy device is an error the planner does not know about.
    policy_profile: the cost model FairBatching plans with, when it should differ from the
    run's `profile` (a model-error experiment).
    """
    # SGLang's max_running_requests rule needs the profile's KV capacity and context length.
    sim_config = bind_profile_limits(sim_config or SimConfig(), [profile])
    device_model = device_model or parse_device_model("profile")
    workload = workload_from_table(table, slo_table, rate_scale)
    # A separate policy_profile models a planner that is wrong about the hardware.
    planning = planning_model(policy_profile or profile, sim_config)
    scheduler = make_scheduler(policy, planning, fairbatching_config)
    sink = ParquetSink(out_dir) if out_dir is not None else MemorySink(keep_steps=False)
    device = device_model.build(profile, sim_config.step_overhead_ms)
    t0 = time.perf_counter()
    engine = Simulator(
        workload,
        scheduler,
        profile.cost_model,
        sim_config,
        sink,
        profile.kv_capacity_tokens,
        progress,
        device=device,
    ).run()
    wall_s = time.perf_counter() - t0
    records = (
        pd.read_parquet(out_dir / "requests.parquet")
        if out_dir is not None
        else pd.DataFrame(sink.requests)  # type: ignore[union-attr]
    )
    span_s = table.span_s / rate_scale
    summary = summarize(records, span_s=span_s) if len(records) else {}
    if out_dir is not None:
        meta = run_metadata(
            table,
            policy,
            profile,
            slo_table,
            rate_scale,
            sim_config,
            fairbatching_config,
            policy_profile,
            command,
        )
        meta["device_model"] = {**device_model.to_dict(), "description": device.description}
        meta["planner_profile"] = (policy_profile or profile).name
        meta["engine"] = dataclasses.asdict(engine)
        meta["wall_s"] = wall_s
        (out_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out_dir / "summary.md").write_text(summary_markdown(policy, rate_scale, summary, meta))
    return SimRunResult(policy, rate_scale, summary, engine, wall_s, out_dir)


def sim_versions() -> dict[str, str]:
    return {
        "fairbatching_sglang": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "modelled_sglang": "0.5.23 scheduling policies",
    }


def trace_metadata(table: RequestTable) -> dict[str, Any]:
    return {
        "source": str(table.source),
        "format": table.format,
        "num_requests": table.num_requests,
        "span_s": table.span_s,
        "mean_rate_rps": table.mean_rate_rps,
        "transformations": list(table.transformations),
    }


def profile_metadata(profile: CostProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "path": profile.source_path,
        "gpu": profile.gpu,
        "model": profile.model,
        "tp_size": profile.tp_size,
        "kv_capacity_tokens": profile.kv_capacity_tokens,
        "coefficients": profile.cost_model.to_dict(),
    }


def run_metadata(
    table: RequestTable,
    policy: str,
    profile: CostProfile,
    slo_table: SloTable,
    rate_scale: float,
    sim_config: SimConfig,
    fairbatching_config: FairBatchingConfig | None,
    policy_profile: CostProfile | None,
    command: str | None,
) -> dict[str, Any]:
    return {
        "kind": "simulated",
        "command": command or " ".join(sys.argv),
        "versions": sim_versions(),
        "trace": trace_metadata(table),
        "policy": policy,
        "rate_scale": rate_scale,
        "profile": profile_metadata(profile),
        "policy_profile": policy_profile.name if policy_profile else None,
        "slo": {
            "default": dataclasses.asdict(slo_table.default),
            "classes": {k: dataclasses.asdict(v) for k, v in slo_table.classes.items()},
        },
        "sim_config": dataclasses.asdict(sim_config),
        "fairbatching_config": dataclasses.asdict(fairbatching_config or FairBatchingConfig())
        if policy == "fairbatching"
        else None,
    }


def summary_markdown(policy: str, rate_scale: float, s: dict[str, float], meta: dict) -> str:
    def row(name: str, key: str) -> str:
        return (
            f"| {name} | {s.get(key + '_p50', float('nan')):.1f} | "
            f"{s.get(key + '_p90', float('nan')):.1f} | {s.get(key + '_p99', float('nan')):.1f} |"
        )

    lines = [
        f"# SIMULATED run: {policy} at rate x{rate_scale:g}",
        "",
        "**SIMULATED** (virtual time, cost model "
        f"`{meta['profile']['name']}`), not measured on a GPU.",
        "",
        f"Device model (what steps really cost): {meta.get('device_model', {}).get('description')}"
        f"; planner's profile: `{meta.get('planner_profile')}`.",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Trace: `{meta['trace']['source']}` ({meta['trace']['num_requests']} requests)",
        "",
        "| metric (ms) | p50 | p90 | p99 |",
        "|---|---|---|---|",
        row("TTFT", "ttft_ms"),
        row("TPOT", "tpot_ms"),
        row("ITL", "itl_ms"),
        row("E2E", "e2e_ms"),
        "",
        f"- SLO attainment (TTFT and TPOT): {s.get('slo_attainment', float('nan')):.4f}",
        f"- TTFT attainment: {s.get('ttft_attainment', float('nan')):.4f}; "
        f"TPOT attainment: {s.get('tpot_attainment', float('nan')):.4f}; "
        f"envelope attainment: {s.get('envelope_attainment', float('nan')):.4f}",
        f"- Goodput: {s.get('goodput_rps', float('nan')):.3f} req/s; "
        f"throughput {s.get('throughput_rps', float('nan')):.3f} req/s",
        f"- Completed {int(s.get('num_completed', 0))} of {int(s.get('num_requests', 0))}",
        "",
    ]
    return "\n".join(lines)

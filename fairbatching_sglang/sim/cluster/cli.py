"""`fairbatching cluster simulate|capacity`: N simulated replicas behind a router (no GPU)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fairbatching_sglang.harness import cli_checks as chk
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.cli import device_model_callback
from fairbatching_sglang.harness.out_dir import RESUME_FORCE_HELP
from fairbatching_sglang.profiles.device_spec import DEFAULT_DEVICE_MODEL
from fairbatching_sglang.sim.cli import count_progress
from fairbatching_sglang.sim.cluster.config import ROUTER_NAMES, SMG_LOAD_POLL_INTERVAL_MS

cluster_app = typer.Typer(
    help="Simulated cluster: N replicas behind a router (routing x scheduling).",
    no_args_is_help=True,
    add_completion=False,
)

ROUTER_HELP = " | ".join(ROUTER_NAMES)
POLICY_HELP = (
    "arm: sglang-default | sglang-mixed | sarathi | fairbatching | fairbatching-arrival | "
    "fairbatching-open (fairbatching-ft = fairbatching) | NAME@N"
)


def _command(sub: str) -> str:
    return f"fairbatching cluster {sub} " + shlex.join(sys.argv[3:] if len(sys.argv) > 3 else [])


def _load_inputs(
    trace: Path,
    trace_format: str | None,
    start_s: float | None,
    duration_s: float | None,
    profile: str,
    slo_ttft_ms: float,
    slo_tpot_ms: float,
    step_overhead_ms: float,
    spread_buckets_s: float | None,
) -> tuple[Any, Any, Any, Any]:
    from fairbatching_sglang.core import SloTable, SloTargets
    from fairbatching_sglang.profiles import ProfileError, load_profile
    from fairbatching_sglang.sim.config import SimConfig
    from fairbatching_sglang.workload import TraceError, load_trace

    try:
        table = load_trace(
            trace,
            trace_format,
            start_s=start_s,
            duration_s=duration_s,
            spread_buckets_s=spread_buckets_s,
        )
        prof = load_profile(profile)
        slo = SloTable(SloTargets(slo_ttft_ms, slo_tpot_ms))
        sim_cfg = SimConfig(step_overhead_ms=step_overhead_ms)
    except (TraceError, ProfileError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return table, prof, slo, sim_cfg


def _load_mix(spec: str | None) -> list[Any] | None:
    """Per-replica CostProfiles from a --replica-profiles / --replica-mix spec (None: none)."""
    if spec is None:
        return None
    from fairbatching_sglang.profiles import ProfileError, load_profile
    from fairbatching_sglang.sim.cluster.config import parse_replica_profiles

    try:
        names = parse_replica_profiles(spec)
        cache = {n: load_profile(n) for n in dict.fromkeys(names)}
    except (ProfileError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return [cache[n] for n in names]


MIX_HELP = (
    "Heterogeneous replicas: one cost profile per replica, comma-separated; KxNAME = K replicas "
    "of NAME (e.g. 2xh100-llama3.1-8b,2xh200-llama3.1-8b)."
)

TraceOpt = Annotated[Path, typer.Option(help="Trace file (any format `fairbatching trace` reads).")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="Trace format.")]
StartOpt = Annotated[float | None, typer.Option("--start", help="Trace window start (s).")]
DurationOpt = Annotated[float | None, typer.Option("--duration", help="Trace window (s).")]
ProfileOpt = Annotated[str, typer.Option(help="Cost profile name or JSON path.")]
TtftOpt = Annotated[float, typer.Option(callback=chk.positive, help="TTFT SLO (ms).")]
TpotOpt = Annotated[float, typer.Option(callback=chk.positive, help="TPOT SLO (ms).")]
PollOpt = Annotated[
    float,
    typer.Option(
        callback=chk.non_negative,
        help="Router load poll interval (ms); 0 = fresh loads at every decision.",
    ),
]
OverheadOpt = Annotated[
    float, typer.Option(callback=chk.non_negative, help="CPU overhead per step (ms).")
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        callback=device_model_callback,
        help="What a step really costs on every replica (the planners still believe the "
        "profile): realistic (default: the profile 5% slower, 3% noise, 0.2 ms jitter) | "
        "profile (exactly the profile) | profile:bias=0.05,noise=0.03,seed=0 | engine | "
        "steplog:PATH. Each replica "
        "gets its own device: replica 0 uses the spec's seed, replica i a seed derived from "
        "(seed, i), so their noise differs.",
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        help="Continue the run in --out (same configuration, checked by its hash) instead of "
        "refusing the non-empty directory; finished work is reused."
    ),
]
ForceOpt = Annotated[
    bool, typer.Option(help="Delete the earlier run's files in --out before starting.")
]


def _guard_out(out: Path, layout: Any, fields: dict[str, Any], resume: bool, force: bool) -> bool:
    """The non-empty --out rule (harness/out_dir.py); exit 2 with the reason when refused."""
    from fairbatching_sglang.harness.out_dir import OutDirError, prepare_out_dir

    try:
        return prepare_out_dir(out, layout, fields, resume=resume, force=force)
    except OutDirError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _base_fields(
    table: Any,
    window: dict[str, Any],
    prof: Any,
    slo: Any,
    sim_cfg: Any,
    mix: list[Any] | None,
    device_model: str,
) -> dict[str, Any]:
    import dataclasses

    from fairbatching_sglang.harness.run_config import profile_identity, table_identity

    return {
        "trace": table_identity(table, **window),
        "profile": profile_identity(prof) if mix is None else None,
        "replica_profiles": None if mix is None else [profile_identity(p) for p in mix],
        "slo": dataclasses.asdict(slo.default),
        "sim_config": dataclasses.asdict(sim_cfg),
        "device_model": device_model,
    }


def _device_meta(
    spec: Any, prof: Any, mix: list[Any] | None, sim_cfg: Any, num_replicas: int
) -> dict[str, Any]:
    """cluster.json's device model: the spec, replica 0's device and the per-replica seeds
    (the seed rule is per index, so the first N seeds hold for every smaller N)."""
    from fairbatching_sglang.sim.cluster.devices import replica_seeds

    first = spec.build(mix[0] if mix else prof, sim_cfg.step_overhead_ms)
    return {
        **spec.to_dict(),
        "description": first.description,
        "seed_rule": "replica 0: the spec's seed; replica i > 0: SeedSequence([seed, i])",
        "replica_seeds": replica_seeds(spec, num_replicas),
    }


@cluster_app.command()
def simulate(
    trace: TraceOpt,
    replicas: Annotated[
        int, typer.Option(callback=chk.at_least(1), help="Number of replicas (>= 1).")
    ] = 4,
    router: Annotated[str, typer.Option(help=ROUTER_HELP)] = "admission-budget",
    policy: Annotated[str, typer.Option(help=POLICY_HELP)] = "fairbatching",
    rate_scale: Annotated[
        float,
        typer.Option(
            callback=chk.positive,
            help="Per-replica rate scale (> 0; the trace runs replicas x faster).",
        ),
    ] = 1.0,
    load_poll_ms: PollOpt = SMG_LOAD_POLL_INTERVAL_MS,
    seed: Annotated[int, typer.Option(help="Power-of-two RNG seed.")] = 0,
    slo_ttft_ms: TtftOpt = 1000.0,
    slo_tpot_ms: TpotOpt = 50.0,
    profile: ProfileOpt = "h100-llama3.1-8b",
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory. " + RESUME_FORCE_HELP.format(manifest="run.json")),
    ] = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    trace_format: FormatOpt = None,
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    step_overhead_ms: OverheadOpt = 0.5,
    replica_profiles: Annotated[
        str | None, typer.Option(help=MIX_HELP + " Overrides --replicas and --profile.")
    ] = None,
    device_model: DeviceOpt = DEFAULT_DEVICE_MODEL,
    spread_buckets_s: chk.SpreadBucketsOpt = None,
) -> None:
    """Simulate REPLICAS instances of POLICY behind ROUTER; records to a run directory."""

    from fairbatching_sglang.harness.arms import resolve_arm
    from fairbatching_sglang.profiles.device_spec import parse_device_model
    from fairbatching_sglang.sim.cluster import RouterConfig, run_cluster_simulation

    try:
        arm = resolve_arm(policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from exc
    try:
        router_cfg = RouterConfig(router, load_poll_interval_ms=load_poll_ms, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    table, prof, slo, sim_cfg = _load_inputs(
        trace, trace_format, start_s, duration_s, profile, slo_ttft_ms, slo_tpot_ms,
        step_overhead_ms, spread_buckets_s,
    )  # fmt: skip
    mix = _load_mix(replica_profiles)
    if mix is not None:
        replicas = len(mix)
    import dataclasses

    from fairbatching_sglang.harness.out_dir import SIM_RUN_LAYOUT, is_complete, stamp_manifest

    out_dir = out or Path("runs") / f"cluster-{trace.stem}-n{replicas}-{router}-{policy}"
    window = {"format": trace_format, "start": start_s, "duration": duration_s,
              "spread_buckets_s": spread_buckets_s}  # fmt: skip
    fields = {
        **_base_fields(table, window, prof, slo, sim_cfg, mix, device_model),
        "replicas": replicas,
        "router": dataclasses.asdict(router_cfg),
        "policy": policy,
        "rate_scale": rate_scale,
    }
    if _guard_out(out_dir, SIM_RUN_LAYOUT, fields, resume, force) and is_complete(
        out_dir, "run.json"
    ):
        typer.echo(f"resumed: the finished run in {out_dir} is reused (same configuration)")
        return
    stamp_manifest(out_dir, "run.json", fields, complete=False)
    with count_progress() as bar:
        task = bar.add_task(f"{replicas}x {policy} / {router}", total=table.num_requests)
        result = run_cluster_simulation(
            table,
            arm.sim_policy,
            prof,
            num_replicas=replicas,
            router_config=router_cfg,
            slo_table=slo,
            rate_scale=rate_scale,
            sim_config=dataclasses.replace(sim_cfg, **arm.sim_overrides),
            fairbatching_config=arm.fairbatching_config(),
            out_dir=out_dir,
            progress=lambda d, t: bar.update(task, completed=d, total=t),
            command=_command("simulate"),
            replica_profiles=mix,
            device_model=parse_device_model(device_model),
        )
    stamp_manifest(out_dir, "run.json", fields, complete=True)  # the run rewrote run.json
    s = result.summary
    what = (
        f"{replicas} x {policy}"
        if mix is None
        else f"[{', '.join(p.name for p in mix)}] x {policy}"
    )
    import json

    run_meta = json.loads((out_dir / "run.json").read_text())
    typer.echo(
        f"SIMULATED (device model {device_model!r}, planner profile "
        f"{run_meta.get('planner_profile')}) {what} behind {router} at x{rate_scale:g} per "
        "replica: "
        f"attainment {s.get('slo_attainment', float('nan')):.4f} (TTFT "
        f"{s.get('ttft_attainment', float('nan')):.4f}, TPOT "
        f"{s.get('tpot_attainment', float('nan')):.4f}); TTFT p99 "
        f"{s.get('ttft_ms_p99', float('nan')):.0f} ms; requests per replica "
        f"{list(result.engine.requests_per_replica)}; router-queued "
        f"{result.engine.num_router_queued}; {result.wall_s:.1f} s; results in {out_dir}"
    )


@cluster_app.command()
def capacity(
    trace: TraceOpt,
    out: Annotated[
        Path,
        typer.Option(help="Report directory. " + RESUME_FORCE_HELP.format(manifest="cluster.json")),
    ],
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the search in --out (same configuration, hash in cluster.json): "
            "every finished probe is reused, only the missing ones run."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Delete the earlier results in --out (cluster.json, run.json, n*/ directories, "
            "report, CSVs, plots) before starting."
        ),
    ] = False,
    replicas: Annotated[
        str, typer.Option(callback=chk.count_list, help="Comma-separated replica counts (>= 1).")
    ] = "4,8",
    routers: Annotated[str, typer.Option(help="Comma-separated routers.")] = ",".join(ROUTER_NAMES),
    arms: Annotated[str, typer.Option(help="Comma-separated arms.")] = (
        "sglang-default,sglang-mixed,fairbatching"
    ),
    fresh_routers: Annotated[
        str, typer.Option(help="Routers also run with fresh loads (an '@fresh' row each).")
    ] = "",
    load_poll_ms: PollOpt = SMG_LOAD_POLL_INTERVAL_MS,
    start_rate: Annotated[
        float, typer.Option(callback=chk.positive, help="First per-replica rate probed (> 0).")
    ] = 2.0,
    rel_tol: Annotated[
        float,
        typer.Option(callback=chk.non_negative, help="Bisection stops at hi/lo - 1 <= this."),
    ] = 0.02,
    max_probes: Annotated[
        int, typer.Option(callback=chk.at_least(1), help="Probe budget per target (>= 1).")
    ] = 14,
    min_rate: chk.MinRateOpt = CapacityConfig.min_rate,
    max_rate: chk.MaxRateOpt = CapacityConfig.max_rate,
    targets: Annotated[
        str, typer.Option(callback=chk.non_empty_target_list, help="Attainment targets, (0, 1].")
    ] = "0.9,0.99",
    jobs: Annotated[int, typer.Option(callback=chk.at_least(1), help="Worker processes.")] = 2,
    slo_ttft_ms: TtftOpt = 1000.0,
    slo_tpot_ms: TpotOpt = 50.0,
    profile: ProfileOpt = "h100-llama3.1-8b",
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    trace_format: FormatOpt = None,
    start_s: StartOpt = None,
    duration_s: DurationOpt = None,
    step_overhead_ms: OverheadOpt = 0.5,
    replica_mix: Annotated[
        str | None,
        typer.Option(help=MIX_HELP + " Replaces --replicas (one N = the mix) and --profile."),
    ] = None,
    device_model: DeviceOpt = DEFAULT_DEVICE_MODEL,
    spread_buckets_s: chk.SpreadBucketsOpt = None,
) -> None:
    """Capacity of every replicas x router x arm combination; report in OUT (SIMULATED)."""
    import dataclasses
    import json
    import time

    from fairbatching_sglang.harness.arms import resolve_arms
    from fairbatching_sglang.harness.cluster_capacity import router_variants, run_cluster_capacity
    from fairbatching_sglang.harness.out_dir import CLUSTER_CAPACITY_LAYOUT, manifest_fields
    from fairbatching_sglang.profiles.device_spec import parse_device_model
    from fairbatching_sglang.report.cluster_report import build_cluster_report
    from fairbatching_sglang.sim.runner import profile_metadata, sim_versions, trace_metadata

    def split(s: str) -> list[str]:
        return [x.strip() for x in s.split(",") if x.strip()]

    try:
        variants = router_variants(split(routers), load_poll_ms, split(fresh_routers))
        cap_cfg = chk.capacity_search(
            start_rate=start_rate,
            rel_tol=rel_tol,
            max_probes=max_probes,
            min_rate=min_rate,
            max_rate=max_rate,
        )
        n_list = [int(x) for x in split(replicas)]
        target_list = tuple(float(x) for x in split(targets))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        resolve_arms(split(arms), "sim")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--arms") from exc
    table, prof, slo, sim_cfg = _load_inputs(
        trace, trace_format, start_s, duration_s, profile, slo_ttft_ms, slo_tpot_ms,
        step_overhead_ms, spread_buckets_s,
    )  # fmt: skip
    mix = _load_mix(replica_mix)
    window = {"format": trace_format, "start": start_s, "duration": duration_s,
              "spread_buckets_s": spread_buckets_s}  # fmt: skip
    fields = {
        **_base_fields(table, window, prof, slo, sim_cfg, mix, device_model),
        "replicas": n_list if mix is None else [len(mix)],
        "routers": {v.label: dataclasses.asdict(v.config) for v in variants},
        "arms": split(arms),
        "targets": list(target_list),
        "capacity_search": dataclasses.asdict(cap_cfg),
    }
    resumed = _guard_out(out, CLUSTER_CAPACITY_LAYOUT, fields, resume, force)
    meta = {
        **manifest_fields(fields),
        "kind": "simulated-cluster-capacity",
        "command": _command("capacity"),
        "versions": sim_versions(),
        "trace": trace_metadata(table),
        "profile": profile_metadata(prof),
        "slo": dataclasses.asdict(slo.default),
        "load_poll_interval_ms": load_poll_ms,
    }
    spec = parse_device_model(device_model)
    meta["device_model"] = _device_meta(
        spec, prof, mix, sim_cfg, len(mix) if mix is not None else max(n_list)
    )
    if mix is not None:
        from fairbatching_sglang.sim.cluster.config import mix_label

        meta["profile"] = {"name": mix_label([p.name for p in mix]), "heterogeneous": True}
        meta["replica_profile_details"] = {
            p.name: profile_metadata(p) for p in {p.name: p for p in mix}.values()
        }
    meta["planner_profile"] = meta["profile"]["name"]
    t0 = time.perf_counter()
    try:
        with count_progress(transient=False) as bar:
            task = bar.add_task("cluster capacity", total=None)

            def on_progress(label: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, description=f"done: {label}")

            run_cluster_capacity(
                table,
                prof,
                slo,
                sim_cfg,
                replicas=n_list,
                routers=variants,
                arms=split(arms),
                out_dir=out,
                meta=meta,
                targets=target_list,
                capacity=cap_cfg,
                num_workers=jobs,
                on_progress=on_progress,
                replica_profiles=mix,
                resume=resumed,
                device_model=spec,
            )
    except KeyboardInterrupt:
        kept = sum(1 for _ in out.glob("n*/*/*.probes/x*.json"))
        typer.echo(
            f"interrupted: {kept} finished probe(s) kept in {out}; the same command with "
            "--resume continues from them",
            err=True,
        )
        raise typer.Exit(130) from None
    index = json.loads((out / "cluster.json").read_text())
    index["wall_s"] = time.perf_counter() - t0
    (out / "cluster.json").write_text(json.dumps(index, indent=2, default=str) + "\n")
    (out / "run.json").write_text(json.dumps(index, indent=2, default=str) + "\n")
    report = build_cluster_report(out, title)
    typer.echo(f"{report} written in {index['wall_s']:.0f} s (SIMULATED)")

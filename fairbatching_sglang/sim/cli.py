"""`fairbatching simulate`: replay a trace under one scheduling policy in virtual time."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fairbatching_sglang.harness import cli_checks as chk
from fairbatching_sglang.harness.out_dir import RESUME_FORCE_HELP
from fairbatching_sglang.profiles.device_spec import DEFAULT_DEVICE_MODEL

if TYPE_CHECKING:
    from rich.progress import Progress

POLICY_HELP = (
    "An arm, the same names as `ab --arms`: sglang-default | sglang-mixed | sarathi | "
    "fairbatching (the shipped default, first-token anchor; fairbatching-ft is the same) | "
    "fairbatching-arrival | fairbatching-open | NAME@N (a stock arm at a knob setting)"
)


def count_progress(*, transient: bool = True) -> Progress:
    """The simulator commands' progress bar: description, bar, done/total, elapsed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=transient,
    )


def simulate(
    trace: Annotated[
        Path, typer.Option(help="Trace file (any format `fairbatching trace` reads).")
    ],
    policy: Annotated[str, typer.Option(help=POLICY_HELP)] = "fairbatching",
    rate_scale: Annotated[
        float, typer.Option(callback=chk.positive, help="Time compression: 2 = twice the rate.")
    ] = 1.0,
    slo_ttft_ms: Annotated[
        float, typer.Option(callback=chk.positive, help="Default TTFT SLO (ms).")
    ] = 1000.0,
    slo_tpot_ms: Annotated[
        float, typer.Option(callback=chk.positive, help="Default TPOT SLO (ms).")
    ] = 50.0,
    profile: Annotated[str, typer.Option(help="Cost profile name or JSON path.")] = (
        "h100-llama3.1-8b"
    ),
    policy_profile: Annotated[
        str | None, typer.Option(help="Profile FairBatching plans with (default: --profile).")
    ] = None,
    device_model: Annotated[
        str,
        typer.Option(
            help="What a step really costs: realistic (default: the profile 5% slower, 3% "
            "noise, 0.2 ms jitter) | profile (exactly the planner's profile) | "
            "profile:bias=0.05,noise=0.03,seed=0 | engine | steplog:PATH (the planner still "
            "believes --policy-profile or --profile)."
        ),
    ] = DEFAULT_DEVICE_MODEL,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default runs/sim-...). "
            + RESUME_FORCE_HELP.format(manifest="run.json")
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Reuse the finished run in --out (same configuration, hash in run.json) "
            "instead of simulating again; an unfinished one runs again."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Delete the earlier run's files in --out before starting.")
    ] = False,
    trace_format: Annotated[str | None, typer.Option("--format", help="Trace format.")] = None,
    start_s: Annotated[float | None, typer.Option("--start", help="Window start (s).")] = None,
    duration_s: Annotated[float | None, typer.Option("--duration", help="Window (s).")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Read at most this many rows.")] = None,
    spread_buckets_s: chk.SpreadBucketsOpt = None,
    chunked_prefill_size: Annotated[
        int | None,
        typer.Option(help="SGLang chunked_prefill_size (default 8192, or the arm's @N)."),
    ] = None,
    max_running_requests: Annotated[
        int | None,
        typer.Option(
            help="SGLang max_running_requests (default: SGLang's rule from the profile's KV "
            "capacity and context length)."
        ),
    ] = None,
    sarathi_token_budget: Annotated[
        int | None, typer.Option(help="Sarathi token budget (default 2048, or sarathi@N's).")
    ] = None,
    step_overhead_ms: Annotated[
        float, typer.Option(callback=chk.non_negative, help="CPU overhead per step (ms).")
    ] = 0.5,
    fb_anchor: Annotated[
        str | None,
        typer.Option(
            help="FairBatching decode envelope anchor: arrival | first_token (default: the "
            "arm's; fairbatching-arrival is the arrival anchor)."
        ),
    ] = None,
    fb_late_order: Annotated[
        str | None, typer.Option(help="FairBatching late prefills: edf | deprioritize.")
    ] = None,
    fast_forward: Annotated[bool, typer.Option(help="Price decode-only runs in closed form.")] = (
        True
    ),
    overlap_schedule: Annotated[
        bool,
        typer.Option(
            help="Model SGLang's overlap loop (a request arriving mid-step is admitted a step "
            "later), as the default server runs."
        ),
    ] = False,
) -> None:
    """Simulate POLICY on TRACE and write records, step trace and summary to a run directory."""

    import dataclasses

    from fairbatching_sglang.core import FairBatchingConfig, SloTable, SloTargets
    from fairbatching_sglang.harness.arms import resolve_arm
    from fairbatching_sglang.harness.out_dir import (
        SIM_RUN_LAYOUT,
        OutDirError,
        is_complete,
        prepare_out_dir,
        stamp_manifest,
    )
    from fairbatching_sglang.harness.run_config import profile_identity, table_identity
    from fairbatching_sglang.profiles import ProfileError, load_profile
    from fairbatching_sglang.profiles.device_spec import parse_device_model
    from fairbatching_sglang.sim.config import SimConfig
    from fairbatching_sglang.sim.runner import run_simulation
    from fairbatching_sglang.workload import TraceError, load_trace

    try:
        arm = resolve_arm(policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policy") from exc
    knob_opts = {"chunked_prefill_size": chunked_prefill_size,
                 "sarathi_token_budget": sarathi_token_budget}  # fmt: skip
    for knob_field, value in arm.sim_overrides.items():
        if knob_opts.get(knob_field) is not None and knob_opts[knob_field] != value:
            flag = "--" + knob_field.replace("_", "-")
            raise typer.BadParameter(
                f"--policy {policy} sets {knob_field}={value}; {flag} {knob_opts[knob_field]} "
                "contradicts it (give one)"
            )
    knobs = {k: v for k, v in knob_opts.items() if v is not None} | arm.sim_overrides
    fb_fields = dict(arm.fb_overrides) if arm.is_fairbatching else {}
    if fb_anchor is not None:
        fb_fields["decode_deadline_anchor"] = fb_anchor
    if fb_late_order is not None:
        fb_fields["late_prefill_order"] = fb_late_order
    try:
        table = load_trace(
            trace,
            trace_format,
            start_s=start_s,
            duration_s=duration_s,
            max_rows=max_rows,
            spread_buckets_s=spread_buckets_s,
        )
        prof = load_profile(profile)
        plan_prof = load_profile(policy_profile) if policy_profile else None
        device = parse_device_model(device_model)
        fb_cfg = FairBatchingConfig(**fb_fields)  # type: ignore[arg-type]
        sim_cfg = SimConfig(
            **knobs,
            max_running_requests=max_running_requests,
            step_overhead_ms=step_overhead_ms,
            fast_forward=fast_forward,
            overlap_schedule=overlap_schedule,
        )
        slo = SloTable(SloTargets(slo_ttft_ms, slo_tpot_ms))
    except (TraceError, ProfileError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    out_dir = out or Path("runs") / f"sim-{trace.stem}-{policy}-x{rate_scale:g}"
    command = "fairbatching simulate " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else [])
    fields = {
        "trace": table_identity(
            table,
            format=trace_format,
            start=start_s,
            duration=duration_s,
            max_rows=max_rows,
            spread_buckets_s=spread_buckets_s,
        ),
        "policy": policy,
        "sim_policy": arm.sim_policy,
        "rate_scale": rate_scale,
        "slo": dataclasses.asdict(slo.default),
        "profile": profile_identity(prof),
        "policy_profile": profile_identity(plan_prof),
        "device_model": device_model,
        "sim_config": dataclasses.asdict(sim_cfg),
        "fairbatching_config": dataclasses.asdict(fb_cfg),
    }
    try:
        resumed = prepare_out_dir(out_dir, SIM_RUN_LAYOUT, fields, resume=resume, force=force)
    except OutDirError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if resumed and is_complete(out_dir, "run.json"):
        typer.echo((out_dir / "summary.md").read_text())
        typer.echo(f"resumed: the finished run in {out_dir} is reused (same configuration)")
        return
    stamp_manifest(out_dir, "run.json", fields, complete=False)
    with count_progress() as bar:
        task = bar.add_task(f"{policy} x{rate_scale:g}", total=table.num_requests)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run_simulation(
            table,
            arm.sim_policy,
            prof,
            slo_table=slo,
            rate_scale=rate_scale,
            sim_config=sim_cfg,
            fairbatching_config=fb_cfg,
            policy_profile=plan_prof,
            out_dir=out_dir,
            progress=on_progress,
            command=command,
            device_model=device,
        )
    stamp_manifest(out_dir, "run.json", fields, complete=True)  # run_simulation rewrote it
    typer.echo((out_dir / "summary.md").read_text())
    typer.echo(
        f"simulated {result.engine.num_requests} requests in {result.wall_s:.2f} s "
        f"({result.engine.num_requests / max(result.wall_s, 1e-9):.0f} req/s); results in {out_dir}"
    )

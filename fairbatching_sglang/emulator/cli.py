"""`fairbatching emulate serve`: the real SGLang server on CPU with an emulated device."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Annotated

import typer

from fairbatching_sglang.profiles.device_spec import DEFAULT_DEVICE_MODEL

emulate_app = typer.Typer(no_args_is_help=True, add_completion=False)


@emulate_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    arm: Annotated[
        str,
        typer.Option(
            help="sglang-default, sglang-mixed, fairbatching (= fairbatching-ft), "
            "fairbatching-arrival or fairbatching-open."
        ),
    ] = "fairbatching",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 30000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    device_model: Annotated[
        str,
        typer.Option(
            help="What a step really costs: realistic (default: the profile 5% slower, 3% "
            "noise, 0.2 ms jitter), profile (exactly the profile), profile:bias=0.05,noise=0.03."
        ),
    ] = DEFAULT_DEVICE_MODEL,
    profile: Annotated[
        str, typer.Option(help="Emulated GPU profile (device prices, KV capacity, planner).")
    ] = "h100-llama3.1-8b",
    overhead_ms: Annotated[float, typer.Option(help="Per-step CPU/launch time (ms).")] = 0.5,
    step_log: Annotated[str | None, typer.Option(help="Device step log (JSONL).")] = None,
    max_total_tokens: Annotated[
        int | None, typer.Option(help="KV pool size (default: the profile's capacity).")
    ] = None,
    slo_ttft_ms: Annotated[float, typer.Option(help="FairBatching TTFT SLO (ms).")] = 1000.0,
    slo_tpot_ms: Annotated[float, typer.Option(help="FairBatching TPOT SLO (ms).")] = 50.0,
    dry_run: Annotated[bool, typer.Option(help="Print the command and environment only.")] = (
        False
    ),
) -> None:
    """Start `python -m sglang.launch_server` on the emulated device; extra arguments after
    the options go to SGLang unchanged (e.g. `-- --disable-overlap-schedule`)."""
    from fairbatching_sglang.core import SloTargets
    from fairbatching_sglang.emulator.launch import (
        EmulatedServerConfig,
        emulated_env,
        emulated_server_argv,
    )
    from fairbatching_sglang.harness.arms import resolve_arms
    from fairbatching_sglang.profiles import ProfileError, load_profile
    from fairbatching_sglang.profiles.device_spec import DeviceSpecError, parse_device_model

    try:
        (arm_obj,) = resolve_arms([arm], "emulated")
        parse_device_model(device_model)
        load_profile(profile)
        if overhead_ms < 0:
            raise ValueError("--overhead-ms must be >= 0")
        if max_total_tokens is not None and max_total_tokens < 1:
            raise ValueError("--max-total-tokens must be >= 1")
        slo = SloTargets(slo_ttft_ms, slo_tpot_ms)
    except (DeviceSpecError, ProfileError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    cfg = EmulatedServerConfig(device_model, profile, overhead_ms, step_log, max_total_tokens)
    argv = emulated_server_argv(
        sys.executable,
        cfg,
        host=host,
        port=port,
        arm_flags=arm_obj.gpu_flags(slo, profile),
        extra_args=list(ctx.args),
    )
    env = emulated_env(cfg)
    if dry_run:
        typer.echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " \\")
        typer.echo("  " + shlex.join(argv))
        return
    typer.echo(
        f"emulated {arm} server on http://{host}:{port} ({device_model} on {profile})", err=True
    )
    os.execve(argv[0], argv, {**os.environ, **env})

"""`fairbatching ab`: A/B runs of several arms (simulated, on a GPU, or on the real SGLang server
with an emulated device) with capacity search."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fairbatching_sglang.harness import cli_checks as chk
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.out_dir import RESUME_FORCE_HELP
from fairbatching_sglang.profiles.device_spec import DEFAULT_DEVICE_MODEL


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def device_model_callback(value: str) -> str:
    """Parse-time check of --device-model (the error names the flag and the bad part); shared
    by `ab` and `cluster simulate|capacity`."""
    from fairbatching_sglang.profiles.device_spec import DeviceSpecError, parse_device_model

    try:
        parse_device_model(value, flag="--device-model")
    except DeviceSpecError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return value


def _sweep_values(value: str | None) -> str | None:
    """--tune-*: comma-separated integers >= 1 (None: the knob's default sweep)."""
    return None if value is None else chk.count_list(value)


def _tune_config(
    arm_list: list[Any], kind: str, enabled: bool, chunk: str | None, budget: str | None
) -> Any:
    """The TuneConfig of --tune-baselines and its value options (None when off); every
    misuse is a BadParameter naming the option."""
    from fairbatching_sglang.harness.ab import TuneConfig
    from fairbatching_sglang.harness.arms import KNOBS

    given = {"sarathi_token_budget": budget, "chunked_prefill_size": chunk}
    opts = {k.field: k.option for k in KNOBS.values()}
    if not enabled:
        if stray := [opts[f] for f, v in given.items() if v is not None]:
            raise typer.BadParameter(f"{', '.join(stray)} needs --tune-baselines")
        return None
    if kind != "sim":
        # Every sweep probe on a measured backend is a server start (4 values x 2 arms x ~12
        # probes); set one knob explicitly there instead.
        raise typer.BadParameter(
            f"--tune-baselines: sim backend only (got --backend {kind}); on a server name a "
            "setting instead, e.g. --arms sglang-mixed,sglang-mixed@4096"
        )
    tunable = [a.name for a in arm_list if a.name in KNOBS]
    if not tunable:
        raise typer.BadParameter(
            f"--tune-baselines: none of --arms has a knob to tune ({', '.join(KNOBS)})"
        )
    for f, v in given.items():
        if v is not None and not any(KNOBS[a].field == f for a in tunable):
            users = [a for a, k in KNOBS.items() if k.field == f]
            raise typer.BadParameter(f"{opts[f]}: no arm in --arms uses it ({', '.join(users)})")
    sweeps = []
    for name in tunable:
        knob = KNOBS[name]
        text = given[knob.field]
        values = knob.values if text is None else tuple(int(x) for x in _items(text))
        sweeps.append((name, tuple(sorted(set(values)))))
    return TuneConfig(tuple(sweeps))


def _items(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _bound(value: float | None) -> float | None:
    # A negative threshold switches that check off (typer has no "none" for floats).
    return None if value is not None and value < 0 else value


def ab(
    trace: Annotated[
        Path, typer.Option(help="Trace file (any format `fairbatching trace` reads).")
    ],
    arms: Annotated[
        str,
        typer.Option(
            help="Comma-separated arms: sglang-default, sglang-mixed, sarathi (sim only), "
            "fairbatching (the shipped default; fairbatching-ft is the same), "
            "fairbatching-arrival, fairbatching-open; a stock arm at another setting of its knob "
            "as NAME@N (sglang-*: chunked_prefill_size, sarathi: token budget), e.g. sarathi@1024."
        ),
    ] = "sglang-default,sglang-mixed,fairbatching",
    backend: Annotated[
        str,
        typer.Option(
            help="sim | gpu | emulated (real SGLang server on CPU, emulated device) | auto "
            "(gpu when nvidia-smi finds a GPU, else sim)."
        ),
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output directory (default runs/ab-...). "
            + RESUME_FORCE_HELP.format(manifest="ab.json")
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --out: same configuration (hash in ab.json) or refused; "
            "finished runs/probes are reused, interrupted ones run again."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Delete the harness's earlier results in --out (ab.json, arm directories, "
            "report, CSVs, plots) before starting."
        ),
    ] = False,
    rates: Annotated[
        str,
        typer.Option(
            callback=chk.rate_list, help="Fixed rate scales every arm runs (> 0), e.g. 0.5,1,2."
        ),
    ] = "",
    capacity: Annotated[bool, typer.Option(help="Search each arm's capacity.")] = True,
    saturation: Annotated[
        bool | None,
        typer.Option(
            help="Also search the trace's saturation limit on this device (SLOs ignored; "
            "harness/saturation.py) and show every capacity as a fraction of it. Default: on "
            "for --backend sim with the capacity search, off on a server (more probes)."
        ),
    ] = None,
    targets: Annotated[
        str,
        typer.Option(
            callback=chk.non_empty_target_list, help="Attainment targets of the search, in (0, 1]."
        ),
    ] = "0.9,0.99",
    start_rate: Annotated[
        float, typer.Option(callback=chk.positive, help="First probe of the search (> 0).")
    ] = 1.0,
    rel_tol: Annotated[
        float, typer.Option(callback=chk.non_negative, help="Stop bisecting at hi/lo - 1 <= this.")
    ] = 0.02,
    max_probes: Annotated[
        int, typer.Option(callback=chk.at_least(1), help="Probe budget per target (>= 1).")
    ] = 14,
    min_rate: chk.MinRateOpt = CapacityConfig.min_rate,
    max_rate: chk.MaxRateOpt = CapacityConfig.max_rate,
    detail_rate: Annotated[
        float | None,
        typer.Option(
            callback=chk.optional_positive,
            help="Common rate of latency tables/CDFs (default: lowest 90% capacity).",
        ),
    ] = None,
    tune_baselines: Annotated[
        bool,
        typer.Option(
            help="sim: sweep each stock arm's main knob (capacity search per value) and report "
            "the best setting as <arm>@tuned; ratios are against the best stock arm."
        ),
    ] = False,
    tune_chunked_prefill_size: Annotated[
        str | None,
        typer.Option(
            callback=_sweep_values,
            help="--tune-baselines: chunked_prefill_size values of sglang-default and "
            "sglang-mixed (default 2048,4096,8192,16384).",
        ),
    ] = None,
    tune_sarathi_token_budget: Annotated[
        str | None,
        typer.Option(
            callback=_sweep_values,
            help="--tune-baselines: sarathi token budgets (default 512,1024,2048,4096,8192).",
        ),
    ] = None,
    slo_ttft_ms: Annotated[float, typer.Option(callback=chk.positive, help="TTFT SLO (ms).")] = (
        1000.0
    ),
    slo_tpot_ms: Annotated[float, typer.Option(callback=chk.positive, help="TPOT SLO (ms).")] = (
        50.0
    ),
    slo_grid: Annotated[
        str | None,
        typer.Option(
            help="Run the A/B at every cell of an SLO grid instead of at --slo-ttft-ms / "
            "--slo-tpot-ms: 'ttft=300,1000,3000 tpot=25,50,100' (ms). One A/B directory per "
            "cell under --out, the saturation limit once, and a grid report with the verdict "
            "per cell and a heatmap (harness/slo_grid.py)."
        ),
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            help="Cost profile: FairBatching's planner model; also the sim truth and the "
            "emulated GPU (its prices and KV capacity)."
        ),
    ] = ("h100-llama3.1-8b"),
    trace_format: Annotated[str | None, typer.Option("--format", help="Trace format.")] = None,
    start_s: Annotated[float | None, typer.Option("--start", help="Window start (s).")] = None,
    duration_s: Annotated[float | None, typer.Option("--duration", help="Window (s).")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Read at most this many rows.")] = None,
    spread_buckets_s: chk.SpreadBucketsOpt = None,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    # Measured backends (gpu, emulated)
    model: Annotated[str | None, typer.Option(help="GPU: --model-path for the server.")] = None,
    stock_venv: Annotated[
        Path | None, typer.Option(help="gpu/emulated: venv with stock sglang.")
    ] = None,
    patched_venv: Annotated[
        Path | None, typer.Option(help="gpu/emulated: venv with patched sglang.")
    ] = None,
    venv: Annotated[
        Path | None,
        typer.Option(
            help="gpu/emulated: one venv; the patch is applied/reverted per arm "
            "(emulated default: this interpreter, patched, never toggled)."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="gpu/emulated: server port.")] = 30000,
    server_arg: Annotated[
        list[str] | None, typer.Option(help="gpu/emulated: extra server argument (repeatable).")
    ] = None,
    request_timeout_s: Annotated[
        float, typer.Option(callback=chk.positive, help="gpu/emulated: per-request timeout (s).")
    ] = 600.0,
    max_in_flight: Annotated[
        int,
        typer.Option(callback=chk.at_least(1), help="gpu/emulated: connection cap (hits counted)."),
    ] = 4096,
    health_timeout_s: Annotated[
        float | None,
        typer.Option(help="gpu/emulated: wait for /health (s; default gpu 900, emulated 180)."),
    ] = None,
    num_warmup: Annotated[
        int, typer.Option(callback=chk.at_least(0), help="gpu/emulated: warm-up requests.")
    ] = 4,
    # Emulated device
    device_model: Annotated[
        str,
        typer.Option(
            callback=device_model_callback,
            help="sim/emulated: what a step really costs (the planner still believes "
            "--profile): realistic (default: the profile 5% slower, 3% noise, 0.2 ms jitter), "
            "profile (exactly --profile), profile:bias=0.05,noise=0.03,seed=0, engine, "
            "steplog:PATH (profiles/device_spec.py).",
        ),
    ] = DEFAULT_DEVICE_MODEL,
    sim_overlap_schedule: Annotated[
        bool,
        typer.Option(
            help="sim: model SGLang's default overlap loop (a request arriving mid-step is "
            "admitted a step later), as an emulated or GPU server runs."
        ),
    ] = False,
    emulated_overhead_ms: Annotated[
        float | None, typer.Option(help="Emulated: per-step CPU/launch time (ms, default 0.5).")
    ] = None,
    emulated_max_total_tokens: Annotated[
        int | None, typer.Option(help="Emulated: KV pool (default: the profile's capacity).")
    ] = None,
    max_idle_frac: Annotated[
        float,
        typer.Option(help="Emulated validity: device idle for the CPU / busy (<0: off)."),
    ] = 0.05,
    max_late_frac: Annotated[
        float, typer.Option(help="Emulated validity: late result processing / busy (<0: off).")
    ] = 0.10,
    max_late_p99_ms: Annotated[
        float, typer.Option(help="Emulated validity: p99 late_ms bound (ms, <0: off).")
    ] = 10.0,
    max_dispatch_lag_p99_ms: Annotated[
        float, typer.Option(help="Emulated validity: client dispatch lag p99 (ms, <0: off).")
    ] = 50.0,
) -> None:
    """Run ARMS on TRACE, search capacity, write one directory per arm/rate and a report.

    Exit codes: 0 done; 1 some arm has no result (every one of its runs failed); 2 bad options
    or inputs (incl. a refused --out); 130 interrupted (finished runs kept: rerun with --resume).
    """
    import dataclasses

    from rich.console import Console

    from fairbatching_sglang import __version__
    from fairbatching_sglang.core import SloTable, SloTargets
    from fairbatching_sglang.harness.ab import AbConfig, all_arm_names, failed_arms, run_ab
    from fairbatching_sglang.harness.ab_identity import ab_config_fields, backend_identity
    from fairbatching_sglang.harness.arms import resolve_arms
    from fairbatching_sglang.harness.gpu_backend import gpu_name
    from fairbatching_sglang.harness.measured_backend import MeasuredBackend
    from fairbatching_sglang.harness.measured_cli import (
        MeasuredOptions,
        OptionError,
        build_measured_backend,
        warn_without_gpu,
    )
    from fairbatching_sglang.harness.out_dir import (
        AB_LAYOUT,
        OutDirError,
        manifest_fields,
        prepare_out_dir,
    )
    from fairbatching_sglang.harness.outcome import RunOutcome
    from fairbatching_sglang.harness.preflight import PreflightError
    from fairbatching_sglang.harness.resume import count_finished, finished_by_arm
    from fairbatching_sglang.harness.run_config import profile_identity, table_identity
    from fairbatching_sglang.harness.sim_backend import SimBackend
    from fairbatching_sglang.harness.slo_grid import parse_slo_grid
    from fairbatching_sglang.harness.starvation import StarvationThresholds
    from fairbatching_sglang.profiles import ProfileError, load_profile
    from fairbatching_sglang.report import write_report
    from fairbatching_sglang.workload import TraceError, load_trace

    console = Console(stderr=True)
    gpu = gpu_name() if backend in ("auto", "gpu") else None
    kind = ("gpu" if gpu else "sim") if backend == "auto" else backend
    if kind not in ("sim", "gpu", "emulated"):
        raise typer.BadParameter("--backend must be sim, gpu, emulated or auto")
    command = "fairbatching ab " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else [])
    try:
        arm_list = resolve_arms([a.strip() for a in arms.split(",") if a.strip()], kind)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--arms") from exc
    tune = _tune_config(
        arm_list, kind, tune_baselines, tune_chunked_prefill_size, tune_sarathi_token_budget
    )
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
        grid = parse_slo_grid(slo_grid) if slo_grid is not None else None
        cfg = AbConfig(
            arms=tuple(a.name for a in arm_list),
            rates=_floats(rates),
            capacity_targets=_floats(targets),
            capacity=chk.capacity_search(
                start_rate=start_rate,
                rel_tol=rel_tol,
                max_probes=max_probes,
                min_rate=min_rate,
                max_rate=max_rate,
            )
            if capacity
            else None,  # type: ignore[arg-type]
            detail_rate=detail_rate,
            tune=tune,
            saturation=(kind == "sim" and capacity) if saturation is None else saturation,
        )
    except (TraceError, ProfileError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    opts: MeasuredOptions | None = None
    if kind != "sim":
        opts = MeasuredOptions(
            kind=kind, profile=profile, model=model, stock_venv=stock_venv,
            patched_venv=patched_venv, venv=venv, port=port,
            server_args=tuple(server_arg or ()), request_timeout_s=request_timeout_s,
            max_in_flight=max_in_flight, health_timeout_s=health_timeout_s, gpu=gpu,
            device_model=device_model, emulated_overhead_ms=emulated_overhead_ms,
            emulated_max_total_tokens=emulated_max_total_tokens, num_warmup=num_warmup,
            thresholds=StarvationThresholds(
                _bound(max_idle_frac), _bound(max_late_frac), _bound(max_late_p99_ms),
                _bound(max_dispatch_lag_p99_ms),
            ),
        )  # fmt: skip
    out_dir = out or Path("runs") / f"ab-{kind}-{trace.stem}"
    window = {"format": trace_format, "start": start_s, "duration": duration_s,
              "spread_buckets_s": spread_buckets_s, "max_rows": max_rows}  # fmt: skip
    base_rate_rps = table.num_requests / max(table.span_s, 1e-9)
    if opts is not None and (warning := warn_without_gpu(opts)) is not None:
        typer.echo(warning, err=True)

    def make_backend(slo: SloTable) -> SimBackend | MeasuredBackend:
        if opts is None:
            from fairbatching_sglang.profiles.device_spec import parse_device_model
            from fairbatching_sglang.sim.config import SimConfig

            sim_cfg = SimConfig(overlap_schedule=sim_overlap_schedule)
            return SimBackend(
                table, prof, slo, sim_cfg, command, device_model=parse_device_model(device_model)
            )
        try:
            return build_measured_backend(opts, table, slo, command)
        except OptionError as exc:
            raise typer.BadParameter(str(exc)) from exc

    def base_meta(be: SimBackend | MeasuredBackend) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "command": command,
            "versions": {"fairbatching_sglang": __version__, "python": platform.python_version()},
            "profile": prof.name if kind == "sim" else profile,
            "label": be.label,
            "trace": {
                "source": str(table.source),
                "num_requests": table.num_requests,
                "span_s": table.span_s,
                "transformations": list(table.transformations),
            },
        }
        if kind == "emulated":
            meta["device_model"] = be.recipe.describe()["device_model"]  # type: ignore[union-attr]
        return meta

    sglang_versions: dict[str, str] = {}

    def preflight(be: SimBackend | MeasuredBackend) -> None:
        if isinstance(be, MeasuredBackend) and not sglang_versions:
            try:
                sglang_versions.update(be.preflight(arm_list))  # before any server starts
            except PreflightError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from exc

    def on_run(o: RunOutcome) -> None:
        s = o.summary
        console.print(
            f"[bold]{o.arm}[/] x{o.rate_scale:.4g}: {o.status} "
            f"attainment {s.get('slo_attainment', float('nan')):.4f} "
            f"ttft p99 {s.get('ttft_ms_p99', float('nan')):.0f} ms"
            + (f" ({(o.error or '').splitlines()[0]})" if o.error else "")
        )

    def interrupted(where: Path) -> typer.Exit:
        typer.echo(
            f"interrupted: {count_finished(where)} finished run(s) kept in {where}; "
            "the same command with --resume continues",
            err=True,
        )
        return typer.Exit(130)

    def run_cell(
        slo: SloTable, cell_out: Path, cell_cfg: AbConfig, cell_resume: bool, cell_force: bool,
        extra_meta: dict[str, Any],
    ) -> tuple[dict[str, Any], Path]:  # fmt: skip
        """One A/B at one SLO into cell_out (the whole run, or one cell of --slo-grid)."""
        fields = ab_config_fields(
            table=table, window=window, slo=slo, profile=prof, device_model=device_model,
            backend=backend_identity(kind, sim_overlap_schedule, opts), cfg=cell_cfg,
        )  # fmt: skip
        be = make_backend(slo)
        try:  # every option checked, no server started yet: only now may --force delete
            resumed = prepare_out_dir(
                cell_out, AB_LAYOUT, fields, resume=cell_resume, force=cell_force
            )
        except OutDirError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        preflight(be)
        meta = {
            **base_meta(be),
            "slo": {"ttft_slo_ms": slo.default.ttft_slo_ms, "tpot_slo_ms": slo.default.tpot_slo_ms},
            **manifest_fields(fields),
            **extra_meta,
        }
        if kind != "sim":
            meta["versions"]["sglang"] = sorted(set(sglang_versions.values()))
            meta["interpreters"] = sorted(sglang_versions)
        names = (
            all_arm_names(cell_cfg, be.setting)
            if isinstance(be, SimBackend)
            else list(cell_cfg.arms)
        )
        prior = finished_by_arm(cell_out, names) if resumed else None
        if prior:
            n = sum(len(v) for v in prior.values())
            console.print(f"resuming {cell_out}: {n} finished run(s) reused")
        try:
            with console.status(f"A/B on {table.num_requests} requests ({be.label})"):
                index = run_ab(
                    be, arm_list, cell_cfg, cell_out, meta, on_run, prior, console.print,
                    base_rate_rps=base_rate_rps,
                )  # fmt: skip
        except KeyboardInterrupt:
            raise interrupted(cell_out) from None
        report = write_report(cell_out, title)
        console.print(f"report: {report}")
        return index, report

    if grid is None:
        index, report = run_cell(
            SloTable(SloTargets(slo_ttft_ms, slo_tpot_ms)), out_dir, cfg, resume, force, {}
        )
        if bad := failed_arms(index):
            typer.echo(
                f"error: no run of arm(s) {', '.join(bad)} succeeded (see {report})", err=True
            )
            raise typer.Exit(1)
        return
    _run_grid(
        grid, out_dir, cfg, resume, force, title, run_cell, make_backend, base_meta, preflight,
        base_rate_rps, console, interrupted,
        {"table": table_identity(table, **window), "arms": list(cfg.arms),
         "profile": profile_identity(prof), "device_model": device_model,
         "backend": backend_identity(kind, sim_overlap_schedule, opts),
         "runs": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "arms"}},
    )  # fmt: skip


def _run_grid(
    grid: Any, root: Path, cfg: Any, resume: bool, force: bool, title: str | None,
    run_cell: Any, make_backend: Any, base_meta: Any, preflight: Any, base_rate_rps: float,
    console: Any, interrupted: Any, fields: dict[str, Any],
) -> None:  # fmt: skip
    """--slo-grid: the saturation limit once at the root, then one A/B per cell, then the grid
    report. Exit 1 when some arm has no result in some cell."""
    import dataclasses

    from fairbatching_sglang.core import SloTable, SloTargets
    from fairbatching_sglang.harness.ab import failed_arms, saturation_of
    from fairbatching_sglang.harness.out_dir import OutDirError, manifest_fields, prepare_out_dir
    from fairbatching_sglang.harness.slo_grid import (
        GRID_LAYOUT,
        cell_dir_name,
        write_grid_manifest,
    )
    from fairbatching_sglang.report.slo_grid_report import write_grid_report

    fields = {**fields, "slo_grid": grid.to_dict()}
    try:
        resumed = prepare_out_dir(root, GRID_LAYOUT, fields, resume=resume, force=force)
    except OutDirError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    root.mkdir(parents=True, exist_ok=True)
    first = grid.cells()[0]
    be = make_backend(SloTable(SloTargets(*first)))
    preflight(be)
    doc: dict[str, Any] = {
        **base_meta(be),
        "backend": be.kind,
        "arms": list(cfg.arms),
        "cells": [list(c) for c in grid.cells()],
        "slo_grid": grid.to_dict(),
        "device_model": fields["device_model"],
        **manifest_fields(fields),
        "complete": False,
    }
    write_grid_manifest(root, doc)
    saturation: dict[str, Any] | None = None
    if cfg.saturation:
        try:
            saturation = saturation_of(
                be, cfg, root, base_rate_rps, resuming=resumed, on_progress=console.print
            )
        except KeyboardInterrupt:
            raise interrupted(root) from None
        doc["saturation"] = saturation
        write_grid_manifest(root, doc)
    cell_cfg = dataclasses.replace(cfg, saturation=False)  # searched once, above
    bad: list[str] = []
    for i, (ttft, tpot) in enumerate(grid.cells(), 1):
        name = cell_dir_name(ttft, tpot)
        console.print(
            f"[bold]SLO cell {i}/{len(grid.cells())}[/]: TTFT {ttft:g} ms, TPOT {tpot:g} ms"
        )
        cell = root / name
        extra = {"slo_grid_root": str(root), **({"saturation": saturation} if saturation else {})}
        index, _ = run_cell(
            SloTable(SloTargets(ttft, tpot)), cell, cell_cfg,
            resumed and cell.exists() and any(cell.iterdir()), False, extra,
        )  # fmt: skip
        bad += [f"{name}:{a}" for a in failed_arms(index)]
    doc["complete"] = True
    write_grid_manifest(root, doc)
    report = write_grid_report(root, title)
    console.print(f"grid report: {report}")
    if bad:
        typer.echo(f"error: no run of {', '.join(bad)} succeeded (see {report})", err=True)
        raise typer.Exit(1)

"""`fairbatching profile ...`: list, show, compare and fit step-cost profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fairbatching_sglang.profiles import (
    CostProfile,
    ProfileError,
    list_profiles,
    load_profile,
    profile_from_dict,
)

profile_app = typer.Typer(no_args_is_help=True, add_completion=False)

# Standard grid for `compare`: (label, P, B, S, Q).
STANDARD_GRID: list[tuple[str, int, int, int, float]] = [
    ("decode 1 @ kv 1024", 0, 1, 1024, 0.0),
    ("decode 16 @ kv 1024", 0, 16, 16 * 1024, 0.0),
    ("decode 64 @ kv 1024", 0, 64, 64 * 1024, 0.0),
    ("decode 256 @ kv 2048", 0, 256, 256 * 2048, 0.0),
    ("prefill 1", 1, 0, 0, 0.5),
    ("decode 1 + prefill 1", 1, 1, 1024, 0.5),
    ("prefill 128", 128, 0, 0, 128 * 64.0),
    ("prefill 512", 512, 0, 0, 512 * 256.0),
    ("prefill 2048", 2048, 0, 0, 2048 * 1024.0),
    ("prefill 8192", 8192, 0, 0, 8192 * 4096.0),
    ("chunk 512 on 4096 cached", 512, 0, 0, 512 * (4096 + 256.0)),
    ("chunk 512 + 64 decodes", 512, 64, 64 * 1024, 512 * 256.0),
    ("chunk 2048 + 128 decodes", 2048, 128, 128 * 2048, 2048 * 1024.0),
]


def _load(name_or_path: str) -> CostProfile:
    try:
        return load_profile(name_or_path)
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _predict(profile: CostProfile, p: int, b: int, s: int, q: float) -> float:
    return profile.cost_model.predict_raw_ms(p + b, s, q, num_decode_reqs=b)


@profile_app.command("list")
def list_cmd() -> None:
    """List the profiles shipped with the package."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "gpu", "model", "TP", "KV tokens", "fit mean/p90")
    for name in list_profiles():
        prof = load_profile(name)
        fit = prof.extra.get("fit", {}) or {}
        table.add_row(
            name,
            prof.gpu,
            prof.model,
            str(prof.tp_size),
            f"{prof.kv_capacity_tokens:,}",
            _fit_str(fit),
        )
    Console(width=140).print(table)


def _fit_str(fit: dict[str, Any]) -> str:
    mean, p90 = fit.get("mean_rel_err"), fit.get("p90_rel_err")
    if mean is None:
        return "-"
    return f"{mean:.2%}/{p90:.2%}" if p90 is not None else f"{mean:.2%}/-"


@profile_app.command("show")
def show_cmd(
    profile: Annotated[str, typer.Argument(help="shipped profile name or path to a JSON file")],
) -> None:
    """Coefficients, KV capacity, fit errors and reference points of a profile."""
    from rich.console import Console
    from rich.table import Table

    prof = _load(profile)
    console = Console(width=140)
    console.print(
        f"[bold]{prof.name}[/bold]  {prof.model} on {prof.gpu} TP{prof.tp_size}, "
        f"SGLang {prof.sglang_version or '?'}  ({prof.source_path})"
    )
    coeffs = Table("coefficient", "value")
    for key, value in prof.cost_model.to_dict().items():
        coeffs.add_row(key, f"{value:.6g}")
    console.print(coeffs)
    console.print(f"KV capacity: {prof.kv_capacity_tokens:,} tokens")
    if note := prof.extra.get("kv_capacity_note"):
        console.print(f"  {note}")
    fit = prof.extra.get("fit") or {}
    if fit:
        console.print(
            f"Fit ({fit.get('error_set', 'relative error')}): mean "
            f"{_pct(fit.get('mean_rel_err'))}, p90 {_pct(fit.get('p90_rel_err'))}, max "
            f"{_pct(fit.get('max_rel_err'))}, {fit.get('num_samples', '?')} samples"
            + (f", seed {fit['seed']}" if "seed" in fit else "")
        )
    refs = prof.extra.get("reference_points") or {
        k: {"engine_ms": v} for k, v in (prof.extra.get("reference_points_ms") or {}).items()
    }
    if refs:
        table = Table("reference step", "engine ms", "profile ms")
        for key, val in refs.items():
            step = _REFERENCE_SHAPES.get(key)
            predicted = val.get("predicted_ms")
            if predicted is None and step is not None:
                predicted = _predict(prof, *step)
            table.add_row(key, _ms(val.get("engine_ms")), _ms(predicted))
        console.print(table)
    if cmd := prof.extra.get("command"):
        console.print(f"Made by: {cmd}")


_REFERENCE_SHAPES = {
    "prefill_1x2048": (2048, 0, 0, 2048 * 1024.0),
    "decode_64_at_kv_1024": (0, 64, 64 * 1024, 0.0),
    "chunk_512_plus_64_decodes": (512, 64, 64 * 1024, 512 * 256.0),
}


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2%}"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


@profile_app.command("compare")
def compare_cmd(
    a: Annotated[str, typer.Argument(help="profile A (name or path)")],
    b: Annotated[str, typer.Argument(help="profile B (name or path)")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="write a PNG of predicted vs reference")
    ] = None,
) -> None:
    """Predicted step times of two profiles over a standard grid of steps."""
    from rich.console import Console
    from rich.table import Table

    pa, pb = _load(a), _load(b)
    coeffs = Table("coefficient", pa.name, pb.name)
    ca, cb = pa.cost_model.to_dict(), pb.cost_model.to_dict()
    for key in ca:
        coeffs.add_row(key, f"{ca[key]:.6g}", f"{cb[key]:.6g}")
    Console(width=140).print(coeffs)
    table = Table("step", f"{pa.name} ms", f"{pb.name} ms", "B / A")
    for label, p, nb, s, q in STANDARD_GRID:
        ta, tb = _predict(pa, p, nb, s, q), _predict(pb, p, nb, s, q)
        table.add_row(label, f"{ta:.2f}", f"{tb:.2f}", f"{tb / ta:.2f}")
    Console(width=140).print(table)
    if plot is not None:
        mode = _plot_compare(pa, pb, plot)
        typer.echo(f"wrote {plot} ({mode})")


def _engine_points(prof: CostProfile) -> list[tuple[float, float, float, float, float]] | None:
    """(P, B, S, Q, engine ms) rows: stored in the profile, else priced with aiconfigurator-core
    when it is installed, else None."""
    stored = prof.extra.get("engine_samples")
    if stored and stored.get("rows"):
        return [tuple(map(float, r)) for r in stored["rows"]]
    try:
        import aiconfigurator_core  # noqa: F401
    except ImportError:
        return None
    from fairbatching_sglang.profiles.engine_prices import EnginePricer, sample_steps

    try:
        pricer = EnginePricer.compile(prof.model, prof.gpu, prof.tp_size)
    except Exception:
        return None
    steps = sample_steps(200, 0, kv_capacity_tokens=prof.kv_capacity_tokens)
    return [
        (
            s.num_prefill_tokens,
            s.num_decode_reqs,
            s.decode_kv_tokens,
            s.prefill_attn_work,
            pricer.price(s),
        )
        for s in steps
    ]


def _plot_compare(pa: CostProfile, pb: CostProfile, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(prof, _engine_points(prof)) for prof in (pa, pb)]
    if all(pts is not None for _, pts in points):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for ax, (prof, pts) in zip(axes, points, strict=True):
            assert pts is not None
            engine = [r[4] for r in pts]
            pred = [_predict(prof, int(r[0]), int(r[1]), int(r[2]), r[3]) for r in pts]
            ax.loglog(engine, pred, ".", alpha=0.6)
            lo, hi = min(engine + pred), max(engine + pred)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xlabel("engine price (ms)")
            ax.set_ylabel("profile prediction (ms)")
            ax.set_title(f"{prof.name}: predicted vs engine")
        mode = "predicted vs engine price"
    else:
        fig, ax = plt.subplots(figsize=(6, 5))
        ta = [_predict(pa, p, nb, s, q) for _, p, nb, s, q in STANDARD_GRID]
        tb = [_predict(pb, p, nb, s, q) for _, p, nb, s, q in STANDARD_GRID]
        ax.loglog(ta, tb, "o")
        for (label, *_), x, y in zip(STANDARD_GRID, ta, tb, strict=True):
            ax.annotate(label, (x, y), fontsize=6)
        lo, hi = min(ta + tb), max(ta + tb)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"{pa.name} predicted (ms)")
        ax.set_ylabel(f"{pb.name} predicted (ms)")
        ax.set_title("standard step grid")
        mode = f"{pb.name} vs {pa.name}"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return mode


@profile_app.command("fit")
def fit_cmd(
    from_steps: Annotated[
        Path, typer.Option("--from-steps", help="JSONL step log (profiles/step_log.py)")
    ],
    out: Annotated[Path, typer.Option("--out", help="output profile JSON")],
    base: Annotated[
        str | None,
        typer.Option("--base", help="profile to take metadata and KV capacity from"),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="profile name")] = None,
    kv_capacity_tokens: Annotated[
        int | None, typer.Option("--kv-capacity-tokens", help="needed without --base")
    ] = None,
    overhead_only: Annotated[
        bool,
        typer.Option(
            "--overhead-only",
            help="keep --base's coefficients, fit only overhead_ms (for short logs)",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="held-out split seed")] = 0,
) -> None:
    """Refit a profile from measured step times (same fitter as scripts/fit_cost_profile.py)."""
    import sys

    from fairbatching_sglang.profiles.fit import (
        fit_hinge,
        fit_overhead_only,
        relative_errors,
        rounded_coefficients,
    )
    from fairbatching_sglang.profiles.step_log import (
        StepLogError,
        read_step_log,
        records_to_samples,
    )

    try:
        records = read_step_log(from_steps)
    except StepLogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    base_prof = _load(base) if base else None
    if base_prof is None and kv_capacity_tokens is None:
        typer.echo("error: give --base PROFILE or --kv-capacity-tokens N", err=True)
        raise typer.Exit(2)
    if overhead_only and base_prof is None:
        typer.echo("error: --overhead-only needs --base", err=True)
        raise typer.Exit(2)
    samples = records_to_samples(records)
    if overhead_only:
        assert base_prof is not None
        model = fit_overhead_only(base_prof.cost_model, samples)
        errors = relative_errors(model, samples)
        error_set = "all steps (overhead-only fit)"
        coefficients = {k: float(f"{v:.4g}") for k, v in model.to_dict().items()}
    else:
        train, held = samples.split_half(seed) if len(samples) >= 20 else (samples, None)
        try:
            result = fit_hinge(train, held)
        except ValueError as exc:
            typer.echo(f"error: {from_steps}: {exc}", err=True)
            raise typer.Exit(2) from exc
        coefficients = rounded_coefficients(result.cost_model)
        from fairbatching_sglang.core.cost_model import HingeCostModel

        model = HingeCostModel.from_dict(coefficients)
        errors = relative_errors(model, held if held is not None else train)
        error_set = "held-out half of the step log" if held is not None else "all steps"
    data: dict[str, Any] = {
        "name": name or out.stem,
        "gpu": base_prof.gpu if base_prof else "",
        "model": base_prof.model if base_prof else "",
        "tp_size": base_prof.tp_size if base_prof else 1,
        "sglang_version": base_prof.sglang_version if base_prof else "",
        "source": f"fit from measured step log {from_steps} ({len(records)} steps)"
        + (f", base profile {base_prof.name}" if base_prof else ""),
        "coefficients": coefficients,
        "kv_capacity_tokens": kv_capacity_tokens
        if kv_capacity_tokens is not None
        else base_prof.kv_capacity_tokens,  # type: ignore[union-attr]
        "fit": {
            **errors.to_dict(),
            "num_samples": len(records),
            "error_set": error_set,
            "seed": seed,
        },
        "command": "fairbatching profile " + " ".join(sys.argv[2:])
        if len(sys.argv) > 2
        else "fairbatching profile fit",
    }
    if base_prof and "kv_capacity_note" in base_prof.extra:
        data["kv_capacity_note"] = base_prof.extra["kv_capacity_note"]
    context_len = getattr(base_prof, "context_len", None)
    if context_len is not None:  # the base's model, so its context length carries over
        data["context_len"] = context_len
    profile_from_dict(data, str(out))
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    typer.echo(
        f"wrote {out}: mean {errors.mean_rel_err:.2%} p90 {errors.p90_rel_err:.2%} "
        f"max {errors.max_rel_err:.2%} over {errors.num_samples} steps ({error_set})"
    )

"""`fairbatching trace ...`: inspect, generate and convert traces.

Heavy imports (numpy, pandas, pyarrow, matplotlib) happen inside the commands so the CLI starts
fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from fairbatching_sglang.workload.table import RequestTable

trace_app = typer.Typer(
    help="Trace tools: stats, synthetic generation, conversion to the generic format.",
    no_args_is_help=True,
    add_completion=False,
)

FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="azure | burstgpt | mooncake | generic_csv | generic_jsonl (default: detect)",
    ),
]
StartOpt = Annotated[float | None, typer.Option("--start", help="window start, seconds")]
DurationOpt = Annotated[float | None, typer.Option("--duration", help="window length, seconds")]
MaxRowsOpt = Annotated[int | None, typer.Option("--max-rows", help="stop after N rows")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="refuse unsorted timestamps")]
ZeroOpt = Annotated[
    str, typer.Option("--zero-lengths", help="clamp (0 -> 1, default) | drop | error")
]


def _load(
    path: Path,
    fmt: str | None,
    start: float | None,
    duration: float | None,
    max_rows: int | None,
    strict: bool,
    zero_lengths: str,
    spread_buckets_s: float | None = None,
    spread_seed: int = 0,
) -> RequestTable:
    from fairbatching_sglang.workload.errors import TraceError
    from fairbatching_sglang.workload.load import load_trace

    def load(progress: Callable[[int, int], None] | None = None) -> RequestTable:
        return load_trace(
            path,
            fmt,
            start_s=start,
            duration_s=duration,
            max_rows=max_rows,
            strict=strict,
            zero_lengths=zero_lengths,  # type: ignore[arg-type]
            progress=progress,
            spread_buckets_s=spread_buckets_s,
            spread_seed=spread_seed,
        )

    big = path.exists() and path.stat().st_size > 64 << 20
    try:
        if not big:
            return load()
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(f"reading {path.name}", total=path.stat().st_size)
            return load(lambda done, total: bar.update(task, completed=done, total=total))
    except (TraceError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@trace_app.command()
def stats(
    file: Annotated[Path, typer.Argument(help="trace file")],
    fmt: FormatOpt = None,
    start: StartOpt = None,
    duration: DurationOpt = None,
    max_rows: MaxRowsOpt = None,
    strict: StrictOpt = False,
    zero_lengths: ZeroOpt = "clamp",
    plot: Annotated[Path | None, typer.Option("--plot", help="write a PNG here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Rows, span, rate, length percentiles and burstiness of a trace."""
    import time

    from fairbatching_sglang.workload.stats import compute_stats

    t0 = time.perf_counter()
    table = _load(file, fmt, start, duration, max_rows, strict, zero_lengths)
    load_s = time.perf_counter() - t0
    st = compute_stats(table)
    if as_json:
        out: dict[str, Any] = {"file": str(file), "format": table.format, **st.as_dict()}
        out["transformations"] = list(table.transformations)
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(f"file: {file}  format: {table.format}  (loaded in {load_s:.2f} s)")
        if table.transformations:
            typer.echo("transformations: " + "; ".join(table.transformations))
        typer.echo(st.render())
    if plot is not None:
        from fairbatching_sglang.workload.plot import plot_trace

        plot_trace(table, plot)
        typer.echo(f"plot: {plot}")


@trace_app.command()
def generate(
    preset: Annotated[
        str | None, typer.Option("--preset", help="conv | code | reasoning | agent")
    ] = None,
    servegen: Annotated[
        Path | None,
        typer.Option("--servegen", help="ServeGen data dir, e.g. ServeGen/data/language/m-large"),
    ] = None,
    start: Annotated[
        float | None, typer.Option("--start", help="--servegen: start on the data's clock, s")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="--servegen: seconds to generate")
    ] = None,
    scale: Annotated[
        float | None, typer.Option("--scale", help="--servegen: multiply every client's rate")
    ] = None,
    duration_s: Annotated[
        float | None, typer.Option("--duration-s", help="--preset: seconds (default 600)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", help=".csv, .jsonl or .parquet")] = Path(
        "synthetic.csv"
    ),
    rate: Annotated[
        float | None, typer.Option("--rate", help="--preset: override the mean rate (req/s)")
    ] = None,
    max_context: Annotated[
        int | None, typer.Option("--max-context", help="clip input + output to this")
    ] = None,
) -> None:
    """Generate a trace from a synthetic preset or a ServeGen data directory (same seed, same
    file)."""

    def fail(message: str) -> NoReturn:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)

    if (preset is None) == (servegen is None):
        fail("give exactly one of --preset NAME or --servegen DIR")
    if servegen is not None:
        if duration_s is not None or rate is not None:
            fail("--duration-s and --rate apply to --preset; use --duration and --scale")
        if duration is None:
            fail("--servegen needs --duration SECONDS (and optionally --start, --scale)")
        table = _servegen_table(
            servegen,
            0.0 if start is None else start,
            duration,
            1.0 if scale is None else scale,
            seed,
        )
        if max_context is not None:
            from fairbatching_sglang.workload.transforms import clip_lengths

            table = clip_lengths(table, max_context)
    else:
        assert preset is not None
        if start is not None or duration is not None or scale is not None:
            fail("--start, --duration and --scale apply to --servegen; use --duration-s, --rate")
        secs = 600.0 if duration_s is None else duration_s
        table = _preset_table(preset, secs, seed, rate, max_context)
    table.save(out)
    typer.echo(f"wrote {len(table)} requests ({table.mean_rate_rps:.2f} req/s) to {out}")


def _preset_table(
    preset: str, duration_s: float, seed: int, rate: float | None, max_context: int | None
) -> RequestTable:
    from fairbatching_sglang.workload.presets import generate_preset

    try:
        return generate_preset(
            preset, duration_s, seed=seed, rate_rps=rate, max_context=max_context
        )
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _servegen_table(
    data_dir: Path, start: float, duration: float, scale: float, seed: int
) -> RequestTable:
    from fairbatching_sglang.workload.servegen import generate_servegen

    try:  # TraceError (a bad file) is a ValueError too, as is a span outside the data
        return generate_servegen(data_dir, start, duration, scale, seed)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@trace_app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="input trace")],
    dst: Annotated[Path, typer.Argument(help="output: .csv, .jsonl or .parquet (generic)")],
    fmt: FormatOpt = None,
    start: StartOpt = None,
    duration: DurationOpt = None,
    max_rows: MaxRowsOpt = None,
    strict: StrictOpt = False,
    zero_lengths: ZeroOpt = "clamp",
    spread_buckets_s: Annotated[
        float | None,
        typer.Option("--spread-buckets-s", help="spread quantised times inside N-s buckets"),
    ] = None,
    rate_scale: Annotated[
        float | None, typer.Option("--rate-scale", help="compress time: rate x this")
    ] = None,
    max_context: Annotated[
        int | None, typer.Option("--max-context", help="clip input + output to this")
    ] = None,
    max_output: Annotated[int | None, typer.Option("--max-output", help="clip output")] = None,
    retime: Annotated[
        str | None, typer.Option("--retime", help="poisson | gamma (same mean rate)")
    ] = None,
    cv: Annotated[float, typer.Option("--cv", help="inter-arrival CV for --retime gamma")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="seed for spreading / re-timing")] = 0,
) -> None:
    """Convert a trace to the generic format, applying transformations in this order:
    window/max-rows (at load), spread buckets, re-time, rate scale, length clipping."""
    from fairbatching_sglang.workload import transforms as tf

    # Spread at load (as simulate/ab/cluster do), so a bucketed trace warns only when not spread.
    table = _load(src, fmt, start, duration, max_rows, strict, zero_lengths, spread_buckets_s, seed)
    try:
        if retime is not None:
            table = tf.retime(table, retime, cv=cv, seed=seed)  # type: ignore[arg-type]
        if rate_scale is not None:
            table = tf.scale_rate(table, rate_scale)
        if max_context is not None or max_output is not None:
            table = tf.clip_lengths(table, max_context or 2**62, max_output)
        table.save(dst)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {len(table)} requests to {dst}")
    for note in table.transformations:
        typer.echo(f"  - {note}")

"""The `fairbatching` command. Each area registers its own sub-command group here."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="FairBatching for SGLang: policy tools, trace tools, simulator and A/B harness.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """FairBatching for SGLang."""


@app.command()
def version() -> None:
    """Print the package version."""
    from fairbatching_sglang import __version__

    typer.echo(__version__)


# Sub-command groups (one line each; keep imports light: heavy modules load inside commands).
from fairbatching_sglang.profiles.cli import profile_app  # noqa: E402

app.add_typer(profile_app, name="profile", help="Step-cost profiles: list, show, compare, fit.")

from fairbatching_sglang.workload.cli import trace_app  # noqa: E402

app.add_typer(trace_app, name="trace", help="Trace tools: stats, generate, convert.")

from fairbatching_sglang.sim.cli import simulate  # noqa: E402

app.command(help="Replay a trace in virtual time under one policy (simulated, no GPU).")(simulate)

from fairbatching_sglang.harness.cli import ab  # noqa: E402

app.command(help="A/B runs of scheduling arms (simulated or on a GPU) with capacity search.")(ab)

from fairbatching_sglang.router.cli import router_app  # noqa: E402

app.add_typer(router_app, name="router", help="Cluster router: admission-budget routing.")

from fairbatching_sglang.sim.cluster.cli import cluster_app  # noqa: E402

app.add_typer(cluster_app, name="cluster", help="Simulated cluster: routing x scheduling.")

from fairbatching_sglang.emulator.cli import emulate_app  # noqa: E402

app.add_typer(
    emulate_app, name="emulate", help="The real SGLang server on CPU with an emulated device."
)

"""`fairbatching router serve`: the admission-budget router in front of patched SGLang servers."""

from __future__ import annotations

from typing import Annotated

import typer

router_app = typer.Typer(
    help="FairBatching cluster router (admission-budget routing, queueing at the router).",
    no_args_is_help=True,
    add_completion=False,
)


@router_app.callback()
def _router_root() -> None:
    """FairBatching cluster router."""


@router_app.command()
def serve(
    worker_url: Annotated[
        list[str],
        typer.Option(help="Base URL of a patched SGLang server (repeatable), http://host:port."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 30000,
    poll_interval_s: Annotated[float, typer.Option(help="Seconds between /v1/loads polls.")] = 0.1,
    poll_timeout_s: Annotated[float, typer.Option(help="A slower poll counts as failed.")] = 2.0,
    settle_s: Annotated[
        float, typer.Option(help="Dispatches this recent stay counted after a poll.")
    ] = 0.05,
    max_admission_tokens: Annotated[
        int | None,
        typer.Option(
            help="An idle replica's budget (caps oversize prompts); default: largest seen."
        ),
    ] = None,
    queue_timeout_s: Annotated[
        float, typer.Option(help="503 after waiting this long for room.")
    ] = 600.0,
    max_queue: Annotated[int, typer.Option(help="503 beyond this many waiting (0: no cap).")] = 0,
    chars_per_token: Annotated[
        float, typer.Option(help="Prompt estimate for text requests (no input_ids).")
    ] = 4.0,
    request_timeout_s: Annotated[
        float | None, typer.Option(help="Read timeout towards a worker (default none).")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(help="Re-route a refused request at most this many times in all.")
    ] = 3,
    max_body_bytes: Annotated[
        int, typer.Option(help="413 for a request body larger than this.")
    ] = 64 << 20,
    idle_timeout_s: Annotated[
        float, typer.Option(help="Close a connection idle this long between requests.")
    ] = 75.0,
    header_timeout_s: Annotated[
        float, typer.Option(help="408 when a request head takes longer than this.")
    ] = 10.0,
    body_timeout_s: Annotated[
        float, typer.Option(help="408 when a request body takes longer than this.")
    ] = 60.0,
    backlog: Annotated[int, typer.Option(help="Listen queue length (bursts of connects).")] = 4096,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error.")] = "info",
) -> None:
    """Route requests to the worker with the largest FairBatching prefill admission budget."""
    import asyncio
    import contextlib
    import logging

    from fairbatching_sglang.router.config import RouterConfig
    from fairbatching_sglang.router.server import RouterServer

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = RouterConfig(
            worker_urls=tuple(worker_url),
            host=host,
            port=port,
            poll_interval_s=poll_interval_s,
            poll_timeout_s=poll_timeout_s,
            settle_s=settle_s,
            max_admission_tokens=max_admission_tokens,
            queue_timeout_s=queue_timeout_s,
            max_queue=max_queue,
            chars_per_token=chars_per_token,
            request_timeout_s=request_timeout_s,
            max_attempts=max_attempts,
            max_body_bytes=max_body_bytes,
            idle_timeout_s=idle_timeout_s,
            header_timeout_s=header_timeout_s,
            body_timeout_s=body_timeout_s,
            backlog=backlog,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(RouterServer(cfg).serve_forever())

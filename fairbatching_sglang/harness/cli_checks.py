"""Parse-time checks of numeric CLI options (typer callbacks), shared by `ab`, `simulate` and
`cluster`. A rate of -1 or 0, a probe budget of 0 or a NaN used to run and report a "capacity",
or end in a traceback; click's own ranges let NaN through (every comparison with NaN is false).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import typer


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value!r} is not a finite number ({what})")
    return value


def positive(value: float) -> float:
    """A finite number > 0 (rates, rate scales)."""
    if not _finite(value, "need a number > 0") > 0:
        raise typer.BadParameter(f"{value:g} must be > 0")
    return value


def optional_positive(value: float | None) -> float | None:
    return None if value is None else positive(value)


def non_negative(value: float) -> float:
    if not _finite(value, "need a number >= 0") >= 0:
        raise typer.BadParameter(f"{value:g} must be >= 0")
    return value


def at_least(low: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < low:
            raise typer.BadParameter(f"{value} must be >= {low}")
        return value

    return check


def _items(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in _items(text)]
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: comma-separated numbers expected ({exc})") from exc


def rate_list(text: str) -> str:
    """Comma-separated rates, each > 0 (empty: none)."""
    for v in _floats(text):
        positive(v)
    return text


def target_list(text: str) -> str:
    """Comma-separated attainment targets, each in (0, 1]."""
    values = _floats(text)
    for v in values:
        if not (_finite(v, "need a target in (0, 1]") > 0 and v <= 1):
            raise typer.BadParameter(f"target {v:g} must be in (0, 1]")
    return text


def non_empty_target_list(text: str) -> str:
    if not _items(text):
        raise typer.BadParameter("at least one target is needed")
    return target_list(text)


def count_list(text: str) -> str:
    """Comma-separated integers, each >= 1 (replica counts)."""
    items = _items(text)
    if not items:
        raise typer.BadParameter("at least one value is needed")
    for x in items:
        try:
            n = int(x)
        except ValueError as exc:
            raise typer.BadParameter(f"{x!r} is not an integer") from exc
        if n < 1:
            raise typer.BadParameter(f"{n} must be >= 1")
    return text


def capacity_search(**fields: float) -> object:
    """A CapacityConfig from the search flags; a contradiction between them (floor above the
    ceiling, a start outside them) is a BadParameter naming the flags (--min-rate, ...)."""
    import re

    from fairbatching_sglang.harness.capacity import CapacityConfig

    try:
        return CapacityConfig(**fields)  # type: ignore[arg-type]
    except ValueError as exc:
        named = re.sub(
            r"\b(start_rate|min_rate|max_rate|rel_tol|max_probes)\b",
            lambda m: "--" + m.group(1).replace("_", "-"),
            str(exc),
        )
        raise typer.BadParameter(named) from exc


# The one --spread-buckets-s of simulate, ab and cluster (trace convert has its own, with --seed).
SpreadBucketsOpt = Annotated[
    float | None,
    typer.Option(
        "--spread-buckets-s",
        callback=optional_positive,
        help="Spread arrivals uniformly inside buckets of N s (seeded, order kept), for traces "
        "that round timestamps (Mooncake conversation / tool-agent: 3). The loader warns when "
        "a trace looks bucketed.",
    ),
]

# The capacity search's floor and ceiling, shared by `ab` and `cluster capacity`.
MinRateOpt = Annotated[
    float,
    typer.Option(
        callback=positive,
        help="Floor of the search (rate scale > 0): a capacity below it is reported as none.",
    ),
]
MaxRateOpt = Annotated[
    float, typer.Option(callback=positive, help="Ceiling of the search (rate scale).")
]

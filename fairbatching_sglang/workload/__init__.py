"""Workload: trace loaders, validation, transformations and the synthetic generator.

    from fairbatching_sglang.workload import load_trace
    table = load_trace("AzureLLMInferenceTrace_conv.csv")          # format detected
    arrival_s, input_tokens, output_tokens = table.arrays()        # read-only numpy arrays

Names are imported lazily so `fairbatching --help` does not pay for pandas/pyarrow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "RequestTable": "table",
    "TraceError": "errors",
    "TraceWarning": "validate",
    "load_trace": "load",
    "detect_format": "formats",
    "FORMATS": "formats",
    "scale_rate": "transforms",
    "time_window": "transforms",
    "clip_lengths": "transforms",
    "spread_buckets": "transforms",
    "retime": "transforms",
    "SyntheticSpec": "synthetic",
    "generate": "synthetic",
    "fit_spec": "synthetic",
    "PRESETS": "presets",
    "get_preset": "presets",
    "LognormalLengths": "lengths",
    "QuantileLengths": "lengths",
    "TraceStats": "stats",
    "compute_stats": "stats",
    "plot_trace": "plot",
}

__all__ = [  # noqa: RUF022 (grouped like _EXPORTS)
    "RequestTable",
    "TraceError",
    "TraceWarning",
    "load_trace",
    "detect_format",
    "FORMATS",
    "scale_rate",
    "time_window",
    "clip_lengths",
    "spread_buckets",
    "retime",
    "SyntheticSpec",
    "generate",
    "fit_spec",
    "PRESETS",
    "get_preset",
    "LognormalLengths",
    "QuantileLengths",
    "TraceStats",
    "compute_stats",
    "plot_trace",
]

if TYPE_CHECKING:
    from fairbatching_sglang.workload.errors import TraceError
    from fairbatching_sglang.workload.formats import FORMATS, detect_format
    from fairbatching_sglang.workload.lengths import LognormalLengths, QuantileLengths
    from fairbatching_sglang.workload.load import load_trace
    from fairbatching_sglang.workload.plot import plot_trace
    from fairbatching_sglang.workload.presets import PRESETS, get_preset
    from fairbatching_sglang.workload.stats import TraceStats, compute_stats
    from fairbatching_sglang.workload.synthetic import SyntheticSpec, fit_spec, generate
    from fairbatching_sglang.workload.table import RequestTable
    from fairbatching_sglang.workload.transforms import (
        clip_lengths,
        retime,
        scale_rate,
        spread_buckets,
        time_window,
    )
    from fairbatching_sglang.workload.validate import TraceWarning


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{mod}"), name)

"""`load_trace`: any supported trace file -> RequestTable (format detected or named)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from fairbatching_sglang.workload.buckets import bucket_warning
from fairbatching_sglang.workload.csv_loader import ProgressFn, load_csv
from fairbatching_sglang.workload.errors import TraceError
from fairbatching_sglang.workload.file_checks import READ_ERRORS, check_file, read_error
from fairbatching_sglang.workload.formats import is_jsonl, resolve_format
from fairbatching_sglang.workload.jsonl_loader import load_jsonl
from fairbatching_sglang.workload.table import RequestTable
from fairbatching_sglang.workload.transforms import spread_buckets
from fairbatching_sglang.workload.validate import TraceWarning, ZeroPolicy, check_table


def load_trace(
    path: str | Path,
    format: str | None = None,
    *,
    start_s: float | None = None,
    duration_s: float | None = None,
    max_rows: int | None = None,
    strict: bool = False,
    zero_lengths: ZeroPolicy = "clamp",
    model: str | None = None,
    progress: ProgressFn | None = None,
    spread_buckets_s: float | None = None,
    spread_seed: int = 0,
) -> RequestTable:
    """Load a trace file into a RequestTable.

    format: one of azure, burstgpt, mooncake, generic_csv, generic_jsonl (aliases azure2023,
        azure2024, generic), or None/"auto" to detect from the header / first object. A
        `.parquet` file written by `RequestTable.to_parquet` is read back as is.
    start_s, duration_s: keep arrivals in [start_s, start_s + duration_s) seconds from the trace
        start, rebased so start_s becomes 0; reading stops at the first block past the window.
        "Trace start" is the first row's time for datetime traces (Azure) and the file's own
        zero for relative ones (Mooncake ms, BurstGPT s, generic).
    max_rows: keep at most this many rows (after the window) and stop reading.
    strict: refuse decreasing timestamps instead of sorting them (with a warning).
    zero_lengths: "clamp" (0 -> 1, warn; default), "drop" (warn) or "error"; see validate.py.
    model: BurstGPT only: keep rows whose Model equals this (e.g. "ChatGPT", "GPT-4").
    progress: called as progress(bytes_read, total_bytes) after each CSV block.
    spread_buckets_s: spread arrivals uniformly inside buckets of this width (seeded by
        spread_seed; see transforms.spread_buckets), for traces whose timestamps are quantised.
        Without it, a trace that looks bucketed (buckets.detect_bucket_s) gets a TraceWarning.
    """
    p = Path(path)
    check_file(p)
    if spread_buckets_s is not None and not spread_buckets_s > 0:
        raise ValueError(f"spread_buckets_s must be > 0, got {spread_buckets_s}")
    if p.suffix.lower() in (".parquet", ".pq") and format in (None, "auto", "parquet"):
        return _buckets(_load_parquet(p), p, spread_buckets_s, spread_seed)
    if start_s is not None and start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    if max_rows is not None and max_rows <= 0:
        raise ValueError(f"max_rows must be > 0, got {max_rows}")
    try:
        fmt = resolve_format(p, format)
    except READ_ERRORS as e:
        raise read_error(p, e) from None
    kwargs: dict[str, Any] = {
        "start_s": start_s,
        "duration_s": duration_s,
        "max_rows": max_rows,
        "strict": strict,
    }
    try:
        if is_jsonl(fmt):
            if model is not None:
                raise TraceError(p, "model filter applies to BurstGPT traces only", field="Model")
            coll = load_jsonl(p, fmt, kwargs)
        else:
            coll = load_csv(p, fmt, kwargs, model=model, progress=progress)
    except READ_ERRORS as e:
        raise read_error(p, e) from None
    return _buckets(coll.finish(zero_lengths), p, spread_buckets_s, spread_seed)


def _buckets(
    table: RequestTable, p: Path, spread_buckets_s: float | None, seed: int
) -> RequestTable:
    if spread_buckets_s is not None:
        return spread_buckets(table, spread_buckets_s, seed=seed)
    msg = bucket_warning(table.arrival_s, str(p))
    if msg is not None:
        warnings.warn(msg, TraceWarning, stacklevel=3)
    return table


def _load_parquet(p: Path) -> RequestTable:
    try:
        table = RequestTable.from_parquet(p)
    except (ValueError, OSError) as e:  # pyarrow: not Parquet, or not a RequestTable schema
        raise TraceError(p, f"not a readable RequestTable Parquet file: {e}") from None
    check_table(table, p)
    return table

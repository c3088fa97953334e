"""Pure transformations: each returns a new RequestTable and records itself in `transformations`.

Lengths and order of requests are untouched unless the transformation is about them.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from fairbatching_sglang.workload.arrivals import gamma_gaps
from fairbatching_sglang.workload.table import RequestTable

MOONCAKE_BLOCK_TOKENS = 512


def scale_rate(table: RequestTable, factor: float) -> RequestTable:
    """Compress time by `factor` (arrivals / factor): factor 2 doubles the request rate.

    Every inter-arrival gap shrinks by the same factor, so the burst shape (gap ratios, relative
    peaks) is preserved, unlike re-sampling a Poisson process at a higher rate.
    """
    if not factor > 0 or not math.isfinite(factor):
        raise ValueError(f"rate scale factor must be a finite number > 0, got {factor}")
    df = table.df.copy()
    df["arrival_s"] = df["arrival_s"] / factor
    return table.derive(df, f"scale_rate factor={factor:g}")


def time_window(
    table: RequestTable, start_s: float, duration_s: float | None = None, *, rebase: bool = True
) -> RequestTable:
    """Keep arrivals in [start_s, start_s + duration_s); with rebase, start_s becomes time 0."""
    if start_s < 0:
        raise ValueError(f"start_s must be >= 0, got {start_s}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    a = table.df["arrival_s"]
    keep = a >= start_s
    if duration_s is not None:
        keep &= a < start_s + duration_s
    df = table.df.loc[keep].copy()
    if rebase:
        df["arrival_s"] = df["arrival_s"] - start_s
    return table.derive(
        df,
        f"time_window start_s={start_s:g} duration_s={duration_s}" + (" rebased" if rebase else ""),
    )


def clip_lengths(
    table: RequestTable,
    max_context: int,
    max_output: int | None = None,
    *,
    mode: Literal["clip", "drop"] = "clip",
    block_tokens: int = MOONCAKE_BLOCK_TOKENS,
) -> RequestTable:
    """Fit requests to a model: input + output <= max_context and output <= max_output.

    mode "clip": output is cut to max_output; the prompt is kept whole when it fits with at least
    one output token (prefill is what a long prompt costs, so it is the part worth keeping),
    else cut to max_context - 1; then output is cut to what is left. hash_ids are truncated to the
    blocks the kept prompt still covers. mode "drop": rows that do not fit are removed.
    """
    if max_context < 2:
        raise ValueError(f"max_context must be >= 2, got {max_context}")
    if max_output is not None and max_output < 1:
        raise ValueError(f"max_output must be >= 1, got {max_output}")
    inp = table.df["input_tokens"].to_numpy().copy()
    out = table.df["output_tokens"].to_numpy().copy()
    cap_out = out if max_output is None else np.minimum(out, max_output)
    fits = (inp + cap_out <= max_context) & (cap_out == out)
    note = f"clip_lengths max_context={max_context} max_output={max_output} mode={mode}"
    if mode == "drop":
        return table.derive(table.df.loc[fits].copy(), f"{note}: dropped {int((~fits).sum())}")
    if mode != "clip":
        raise ValueError(f"mode must be 'clip' or 'drop', got {mode!r}")
    new_inp = np.minimum(inp, max_context - 1)
    new_out = np.minimum(cap_out, max_context - new_inp)
    df = table.df.copy()
    df["input_tokens"] = new_inp.astype(np.int64)
    df["output_tokens"] = new_out.astype(np.int64)
    if "hash_ids" in df.columns:
        cut = new_inp < inp
        blocks = -(-new_inp // block_tokens)
        h = df["hash_ids"].to_numpy().copy()
        for i in np.flatnonzero(cut):
            h[i] = list(h[i][: blocks[i]])
        df["hash_ids"] = h
    changed = int(((new_inp != inp) | (new_out != out)).sum())
    return table.derive(df, f"{note}: {changed} rows clipped")


def spread_buckets(table: RequestTable, bucket_s: float, *, seed: int = 0) -> RequestTable:
    """Spread arrivals uniformly inside coarse timestamp buckets, deterministically.

    For traces whose timestamps are quantised (Mooncake conversation: 3 s), every arrival in
    bucket [k*bucket_s, (k+1)*bucket_s) gets a uniform time inside that bucket, so a whole bucket
    no longer lands in one instant. Offsets are sorted within each bucket and handed out in row
    order, so the order of requests (e.g. turns of a conversation) is preserved.
    """
    if not bucket_s > 0:
        raise ValueError(f"bucket_s must be > 0, got {bucket_s}")
    a = table.df["arrival_s"].to_numpy()
    # A tiny tolerance keeps values written as k*bucket (with float noise) in bucket k.
    bucket = np.floor(a / bucket_s + 1e-9)
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(0.0, bucket_s, a.shape[0])
    # Rows are sorted by time, so each bucket is a contiguous run: sorting offsets within
    # buckets and assigning them in row order keeps both the order and the bucket.
    offsets = offsets[np.lexsort((offsets, bucket))]
    df = table.df.copy()
    df["arrival_s"] = bucket * bucket_s + offsets
    return table.derive(df, f"spread_buckets bucket_s={bucket_s:g} seed={seed}")


def retime(
    table: RequestTable,
    process: Literal["poisson", "gamma"] = "poisson",
    *,
    cv: float = 1.0,
    seed: int = 0,
) -> RequestTable:
    """Replace the arrival times by a Poisson (cv 1) or gamma renewal process with the given CV.

    Requests keep their order and lengths; the first arrival stays where it was and the gaps are
    rescaled so the span, hence the mean rate, is exactly the original one.
    """
    n = len(table)
    if process == "poisson":
        cv = 1.0
    elif process != "gamma":
        raise ValueError(f"process must be 'poisson' or 'gamma', got {process!r}")
    if n < 2 or table.span_s <= 0:
        raise ValueError("re-timing needs at least two requests spanning a positive time")
    rng = np.random.default_rng(seed)
    gaps = gamma_gaps(rng, n - 1, 1.0, cv)
    gaps *= table.span_s / gaps.sum()
    a0 = float(table.df["arrival_s"].iloc[0])
    df = table.df.copy()
    df["arrival_s"] = np.concatenate(([a0], a0 + np.cumsum(gaps)))
    return table.derive(df, f"retime process={process} cv={cv:g} seed={seed}")

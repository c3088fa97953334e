"""Detect arrival times quantised into coarse buckets (Mooncake conversation / tool-agent traces
round them to 3 s), so a replay is not silently driven by whole buckets landing in one instant.
`transforms.spread_buckets` is the fix; `load_trace(spread_buckets_s=...)` applies it."""

from __future__ import annotations

import math

import numpy as np

MIN_REQUESTS = 20  # fewer rows say nothing about quantisation
MIN_BUCKET_S = 0.5  # millisecond-resolution logs have ties too; only coarse steps matter
MAX_DISTINCT_FRACTION = 0.5  # bucketed: many requests share each distinct time


def detect_bucket_s(arrival_s: np.ndarray) -> float | None:
    """The bucket width (s) when arrivals are integer multiples of a step >= MIN_BUCKET_S and
    at most MAX_DISTINCT_FRACTION of them are distinct times; None otherwise."""
    if arrival_s.shape[0] < MIN_REQUESTS:
        return None
    distinct = np.unique(arrival_s)
    if distinct.shape[0] > MAX_DISTINCT_FRACTION * arrival_s.shape[0]:
        return None
    ms = np.round(distinct * 1000.0)
    if not np.allclose(ms, distinct * 1000.0, atol=1e-3):
        return None  # not on a millisecond grid: not a rounded timestamp
    step_ms = int(np.gcd.reduce(np.diff(ms).astype(np.int64))) if distinct.shape[0] > 1 else 0
    if step_ms <= 0 or step_ms / 1000.0 < MIN_BUCKET_S:
        return None
    return step_ms / 1000.0


def bucket_warning(arrival_s: np.ndarray, where: str) -> str | None:
    """The warning to give for a bucketed trace (None: not bucketed)."""
    bucket_s = detect_bucket_s(arrival_s)
    if bucket_s is None:
        return None
    n, k = arrival_s.shape[0], np.unique(arrival_s).shape[0]
    return (
        f"{where}: arrivals look bucketed into {bucket_s:g}-s steps ({n} requests at {k} "
        f"distinct times, up to {math.ceil(n / k)} per instant on average); a replay sends each "
        f"bucket at once. Pass --spread-buckets-s {bucket_s:g} to spread them inside their bucket"
    )

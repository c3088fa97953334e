"""Allowed ranges of a trace's numeric fields, and the checks that find the first value outside.

Why bounds at all: token counts are stored as int64, and numpy casts `inf` or 1e20 to
-9223372036854775808 without a word; that value then travels into converted traces and the
simulator. Timestamps feed per-second binning (`stats.per_second_counts`), so a 1e15 s timestamp
asks for a 7 PiB array. Both are typos or wrong units in practice, never real workloads.
"""

from __future__ import annotations

import numpy as np

# No model has a context anywhere near 10^9 tokens; the bound also keeps sums over a 27M-row
# trace far inside int64.
MAX_TOKENS = 10**9
# Longer than any public LLM trace (BurstGPT: 121 days); per-second bins stay < 300 MB.
MAX_SPAN_S = 400 * 86400.0
# Epoch seconds (1.7e9) pass; epoch milliseconds in a seconds column (1.7e12) do not.
MAX_ABS_TIME_S = 1e10
# hash_ids are stored as int64 (Parquet, numpy object columns converted on write).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def first_bad_token_count(x: np.ndarray) -> tuple[int, str] | None:
    """(index, reason) of the first token count that is not a finite integer in [0, MAX_TOKENS];
    None when all are fine. NaN (a missing cell) is reported by the caller, not here."""
    checks = (
        (np.isinf(x), "is not finite"),
        (x < 0, "is negative"),
        (x > MAX_TOKENS, f"is out of range (max {MAX_TOKENS:,})"),
        (x != np.floor(x), "is not an integer"),
    )
    found = [(int(np.argmax(bad)), why) for bad, why in checks if bad.any()]
    if not found:
        return None
    i, why = min(found)
    return i, f"token count {x[i]:g} {why}"


def first_bad_time(t_s: np.ndarray, first_t: float) -> tuple[int, str] | None:
    """(index, reason) of the first timestamp (seconds) outside the allowed range, given the
    trace's first timestamp `first_t`; None when all are fine."""
    if not np.isfinite(t_s).all():
        return int(np.argmax(~np.isfinite(t_s))), "missing or invalid timestamp"
    checks = (
        (np.abs(t_s) > MAX_ABS_TIME_S, f"beyond {MAX_ABS_TIME_S:g} s"),
        (
            np.abs(t_s - first_t) > MAX_SPAN_S,
            f"more than {MAX_SPAN_S / 86400:.0f} days from the first row",
        ),
    )
    found = [(int(np.argmax(bad)), why) for bad, why in checks if bad.any()]
    if not found:
        return None
    i, why = min(found)
    return i, f"timestamp {t_s[i]:g} s is {why} (wrong unit?)"


def int64_ok(v: int) -> bool:
    return INT64_MIN <= v <= INT64_MAX

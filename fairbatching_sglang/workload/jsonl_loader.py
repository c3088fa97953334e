"""JSONL traces (Mooncake, generic JSONL): one JSON object per line, checked line by line.

JSONL traces are small (Mooncake's largest has ~24k rows), so a plain Python loop is fast enough
and gives exact line numbers for free. Rows are handed to the collector in blocks so the time
window and `max_rows` stop the read early, as for CSV.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fairbatching_sglang.workload.errors import TraceError, open_text
from fairbatching_sglang.workload.formats import LAYOUTS
from fairbatching_sglang.workload.ranges import int64_ok
from fairbatching_sglang.workload.validate import Collector, Fields

_BLOCK = 8192


def _number(path: Path, lineno: int, obj: dict[str, Any], key: str) -> float:
    """The field as float64; NaN for null (a missing value). Integers too large for a float
    (json parses 10**400 exactly) become inf, which the range checks then refuse."""
    if key not in obj:
        raise TraceError(path, "missing field", line=lineno, field=key)
    v = obj[key]
    if v is None:
        return math.nan
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            f = math.nan
        if math.isnan(f):  # "nan" is no more a number than "many"
            raise TraceError(path, f"{v[:60]!r} is not a number", line=lineno, field=key)
        return f
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TraceError(path, f"{str(v)[:60]!r} is not a number", line=lineno, field=key)
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _hash_ids(path: Path, lineno: int, v: Any) -> list[int]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in v
    ):
        raise TraceError(path, "expected a list of integers", line=lineno, field="hash_ids")
    if not all(int64_ok(x) for x in v):
        raise TraceError(path, "hash id outside the int64 range", line=lineno, field="hash_ids")
    return v


def load_jsonl(path: Path, fmt: str, collector_kwargs: dict[str, Any]) -> Collector:
    layout = LAYOUTS[fmt]
    line_numbers: list[int] = []
    coll_holder: list[Collector] = []

    def line_of(i: int) -> int:
        return line_numbers[i]

    time_key: str | None = None
    unit = "s"
    with open_text(path) as f:
        ts: list[float] = []
        ins: list[float] = []
        outs: list[float] = []
        hashes: list[list[int]] = []
        classes: list[str] = []
        has_hash = has_class = False

        def flush() -> bool:
            extras: dict[str, np.ndarray] = {}
            if has_hash:
                h = np.empty(len(hashes), dtype=object)
                h[:] = hashes
                extras["hash_ids"] = h
            if has_class:
                extras["slo_class"] = np.asarray(classes, dtype=object)
            t = np.asarray(ts, dtype=np.float64)
            if unit == "ms":
                t = t / 1000.0
            go = coll_holder[0].add(
                t, np.asarray(ins, dtype=np.float64), np.asarray(outs, dtype=np.float64), extras
            )
            for lst in (ts, ins, outs, hashes, classes):
                lst.clear()
            return go

        for lineno, text in enumerate(f, start=1):
            s = text.strip()
            if not s:
                continue
            try:
                obj = json.loads(s)
            except json.JSONDecodeError as e:
                raise TraceError(
                    path, f"invalid JSON: {e.msg} (column {e.colno})", line=lineno
                ) from None
            except ValueError as e:  # e.g. an integer of more than 4300 digits
                raise TraceError(path, f"invalid JSON: {e}", line=lineno) from None
            if not isinstance(obj, dict):
                raise TraceError(path, "expected a JSON object", line=lineno)
            if time_key is None:
                # The first object fixes the layout (and whether optional columns exist).
                for cand, u in layout.time:
                    if cand in obj:
                        time_key, unit = cand, u
                        break
                else:
                    want = " or ".join(c for c, _ in layout.time)
                    raise TraceError(path, "missing field", line=lineno, field=want)
                has_hash = "hash_ids" in layout.optional and "hash_ids" in obj
                has_class = "slo_class" in layout.optional and "slo_class" in obj
                fields = Fields(time=time_key, input=layout.input, output=layout.output)
                coll_holder.append(Collector(path, fmt, fields, line_of, **collector_kwargs))
            line_numbers.append(lineno)
            t = _number(path, lineno, obj, time_key)
            if not math.isfinite(t) or t < 0:
                what = "missing timestamp" if math.isnan(t) else f"invalid timestamp {t:g}"
                raise TraceError(path, what, line=lineno, field=time_key)
            ts.append(t)
            ins.append(_number(path, lineno, obj, layout.input))
            outs.append(_number(path, lineno, obj, layout.output))
            if has_hash:
                hashes.append(_hash_ids(path, lineno, obj.get("hash_ids")))
            if has_class:
                c = obj.get("slo_class")
                if not isinstance(c, str):
                    raise TraceError(path, "expected a string", line=lineno, field="slo_class")
                classes.append(c)
            if len(ts) >= _BLOCK and not flush():
                return coll_holder[0]
        if not coll_holder:
            raise TraceError(path, "empty file: no requests", line=1)
        if ts:
            flush()
    return coll_holder[0]

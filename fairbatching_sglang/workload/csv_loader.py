"""CSV traces (Azure 2023/2024, BurstGPT, generic CSV) via pyarrow's streaming reader.

Azure 2024 files hold 17-27M rows, so the file is read in blocks: memory stays bounded by the
rows kept, and a time window or `max_rows` ends the read early. The fast path parses typed
columns in C++; if pyarrow rejects a value (or a timestamp carries an unexpected layout), the
file is re-read as strings and parsed with pandas, which both accepts more timestamp layouts and
finds the exact offending row for the error message.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fairbatching_sglang.workload.errors import TraceError, open_text, physical_line_of_row
from fairbatching_sglang.workload.formats import LAYOUTS, first_line, raw_header, split_header
from fairbatching_sglang.workload.ranges import int64_ok
from fairbatching_sglang.workload.validate import Collector, Fields

BLOCK_SIZE = 8 << 20  # ~8 MiB of text per block (~230k Azure rows): bounds read-ahead memory
_TZ_SUFFIX = re.compile(r"(Z|[+-]\d\d:?\d\d)$")

ProgressFn = Callable[[int, int], None]  # (bytes read so far, total bytes)


class _SlowPath(Exception):
    """The typed fast path cannot parse this file; retry with the string path."""


def _resolve_columns(path: Path, fmt: str) -> tuple[int, dict[str, str], str, str]:
    """Map layout names to the file's actual header names (case/space-insensitive).

    Returns (header line, {layout name: file name}, time layout name, time unit).
    """
    layout = LAYOUTS[fmt]
    lineno, text = first_line(path)
    names = split_header(text)
    # Map to the file's own spelling: a header padded with spaces (" input_tokens ") matches
    # the layout, and pyarrow must be asked for the padded name.
    by_lower = {n.strip().lower(): n for n in raw_header(path)}
    mapping: dict[str, str] = {}
    time_name, unit = "", ""
    for cand, u in layout.time:
        if cand.lower() in by_lower:
            time_name, unit = cand, u
            mapping[cand] = by_lower[cand.lower()]
            break
    else:
        want = " or ".join(c for c, _ in layout.time)
        raise TraceError(path, f"missing column (header has {names})", line=lineno, field=want)
    for req in (layout.input, layout.output):
        if req.lower() not in by_lower:
            raise TraceError(path, f"missing column (header has {names})", line=lineno, field=req)
        mapping[req] = by_lower[req.lower()]
    for opt in layout.optional:
        if opt.lower() in by_lower:
            mapping[opt] = by_lower[opt.lower()]
    return lineno, mapping, time_name, unit


def _first_value(path: Path, column_index: int) -> str:
    with open_text(path) as f:
        rows = (r for r in csv.reader(f) if r)
        next(rows, None)
        row = next(rows, None)
    return row[column_index].strip() if row and len(row) > column_index else ""


def _check_shape(path: Path, header_line: int, exc: Exception) -> TraceError:
    """Locate a row with the wrong number of fields (pyarrow's message has no line number)."""
    with open_text(path) as f:
        reader = csv.reader(f)
        width = None
        for row in reader:
            if not row:
                continue
            if width is None:
                width = len(row)
                continue
            if len(row) != width:
                return TraceError(
                    path, f"expected {width} fields, found {len(row)}", line=reader.line_num
                )
    return TraceError(path, f"CSV parse error: {exc}", line=header_line)


def _batches(
    path: Path,
    columns: list[str],
    types: dict[str, Any],
    progress: ProgressFn | None,
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    compressed = path.suffix in (".gz", ".bz2", ".zst", ".lz4")
    total = path.stat().st_size
    source: Any = str(path) if compressed else pa.OSFile(str(path))
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
        parse_options=pacsv.ParseOptions(newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            include_columns=columns,
            column_types=types,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    for batch in reader:
        if progress is not None and not compressed:
            progress(min(source.tell(), total), total)
        yield batch


def load_csv(
    path: Path,
    fmt: str,
    collector_kwargs: dict[str, Any],
    *,
    model: str | None = None,
    progress: ProgressFn | None = None,
) -> Collector:
    import pyarrow as pa

    header_line, mapping, time_name, unit = _resolve_columns(path, fmt)
    layout = LAYOUTS[fmt]
    if model is not None and "Model" not in mapping:
        raise TraceError(
            path,
            "model filter given but the file has no Model column",
            line=header_line,
            field="Model",
        )
    col_t, col_in, col_out = mapping[time_name], mapping[layout.input], mapping[layout.output]
    columns = list(dict.fromkeys(mapping.values()))

    def line_of(i: int) -> int:
        return physical_line_of_row(path, i)

    fields = Fields(time=col_t.strip(), input=col_in.strip(), output=col_out.strip())
    str_cols = {c: pa.string() for c in columns}
    fast_types: dict[str, Any] = dict(str_cols)
    fast_types[col_in] = pa.float64()
    fast_types[col_out] = pa.float64()
    tz: str | None = None
    if unit == "datetime":
        sample = _first_value(path, raw_header(path).index(col_t))
        tz = "UTC" if _TZ_SUFFIX.search(sample) else None
        fast_types[col_t] = pa.timestamp("ns", tz=tz)
    else:
        fast_types[col_t] = pa.float64()

    def run(slow: bool) -> Collector:
        coll = Collector(path, fmt, fields, line_of, **collector_kwargs)
        origin: list[int] = []  # datetime traces: first row's time is the trace start
        types = str_cols if slow else fast_types
        try:
            for batch in _batches(path, columns, types, progress):
                t_s, inp, out = _convert(batch, coll, slow, unit, col_t, col_in, col_out, origin)
                extras: dict[str, np.ndarray] = {}
                if "slo_class" in mapping:
                    extras["slo_class"] = np.asarray(
                        batch.column(mapping["slo_class"]).to_pylist(), dtype=object
                    )
                if "hash_ids" in mapping:
                    extras["hash_ids"] = _parse_hash_ids(
                        batch.column(mapping["hash_ids"]).to_pylist(), coll, mapping["hash_ids"]
                    )
                select = None
                if model is not None:
                    select = np.asarray(batch.column(mapping["Model"]).to_pylist(), dtype=object)
                    select = select == model
                if not coll.add(t_s, inp, out, extras, select=select):
                    break
        except pa.ArrowInvalid as e:
            if not slow and "conversion error" in str(e):
                raise _SlowPath from e
            raise _check_shape(path, header_line, e) from None
        return coll

    try:
        return run(slow=False)
    except _SlowPath:
        return run(slow=True)


def _convert(
    batch: Any,
    coll: Collector,
    slow: bool,
    unit: str,
    col_t: str,
    col_in: str,
    col_out: str,
    origin: list[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch -> (seconds from trace start, input, output) as float64 arrays."""
    base = coll._num_read
    if not slow:
        inp = batch.column(col_in).to_numpy(zero_copy_only=False).astype(np.float64)
        out = batch.column(col_out).to_numpy(zero_copy_only=False).astype(np.float64)
        tcol = batch.column(col_t)
        if unit == "datetime":
            if tcol.null_count:
                i = int(np.argmax(tcol.is_null().to_numpy(zero_copy_only=False)))
                raise coll.err(base + i, col_t, "missing timestamp")
            ns = tcol.cast("int64").to_numpy()
            t_s = _relative_seconds(ns, origin)
        else:
            t_s = tcol.to_numpy(zero_copy_only=False).astype(np.float64)
            if unit == "ms":
                t_s = t_s / 1000.0
            _check_nonnegative(t_s, coll, base, col_t)
        return t_s, inp, out

    import pandas as pd

    def numeric(name: str, what: str) -> np.ndarray:
        raw = pd.Series(batch.column(name).to_pylist(), dtype=object)
        vals = pd.to_numeric(raw.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(vals) & (raw.str.strip() != "").to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise coll.err(base + i, name, f"{raw.iat[i]!r} is not {what}")
        return vals

    inp = numeric(col_in, "a number")
    out = numeric(col_out, "a number")
    if unit == "datetime":
        raw = pd.Series(batch.column(col_t).to_pylist(), dtype=object).str.strip()
        parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise coll.err(base + i, col_t, f"unparsable timestamp {raw.iat[i]!r}")
        ns = parsed.dt.tz_localize(None).astype("datetime64[ns]").to_numpy().astype(np.int64)
        t_s = _relative_seconds(ns, origin)
    else:
        t_s = numeric(col_t, "a number (timestamp)")
        if unit == "ms":
            t_s = t_s / 1000.0
        _check_nonnegative(t_s, coll, base, col_t)
    return t_s, inp, out


def _relative_seconds(ns: np.ndarray, origin: list[int]) -> np.ndarray:
    # Subtract in int64 nanoseconds before converting: absolute epoch seconds in float64 would
    # keep only ~0.2 us of precision, relative ones keep far more.
    if not origin:
        origin.append(int(ns[0]))
    return (ns - origin[0]).astype(np.float64) / 1e9


def _check_nonnegative(t_s: np.ndarray, coll: Collector, base: int, col: str) -> None:
    neg = t_s < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise coll.err(base + i, col, f"negative timestamp {t_s[i]:g}")


def _parse_hash_ids(values: list[Any], coll: Collector, col: str) -> np.ndarray:
    base = coll._num_read
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        s = (v or "").strip()
        if not s:
            out[i] = []
            continue
        try:
            ids = json.loads(s)
            if not isinstance(ids, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and int64_ok(x) for x in ids
            ):
                raise ValueError
        except ValueError:
            raise coll.err(
                base + i, col, f"expected a JSON list of int64 integers, got {s[:60]!r}"
            ) from None
        out[i] = ids
    return out

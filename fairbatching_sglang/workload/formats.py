"""Known trace formats, their column names, and detection from a file's first line.

| name          | kind  | time column (unit)              | input / output columns               |
|---------------|-------|---------------------------------|--------------------------------------|
| azure         | CSV   | TIMESTAMP (datetime string)     | ContextTokens / GeneratedTokens      |
| burstgpt      | CSV   | Timestamp (s)                   | Request tokens / Response tokens     |
| mooncake      | JSONL | timestamp (ms)                  | input_length / output_length         |
| generic_csv   | CSV   | arrival_s (s) or timestamp_ms   | input_tokens / output_tokens         |
| generic_jsonl | JSONL | arrival_s (s) or timestamp_ms   | input_tokens / output_tokens         |

Azure 2023 and 2024 share one layout ("azure2023"/"azure2024" are accepted as aliases). The
generic formats may also carry `slo_class` (string) and `hash_ids` (list of int; a JSON list in a
CSV cell). Mooncake's `hash_ids` are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fairbatching_sglang.workload.errors import TraceError, open_text

TraceFormat = Literal["azure", "burstgpt", "mooncake", "generic_csv", "generic_jsonl"]
FORMATS: tuple[str, ...] = ("azure", "burstgpt", "mooncake", "generic_csv", "generic_jsonl")
_ALIASES = {"azure2023": "azure", "azure2024": "azure", "azure_llm": "azure", "generic": "generic"}

TimeUnit = Literal["datetime", "s", "ms"]


@dataclass(frozen=True)
class Layout:
    """Where a format keeps each field. `time` lists accepted (column, unit) choices in order."""

    name: str
    time: tuple[tuple[str, TimeUnit], ...]
    input: str
    output: str
    optional: tuple[str, ...] = ()


LAYOUTS: dict[str, Layout] = {
    "azure": Layout("azure", (("TIMESTAMP", "datetime"),), "ContextTokens", "GeneratedTokens"),
    "burstgpt": Layout(
        "burstgpt", (("Timestamp", "s"),), "Request tokens", "Response tokens", ("Model",)
    ),
    "mooncake": Layout(
        "mooncake", (("timestamp", "ms"),), "input_length", "output_length", ("hash_ids",)
    ),
    "generic_csv": Layout(
        "generic_csv",
        (("arrival_s", "s"), ("timestamp_ms", "ms")),
        "input_tokens",
        "output_tokens",
        ("slo_class", "hash_ids"),
    ),
    "generic_jsonl": Layout(
        "generic_jsonl",
        (("arrival_s", "s"), ("timestamp_ms", "ms")),
        "input_tokens",
        "output_tokens",
        ("slo_class", "hash_ids"),
    ),
}
_CSV = ("azure", "burstgpt", "generic_csv")
_JSONL = ("mooncake", "generic_jsonl")


def is_jsonl(fmt: str) -> bool:
    return fmt in _JSONL


def first_line(path: str | Path) -> tuple[int, str]:
    """(1-based line number, text) of the first non-empty line; TraceError on an empty file."""
    p = Path(path)
    if not p.exists():
        raise TraceError(p, "file not found")
    with open_text(p) as f:
        for lineno, text in enumerate(f, start=1):
            s = text.strip().lstrip("\ufeff")  # a BOM would otherwise glue onto the first name
            if s:
                return lineno, s
    raise TraceError(p, "empty file: no header and no requests", line=1)


def split_header(text: str) -> list[str]:
    import csv

    return [c.strip().lstrip("\ufeff") for c in next(csv.reader([text]))]


def raw_header(path: str | Path) -> list[str]:
    """The header's names exactly as a CSV parser sees them (spaces around a name kept): pyarrow
    selects columns by these, while matching against layouts uses `split_header`'s stripped ones.
    """
    import csv

    with open_text(path) as f:
        for text in f:
            if text.strip():
                return next(csv.reader([text.rstrip("\r\n").lstrip("\ufeff")]))
    return []


def _score(layout: Layout, names: set[str]) -> int:
    keys = {layout.input.lower(), layout.output.lower()} | {c.lower() for c, _ in layout.time}
    return len(keys & names)


def detect_format(path: str | Path) -> str:
    """Name the format from the header (CSV) or the first object's keys (JSONL).

    A header that matches no layout fully still picks the closest one, so the loader can then
    report the precise missing column instead of a vague "unknown format".
    """
    p = Path(path)
    lineno, text = first_line(p)
    if text.startswith("{"):
        try:
            keys = {k.lower() for k in json.loads(text)}
        except (ValueError, AttributeError) as e:  # ValueError: also >4300-digit ints
            raise TraceError(p, f"first line is not a JSON object: {e}", line=lineno) from None
        candidates = _JSONL
    else:
        keys = {c.lower() for c in split_header(text)}
        candidates = _CSV
    best = max(candidates, key=lambda f: _score(LAYOUTS[f], keys))
    if _score(LAYOUTS[best], keys) == 0:
        known = ", ".join(FORMATS)
        raise TraceError(
            p,
            f"unrecognised trace header {text[:120]!r}; known formats: {known} "
            "(or pass the format explicitly)",
            line=lineno,
        )
    return best


def resolve_format(path: str | Path, fmt: str | None) -> str:
    """The explicit format (aliases resolved; "generic" picks CSV/JSONL by content) or detect."""
    if fmt is None or fmt == "auto":
        return detect_format(path)
    name = _ALIASES.get(fmt.lower(), fmt.lower())
    if name == "generic":
        return "generic_jsonl" if first_line(path)[1].startswith("{") else "generic_csv"
    if name not in LAYOUTS:
        raise ValueError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    return name

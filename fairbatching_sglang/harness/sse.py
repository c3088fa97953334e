"""One `data:` chunk of SGLang's streaming `/generate`, read strictly.

A server (or a proxy in front of it) can send anything: `data: 5`, `null`, `[1]`, a non-dict
`meta_info`, a dict or `Infinity` as `completion_tokens`. Each of those becomes a BadChunk (a
ValueError naming what was wrong), which the client turns into that request's failed record; a
generic TypeError / OverflowError escaping from `int(...)` used to end the whole replay.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


class BadChunk(ValueError):
    """A chunk the client cannot read; the message says what and shows the start of the data."""


@dataclass(frozen=True)
class Chunk:
    """completion_tokens / cached_tokens: None when the chunk does not carry them."""

    completion_tokens: int | None = None
    cached_tokens: int | None = None
    error: str | None = None


def _count(meta: dict[str, Any], key: str, limit: int) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    # bool is an int subclass; floats are accepted only when integral (2.0 from some proxies).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadChunk(f"meta_info.{key} is {type(value).__name__}, not a number")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise BadChunk(f"meta_info.{key} = {value!r} is not a whole number")
        value = int(value)
    if value < 0 or value > limit:
        # The upper bound also stops `[now] * count` from allocating without limit.
        raise BadChunk(f"meta_info.{key} = {value} outside [0, {limit}]")
    return value


def parse_chunk(data: str, expected_tokens: int, input_tokens: int) -> Chunk:
    """The chunk after `data:` (not `[DONE]`); BadChunk when it is not a JSON object of the
    expected shape."""
    try:
        obj = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and bad escapes
        raise BadChunk(f"not JSON ({exc}): {data[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise BadChunk(f"chunk is {type(obj).__name__}, not an object: {data[:80]!r}")
    if "error" in obj:
        return Chunk(error=f"{obj['error']!s:.300}")
    meta = obj.get("meta_info")
    if meta is None:
        return Chunk()
    if not isinstance(meta, dict):
        raise BadChunk(f"meta_info is {type(meta).__name__}, not an object: {data[:80]!r}")
    return Chunk(
        completion_tokens=_count(meta, "completion_tokens", expected_tokens),
        cached_tokens=_count(meta, "cached_tokens", input_tokens),
    )

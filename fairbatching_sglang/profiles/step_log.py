"""Step logs: one JSON object per line, one line per forward step of a real (or simulated) run.

Fields (units as in the cost model):

    num_prefill_tokens  int >= 0   P: new prefill tokens in the step
    num_decode_reqs     int >= 0   B: decode requests (one token each)
    decode_kv_tokens    int >= 0   S: sum of the decode requests' KV lengths
    prefill_attn_work   float >= 0 Q: sum over chunks of c * (k + c / 2)
    measured_ms         float > 0  measured step time
    predicted_ms        float >= 0 optional: what the scheduler's cost model predicted
    time_s              float      optional: when the step ended (any clock, seconds)

Blank lines and lines starting with '#' are skipped, and so are lines whose measured_ms is null
(the patched server's step log writes that for a step followed by an idle period, whose end it
did not observe). Unknown fields are kept in `extra`.
Errors name the file, the line and the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairbatching_sglang.profiles.fit import StepSamples

REQUIRED_INT_FIELDS = ("num_prefill_tokens", "num_decode_reqs", "decode_kv_tokens")
REQUIRED_FIELDS = (*REQUIRED_INT_FIELDS, "prefill_attn_work", "measured_ms")
OPTIONAL_FIELDS = ("predicted_ms", "time_s")


class StepLogError(ValueError):
    """A step log line that cannot be used; the message names file, line and field."""


@dataclass(frozen=True)
class StepRecord:
    num_prefill_tokens: int
    num_decode_reqs: int
    decode_kv_tokens: int
    prefill_attn_work: float
    measured_ms: float
    predicted_ms: float | None = None
    time_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        extra = data.pop("extra")
        data = {k: v for k, v in data.items() if v is not None}
        data.update(extra)
        return json.dumps(data, separators=(",", ":"))


def parse_step_line(line: str, origin: str = "<string>", lineno: int = 1) -> StepRecord:
    where = f"{origin}: line {lineno}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise StepLogError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise StepLogError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise StepLogError(f"{where}: missing field '{name}'")
    values: dict[str, Any] = {}
    for name in REQUIRED_INT_FIELDS:
        v = data[name]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise StepLogError(f"{where}: field '{name}' must be an integer >= 0, got {v!r}")
        values[name] = v
    values["prefill_attn_work"] = _number(data, "prefill_attn_work", where, minimum=0.0)
    values["measured_ms"] = _number(data, "measured_ms", where, minimum=0.0, strict=True)
    if values["num_prefill_tokens"] + values["num_decode_reqs"] == 0:
        raise StepLogError(
            f"{where}: field 'num_prefill_tokens' + 'num_decode_reqs' is 0 (an empty step)"
        )
    if data.get("predicted_ms") is not None:
        values["predicted_ms"] = _number(data, "predicted_ms", where, minimum=0.0)
    if data.get("time_s") is not None:
        values["time_s"] = _number(data, "time_s", where)
    extra = {k: v for k, v in data.items() if k not in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)}
    return StepRecord(**values, extra=extra)


def _number(
    data: dict[str, Any],
    name: str,
    where: str,
    minimum: float | None = None,
    strict: bool = False,
) -> float:
    v = data[name]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise StepLogError(f"{where}: field '{name}' must be a finite number, got {v!r}")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        op = ">" if strict else ">="
        raise StepLogError(f"{where}: field '{name}' must be {op} {minimum:g}, got {v!r}")
    return float(v)


def read_step_log(path: str | Path) -> list[StepRecord]:
    """Read a JSONL step log. Raises StepLogError naming file, line and field."""
    p = Path(path)
    if not p.is_file():
        raise StepLogError(f"{p}: step log not found")
    records: list[StepRecord] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#") or _unmeasured(text):
                continue
            records.append(parse_step_line(text, str(p), lineno))
    if not records:
        raise StepLogError(f"{p}: no steps in the log")
    return records


def _unmeasured(text: str) -> bool:
    if '"measured_ms":null' not in text.replace(" ", ""):
        return False
    try:
        return json.loads(text).get("measured_ms", 0) is None
    except (json.JSONDecodeError, AttributeError):
        return False  # parse_step_line names the problem


def write_step_log(path: str | Path, records: Iterable[StepRecord]) -> int:
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(r.to_json() + "\n")
            n += 1
    return n


def records_to_samples(records: Sequence[StepRecord]) -> StepSamples:
    """The step log as fitter input (measured_ms is the target)."""
    return StepSamples(
        np.array([r.num_prefill_tokens for r in records], dtype=float),
        np.array([r.num_decode_reqs for r in records], dtype=float),
        np.array([r.decode_kv_tokens for r in records], dtype=float),
        np.array([r.prefill_attn_work for r in records], dtype=float),
        np.array([r.measured_ms for r in records], dtype=float),
    )

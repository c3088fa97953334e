"""The configuration hash of a run directory: what `--resume` compares.

`fields` is a JSON-able dict of everything that changes results (trace content after window and
transformations, arms, SLOs, profile, device model, backend and its options, capacity settings),
never where the output goes. Its hash is stored next to it in ab.json / cluster.json / run.json;
a resume with a different hash is refused, naming the fields that differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.workload import RequestTable


def _canonical(value: Any) -> Any:
    """Plain JSON values: dataclasses as dicts, tuples as lists, non-finite floats as strings
    (json would write NaN, which no other reader accepts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def canonical_fields(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _canonical(fields)
    return out


def config_hash(fields: dict[str, Any]) -> str:
    text = json.dumps(canonical_fields(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two field dicts differ (a whole list counts as one field)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in old or key not in new:
                out.append(path)
            else:
                out += differing_fields(old[key], new[key], path)
        return out
    return [] if old == new else [prefix or "(all)"]


def table_identity(table: RequestTable, **window: Any) -> dict[str, Any]:
    """The trace as replayed: its content digest (after window and transformations, so the same
    file under another path is the same trace), size, format, transformations and the window
    options."""
    h = hashlib.sha256()
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        h.update(table.df[col].to_numpy().tobytes())
    if "hash_ids" in table.df.columns:
        blocks = [None if v is None else [int(x) for x in v] for v in table.df["hash_ids"]]
        h.update(json.dumps(blocks).encode())
    if "slo_class" in table.df.columns:
        h.update(json.dumps([str(v) for v in table.df["slo_class"]]).encode())
    return {
        "digest": h.hexdigest()[:16],
        "num_requests": table.num_requests,
        "format": table.format,
        "transformations": list(table.transformations),
        "window": window,
    }


def profile_identity(profile: CostProfile | None) -> dict[str, Any] | None:
    """The profile by content (a JSON path may move; its coefficients are what count)."""
    if profile is None:
        return None
    from fairbatching_sglang.sim.runner import profile_metadata

    return {k: v for k, v in profile_metadata(profile).items() if k != "path"}

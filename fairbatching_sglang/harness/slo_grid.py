"""`ab --slo-grid`: the same A/B at every (TTFT SLO, TPOT SLO) cell of a grid.

Whether FairBatching pays depends on the SLOs (Azure conv: fairbatching / sglang-mixed capacity
1.34 at TTFT 3000 / TPOT 25 ms, 0.98 at TPOT 100 ms), so one cell is no verdict. Each cell is
an ordinary A/B directory (`<out>/ttft<T>-tpot<P>/`, its own ab.json and report.md, resumable);
the grid root holds grid.json (the configuration, for --resume), the saturation limit (searched
once: it ignores SLOs), and the grid report (report/slo_grid_report.py).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairbatching_sglang.harness.out_dir import Layout

GRID_MANIFEST = "grid.json"
_CELL = re.compile(r"^ttft[0-9.]+-tpot[0-9.]+$")
SYNTAX = "ttft=MS,MS,... tpot=MS,MS,... (e.g. 'ttft=300,1000,3000 tpot=25,50,100')"


@dataclass(frozen=True)
class SloGrid:
    ttft_slo_ms: tuple[float, ...]
    tpot_slo_ms: tuple[float, ...]

    def cells(self) -> list[tuple[float, float]]:
        """(ttft, tpot) in row-major order: TTFT rows, TPOT columns."""
        return [(t, p) for t in self.ttft_slo_ms for p in self.tpot_slo_ms]

    def to_dict(self) -> dict[str, list[float]]:
        return {"ttft_slo_ms": list(self.ttft_slo_ms), "tpot_slo_ms": list(self.tpot_slo_ms)}


def parse_slo_grid(text: str) -> SloGrid:
    """'ttft=300,1000,3000 tpot=25,50,100' (parts split by spaces or ';'). ValueError naming
    the part at fault otherwise."""
    parts = [p for p in re.split(r"[\s;]+", text.strip()) if p]
    found: dict[str, tuple[float, ...]] = {}
    for part in parts:
        key, sep, values = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ttft", "tpot"):
            raise ValueError(f"--slo-grid: {part!r} is not ttft=... or tpot=...; syntax {SYNTAX}")
        if key in found:
            raise ValueError(f"--slo-grid: {key} given twice")
        try:
            nums = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"--slo-grid: {part!r}: values must be numbers (ms)") from None
        if not nums or any(not (math.isfinite(v) and v > 0) for v in nums):
            raise ValueError(f"--slo-grid: {part!r}: need one or more finite values > 0 (ms)")
        if len(set(nums)) != len(nums):
            raise ValueError(f"--slo-grid: {part!r}: a value is repeated")
        found[key] = tuple(sorted(nums))
    missing = [k for k in ("ttft", "tpot") if k not in found]
    if missing:
        raise ValueError(f"--slo-grid: {' and '.join(missing)} missing; syntax {SYNTAX}")
    return SloGrid(found["ttft"], found["tpot"])


def cell_dir_name(ttft_slo_ms: float, tpot_slo_ms: float) -> str:
    return f"ttft{ttft_slo_ms:g}-tpot{tpot_slo_ms:g}"


def _grid_owned(p: Path) -> bool:
    if p.name in (GRID_MANIFEST, "report.md", "plots", "saturation") or p.suffix == ".csv":
        return True
    return p.is_dir() and bool(_CELL.match(p.name))


GRID_LAYOUT = Layout(GRID_MANIFEST, _grid_owned)


def write_grid_manifest(root: Path, doc: dict[str, Any]) -> None:
    tmp = root / (GRID_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(root / GRID_MANIFEST)

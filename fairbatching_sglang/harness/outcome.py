"""The result of one (arm, rate) run as the harness sees it, and its status.json file.

status: "ok" (the replay ran; its requests may still have failed), "crashed" (the server died
during the replay: records are kept, failures counted), "invalid" (the replay ran but is not a
measurement of the system under test, e.g. a CPU-starved emulated run: records and figures are
kept, error says why; the capacity search does not use it), "start_failed" (no server, no
records), "error" (the harness itself failed for this run). status.json is written as each run
finishes so a later crash never loses it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunOutcome:
    arm: str
    rate_scale: float
    status: str
    summary: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    out_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def attainment(self) -> float:
        # A run with no result counts as zero attainment: it served nobody within the SLO.
        v = self.summary.get("slo_attainment", math.nan)
        return 0.0 if v is None or math.isnan(v) else float(v)

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Written whole or not at all: a --resume trusts every status.json it finds.
        tmp = run_dir / "status.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        os.replace(tmp, run_dir / "status.json")

    @classmethod
    def read(cls, run_dir: Path) -> RunOutcome:
        return cls(**json.loads((run_dir / "status.json").read_text()))


class ArmUnavailable(RuntimeError):
    """An arm that cannot run at all (wrong interpreter, no server): its runs are skipped."""


def rate_dir_name(rate: float) -> str:
    return f"x{rate:.6g}"

"""Read an A/B output directory (see harness/ab.py for its layout) into tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class AbData:
    root: Path
    index: dict[str, Any]
    runs: pd.DataFrame  # one row per (arm, rate): status, error, run_dir, summary metrics
    capacity: dict[str, dict[str, Any]]  # arm -> capacity.json

    @property
    def arms(self) -> list[str]:
        listed = list(self.index.get("config", {}).get("arms", []))
        return listed or sorted(self.runs["arm"].unique())

    @property
    def detail_rate(self) -> float | None:
        return self.index.get("detail_rate")

    def run_dir(self, arm: str, rate: float) -> Path | None:
        rows = self.runs[(self.runs["arm"] == arm) & (self.runs["rate_scale"] == rate)]
        return Path(rows["run_dir"].iloc[0]) if len(rows) else None


def load_ab(root: Path) -> AbData:
    index = json.loads((root / "ab.json").read_text()) if (root / "ab.json").exists() else {}
    # Only this run's arms: a directory left by another run must not join the report (the CLI
    # refuses such an --out; this guards direct callers too).
    listed = set(index.get("config", {}).get("arms", []))
    rows = []
    for status_path in sorted(root.glob("*/x*/status.json")):
        if listed and status_path.parent.parent.name not in listed:
            continue
        st = json.loads(status_path.read_text())
        rows.append(
            {
                "arm": st["arm"],
                "rate_scale": float(st["rate_scale"]),
                "status": st["status"],
                "error": (st.get("error") or "").splitlines()[0] if st.get("error") else "",
                "run_dir": str(status_path.parent),
                **(st.get("summary") or {}),
            }
        )
    runs = pd.DataFrame(rows)
    if len(runs):
        runs = runs.sort_values(["arm", "rate_scale"]).reset_index(drop=True)
    capacity = {
        p.parent.name: json.loads(p.read_text())
        for p in sorted(root.glob("*/capacity.json"))
        if not listed or p.parent.name in listed
    }
    return AbData(root, index, runs, capacity)

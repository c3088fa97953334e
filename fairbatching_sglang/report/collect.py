"""Read an A/B output directory (see harness/ab.py for its layout) into tables.

With --tune-baselines (ab.json "tuning"), each tuned stock arm appears as `<arm>@tuned`: an
alias whose runs and capacity are those of the winning sweep point (`<arm>@<N>`, or the default
arm itself when its own setting won). Sweep points' runs are in `runs` (runs.csv lists every
run) but not in `arms`: the tables compare the default and tuned arms.
"""

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
    def tuning(self) -> dict[str, dict[str, Any]]:
        """Stock arm -> its sweep (ab.json "tuning"; empty without --tune-baselines)."""
        return dict(self.index.get("tuning") or {})

    @property
    def aliases(self) -> dict[str, str]:
        """Alias "<arm>@tuned" -> the arm directory whose results it shows."""
        return {t["tuned_arm"]: t["best_arm"] for t in self.tuning.values()}

    @property
    def arms(self) -> list[str]:
        listed = list(self.index.get("config", {}).get("arms", []))
        if not listed:
            return sorted(self.runs["arm"].unique()) if len(self.runs) else []
        # Each tuned arm right after its default one.
        out: list[str] = []
        for arm in listed:
            out.append(arm)
            if arm in self.tuning:
                out.append(self.tuning[arm]["tuned_arm"])
        return out

    @property
    def targets(self) -> list[str]:
        """Capacity targets as capacity.json keys, in the order the search ran them."""
        ts = self.index.get("config", {}).get("capacity_targets") or (0.9, 0.99)
        return [f"{float(t):g}" for t in ts]

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
    tuning = index.get("tuning") or {}
    if listed:
        listed |= {p["arm"] for t in tuning.values() for p in t.get("points", [])}
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
    for t in tuning.values():
        alias, best = t["tuned_arm"], t["best_arm"]
        if best in capacity:
            capacity[alias] = {**capacity[best], "arm": alias, "alias_of": best}
        if len(runs):
            copy = runs[runs["arm"] == best].assign(arm=alias)
            runs = pd.concat([runs, copy], ignore_index=True)
    if len(runs):
        runs = runs.sort_values(["arm", "rate_scale"]).reset_index(drop=True)
    return AbData(root, index, runs, capacity)

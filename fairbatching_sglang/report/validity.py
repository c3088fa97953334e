"""Per-run validity figures of measured runs (starvation.py: is the emulation a measurement?)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fairbatching_sglang.report.collect import AbData

COLUMNS = {
    "arm": "arm",
    "rate_scale": "rate",
    "status": "status",
    "busy_s": "device busy (s)",
    "num_steps": "steps",
    "utilization": "device utilization",
    "idle_frac": "CPU-caused idle / busy",
    "late_frac": "late / busy",
    "late_ms_p99": "late p99 (ms)",
    "dispatch_lag_ms_p99": "dispatch lag p99 (ms)",
    "verdict": "verdict",
}


def validity_table(data: AbData) -> pd.DataFrame:
    """One row per run that carries validity figures (emulated runs); empty otherwise."""
    rows = []
    for r in data.runs.itertuples(index=False):
        path = Path(str(r.run_dir)) / "status.json"
        v = (json.loads(path.read_text()).get("extra") or {}).get("validity")
        if not v:
            continue
        row = {k: v.get(k) for k in COLUMNS if k not in ("arm", "rate_scale", "status")}
        row.update(arm=r.arm, rate_scale=r.rate_scale, status=r.status)
        row["verdict"] = "valid" if v.get("valid") else "; ".join(v.get("reasons", []))
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS)).rename(columns=COLUMNS)

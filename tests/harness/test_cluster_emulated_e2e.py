"""harness/run_cluster.sh --backend emulated for real: two emulated SGLang replicas (started
together) behind FairBatching's admission router, 5 s of a shipped trace. ~1.5 min on 2 cores."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.harness.ports import free_ports

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

ROOT = Path(__file__).resolve().parents[2]


def test_emulated_cluster_with_admission_router(tmp_path: Path) -> None:
    ports = free_ports(3)
    router_port, base = ports[2], ports[0]
    out = tmp_path / "cl"
    cmd = [
        str(ROOT / "harness/run_cluster.sh"), "--backend", "emulated", "--replicas", "2",
        "--router", "fairbatching-admission", "--trace",
        str(ROOT / "traces/synthetic_conv_10min.csv"), "--start", "0", "--duration", "5",
        "--base-port", str(base), "--router-port", str(router_port), "--num-warmup", "1",
        "--out", str(out),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT)
    meta = json.loads((out / "run.json").read_text())
    # ok, or invalid when this CPU could not keep up (flagged, exit 1): never silently wrong.
    assert meta["status"] in ("ok", "invalid"), (meta.get("error"), res.stderr[-2000:])
    assert res.returncode == (0 if meta["status"] == "ok" else 1)
    assert meta["kind"] == "emulated-cluster" and meta["label"].startswith("EMULATED")
    assert meta["validity"]["valid"] == (meta["status"] == "ok")
    rec = pd.read_parquet(out / "requests.parquet")
    n = meta["trace"]["num_requests"]
    assert len(rec) == n and (rec["status"] == "ok").all()
    assert set(rec["replica"]) == {0, 1} and meta["num_unattributed"] == 0
    for k in (0, 1):
        rdir = out / f"replicas/r{k}"
        assert (rdir / "device_steps.jsonl").stat().st_size > 0
        assert (rdir / "loads.jsonl").stat().st_size > 0
        assert (
            json.loads((rdir / "summary.json").read_text())["num_requests"]
            == (rec["replica"] == k).sum()
        )
        assert meta["validity"][f"r{k}_num_steps"] > 10
    stats = json.loads((out / "router_stats.json").read_text())
    assert sum(w["num_dispatched"] for w in stats["workers"]) == n

"""`fairbatching ab --backend emulated` for real: two real SGLang servers (stock mixed-chunk and
FairBatching) one after the other on the emulated device, on 10 s of a shipped trace. ~2 min on
2 cores (each server takes ~30-40 s to start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.harness.ports import free_ports

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

ROOT = Path(__file__).resolve().parents[2]
ARMS = ("sglang-mixed", "fairbatching-ft")


def test_emulated_ab_end_to_end(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    out = tmp_path / "ab"
    cmd = [
        str(ROOT / "harness/run_ab.sh"), "--backend", "emulated",
        "--trace", str(ROOT / "traces/synthetic_conv_10min.csv"), "--start", "0",
        "--duration", "10", "--arms", ",".join(ARMS), "--rates", "1", "--no-capacity",
        "--port", str(port), "--out", str(out), "--num-warmup", "2",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    report = (out / "report.md").read_text()
    first = report.splitlines()[0]
    # No --device-model: the CLI default, a device the planner does not know.
    assert "EMULATED" in first and "'realistic'" in first and "h100-llama3.1-8b" in first
    assert "Validity of the emulation" in report
    index = json.loads((out / "ab.json").read_text())
    assert index["backend"] == "emulated" and index["versions"]["sglang"] == ["0.5.23"]
    for arm in ARMS:
        run = out / arm / "x1"
        st = json.loads((run / "status.json").read_text())
        # CPU-dependent: a starved run is flagged, never silently reported.
        assert st["status"] in ("ok", "invalid"), st["error"]
        assert (st["status"] == "invalid") == (not st["extra"]["validity"]["valid"])
        assert st["extra"]["validity"]["num_steps"] > 100
        rec = pd.read_parquet(run / "requests.parquet")
        n = index["trace"]["num_requests"]
        assert len(rec) == n and (rec["status"] == "ok").all(), rec["error"].dropna()[:3]
        assert (rec["token_times_ms"].map(len) == rec["output_tokens"]).all()
        assert rec["request_id"].is_unique and rec["request_id"].str.len().nunique() == 1
        meta = json.loads((run / "run.json").read_text())
        assert meta["kind"] == "emulated"
        assert Path(meta["python"]).resolve() == Path(sys.executable).resolve()
        assert meta["device_model"]["spec"] == "realistic"
        assert meta["device_model"]["bias"] == 0.05 and meta["device_model"]["noise"] == 0.03
        assert meta["server_env"]["FAIRBATCHING_EMULATED_DEVICE"] == "realistic"
        assert (run / "device_steps.jsonl").stat().st_size > 0
        assert ("--enable-fairbatching" in meta["server_argv"]) == (arm == "fairbatching-ft")
    assert (out / "fairbatching-ft/x1/step_log.jsonl").exists()

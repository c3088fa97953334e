"""harness/run_cluster.sh and its module on CPU: the plan and --dry-run, then the whole run with
stub replicas (a fake `sglang.launch_server` that serves tests/harness/fake_server.py on its
--port) behind the real routers, a replica crash included. Only the real SGLang servers on GPUs
are left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.harness.cluster_deploy import (
    ClusterConfig,
    default_smg,
    describe,
    make_plan,
    run_cluster,
)
from fairbatching_sglang.workload import RequestTable
from tests.harness.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
SLO = SloTable(SloTargets(1000.0, 50.0))

STUB = """
import argparse, os, sys, threading, time
sys.path.insert(0, os.environ["FAKE_REPO_ROOT"])
from tests.harness.fake_server import FakeServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int)
p.add_argument("--host")
args, _ = p.parse_known_args()
gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
crash_after = int(os.environ.get("FAKE_CRASH_AFTER", "0")) if gpu == os.environ.get(
    "FAKE_CRASH_GPU") else 0
count = [0]

def behavior(body):
    print("Receive: rid=" + repr(body.get("rid")), flush=True)  # as --log-requests does
    count[0] += 1
    if crash_after and count[0] >= crash_after:
        threading.Timer(0.02, os._exit, (3,)).start()
    return "ok"

srv = FakeServer(behavior, token_delay_s=0.002, load={
    "fairbatching_prefill_admission_tokens": int(os.environ.get("FAKE_BUDGET", "100000"))})
srv.port = args.port
with srv:
    print("fake sglang on", srv.base_url, "gpus", gpu, flush=True)
    while True:
        time.sleep(3600)
"""


def _cfg(**kw) -> ClusterConfig:
    base = {"model_path": "m", "num_replicas": 2, "router": "fairbatching-admission"}
    base.update(arm="fairbatching", python="py")
    return ClusterConfig(**{**base, **kw})


def test_plan_gpus_flags_and_routers(tmp_path: Path) -> None:
    cfg = _cfg(num_replicas=2, tp_size=2, gpus=("4", "5", "6", "7"), base_port=31000)
    plan = make_plan(cfg, tmp_path)
    assert [r.spec.env["CUDA_VISIBLE_DEVICES"] for r in plan.replicas] == ["4,5", "6,7"]
    r1 = plan.replicas[1].argv
    assert r1[:3] == ["py", "-m", "sglang.launch_server"] and "--enable-fairbatching" in r1
    assert r1[r1.index("--port") + 1] == "31001" and r1[r1.index("--tp-size") + 1] == "2"
    assert r1[r1.index("--fairbatching-step-log") + 1] == str(
        tmp_path / "replicas/r1/step_log.jsonl"
    )
    assert plan.router_argv[1:4] == ["-m", "fairbatching_sglang.router", "serve"]
    assert plan.router_argv.count("--worker-url") == 2
    smg = make_plan(_cfg(router="smg-least-load", arm="sglang-mixed", smg="smg"), tmp_path)
    assert smg.router_argv[:2] == ["smg", "launch"]
    assert smg.router_argv[smg.router_argv.index("--policy") + 1] == "least_load"
    assert "--enable-mixed-chunk" in smg.replicas[0].argv
    assert "--enable-fairbatching" not in smg.replicas[0].argv
    text = describe(smg)
    assert "CUDA_VISIBLE_DEVICES=0 py -m sglang.launch_server" in text and "smg launch" in text


def test_emulated_plan(tmp_path: Path) -> None:
    cfg = _cfg(backend="emulated", model_path="tiny", device_model="profile:noise=0.02")
    plan = make_plan(cfg, tmp_path)
    for k, r in enumerate(plan.replicas):
        assert "CUDA_VISIBLE_DEVICES" not in r.spec.env  # CPU replicas: no GPU placement
        assert r.spec.env["FAIRBATCHING_EMULATED_DEVICE"] == "profile:noise=0.02"
        log = r.spec.env["FAIRBATCHING_EMULATED_STEP_LOG"]
        assert log == str(tmp_path / f"replicas/r{k}/device_steps.jsonl")
        assert r.argv[r.argv.index("--device") + 1] == "cpu" and "--sleep-on-idle" in r.argv
        assert "--log-requests" in r.argv and "--enable-fairbatching" in r.argv
    with pytest.raises(ValueError, match="--backend must be gpu or emulated"):
        _cfg(backend="tpu")


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="only FairBatching replicas publish"):
        _cfg(arm="sglang-mixed")
    with pytest.raises(ValueError, match="need 4 GPU ids"):
        _cfg(tp_size=2, gpus=("0", "1"))
    with pytest.raises(ValueError, match="unknown router"):
        _cfg(router="nginx")
    with pytest.raises(ValueError):
        _cfg(arm="sarathi")  # simulator-only arm


def test_dry_run_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [ROOT / "harness/run_cluster.sh", "--trace", "t.csv", "--model", "m", "--replicas", "3",
         "--router", "smg-power-of-two", "--out", str(tmp_path / "x"), "--dry-run"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "FAIRBATCHING_PYTHON": sys.executable},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("sglang.launch_server") == 3 and "--policy power_of_two" in out.stdout
    assert "CUDA_VISIBLE_DEVICES=2 " in out.stdout
    assert not (tmp_path / "x").exists()  # a dry run starts and writes nothing


def _ports(n: int) -> tuple[int, int]:
    """A free router port and a base port with n free ports after it, in the test port range
    (tests/harness/ports.py; below the ephemeral range, so outgoing connections made meanwhile
    cannot take them)."""
    ports = free_ports(n + 1)
    return ports[-1], ports[0]


def _stub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    pkg = tmp_path / "stub" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(STUB)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "stub"))
    monkeypatch.setenv("FAKE_REPO_ROOT", str(ROOT))
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def _table(n: int) -> RequestTable:
    arrival = np.linspace(0.0, 1.0, n)
    return RequestTable.from_arrays(arrival, [64 + i for i in range(n)], [4] * n, source="test")


def _run(tmp_path: Path, router: str, arm: str) -> tuple[dict, Path]:
    router_port, base_port = _ports(2)
    cfg = _cfg(
        router=router, arm=arm, python=sys.executable, base_port=base_port,
        router_port=router_port, health_timeout_s=30, num_warmup=1, smg=default_smg(),
        stop_grace_s=0.5,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    meta = run_cluster(cfg, _table(20), SLO, 1.0, run_dir, "test", {"request_timeout_s": 10})
    return meta, run_dir


def test_run_end_to_end_with_stub_replicas(tmp_path: Path, monkeypatch) -> None:
    _stub_env(tmp_path, monkeypatch)
    meta, run_dir = _run(tmp_path, "fairbatching-admission", "fairbatching")
    assert meta["status"] == "ok", meta.get("error")
    assert meta["counts"] == {"ok": 20, "failed": 0, "timeout": 0} and meta["crashed"] == []
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "ok" and saved["router"]["argv"][2] == "fairbatching_sglang.router"
    assert [r["returncode"] for r in saved["replicas"]] == [-15, -15]  # stopped by us (SIGTERM)
    rec = pd.read_parquet(run_dir / "requests.parquet")
    assert len(rec) == 20 and (rec["status"] == "ok").all()
    assert json.loads((run_dir / "summary.json").read_text())["num_completed"] == 20
    # Every request attributed to the replica whose request log names its rid.
    assert set(rec["replica"]) <= {0, 1} and meta["num_unattributed"] == 0
    assert sum(r["num_requests"] for r in meta["replicas"]) == 20
    assert rec["request_id"].str.startswith(meta["rid_token"] + "-").all()
    stats = json.loads((run_dir / "router_stats.json").read_text())
    assert sum(w["num_dispatched"] for w in stats["workers"]) == 20 + 0  # warmup goes direct
    for k in (0, 1):
        log = (run_dir / f"replicas/r{k}/server.log").read_text()
        assert f"gpus {k}" in log  # each replica saw its own CUDA_VISIBLE_DEVICES
        assert (run_dir / f"replicas/r{k}/loads.jsonl").stat().st_size > 0
    assert (run_dir / "router.log").exists()


def test_replica_crash_is_recorded(tmp_path: Path, monkeypatch) -> None:
    # Replica r1 (GPU "1") exits after its warm-up request and 2 more.
    _stub_env(tmp_path, monkeypatch, FAKE_CRASH_GPU="1", FAKE_CRASH_AFTER="3")
    meta, run_dir = _run(tmp_path, "fairbatching-admission", "fairbatching")
    assert meta["status"] == "crashed" and meta["crashed"] == ["r1"]
    assert meta["replicas"][1]["returncode"] == 3
    rec = pd.read_parquet(run_dir / "requests.parquet")
    assert len(rec) == 20  # every request has its record, whatever happened to it
    assert meta["counts"]["ok"] >= 18
    assert json.loads((run_dir / "run.json").read_text())["status"] == "crashed"


@pytest.mark.skipif(not Path(default_smg()).exists(), reason="smg not installed (extra cluster)")
def test_run_with_smg(tmp_path: Path, monkeypatch) -> None:
    _stub_env(tmp_path, monkeypatch)
    meta, run_dir = _run(tmp_path, "smg-round-robin", "sglang-mixed")
    why = f"{meta}\n{(run_dir / 'router.log').read_text()[-3000:]}"
    assert meta["status"] == "ok", why
    assert meta["counts"]["ok"] == 20 and meta["versions"].get("smg"), why
    assert "--policy" in meta["router"]["argv"]

"""Ctrl-C during `cluster capacity --jobs 2` stops within seconds and keeps every finished
probe (issue #14.5); it used to compute on for minutes and write nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _still_running(marker: str) -> list[int]:
    """Processes whose command line holds marker (the pool's workers are forks of the CLI)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def test_sigint_stops_pool_and_keeps_probes(tmp_path: Path) -> None:
    out = tmp_path / "cluster-interrupt"
    argv = [
        str(Path(sys.executable).parent / "fairbatching"), "cluster", "capacity",
        "--trace", str(ROOT / "traces/synthetic_conv_10min.csv"), "--duration", "120",
        "--replicas", "2,4", "--routers", "round-robin,least-outstanding",
        "--arms", "sglang-mixed,fairbatching-ft", "--jobs", "2", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background jobs inherit SIGINT ignored; the CLI must see the signal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("n*/*/*.probes/x*.json"))) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no probe finished within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert took < 8.0, f"took {took:.1f} s to stop"
    assert "finished probe(s) kept" in err and "--resume" in err
    probes = list(out.glob("n*/*/*.probes/x*.json"))
    assert len(probes) >= 2
    for p in probes:
        assert "slo_attainment" in json.loads(p.read_text())
    assert json.loads((out / "cluster.json").read_text())["config_hash"]
    time.sleep(0.2)
    assert _still_running(str(out)) == []  # no worker left computing

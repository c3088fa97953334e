"""A fake `sglang` for measured-backend tests: `python -m sglang.launch_server --port P ...`
serves tests/harness/fake_server.py on P, and a dist-info gives importlib.metadata a version.

Behaviour from the environment: FAKE_MODE=ok | never_healthy (runs, never listens) | exit
(exits 7 at once); FAKE_CRASH_AFTER=N (exit 3 after the N-th /generate); FAKE_IDLE_MS=X (each
/generate appends a 100 ms emulated step with idle_before_ms X to
FAIRBATCHING_EMULATED_STEP_LOG, as the emulated device would)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAUNCH_SERVER = """
import argparse, json, os, sys, threading, time
sys.path.insert(0, os.environ["FAKE_REPO_ROOT"])
from tests.harness.fake_server import FakeServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int)
p.add_argument("--host")
args, _ = p.parse_known_args()
print("argv", json.dumps(sys.argv[1:]), flush=True)
print("env", json.dumps({k: v for k, v in os.environ.items() if k.startswith("FAIRBATCHING_")}),
      flush=True)
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "never_healthy":
    time.sleep(3600)
if mode == "exit":
    sys.exit(7)
log = os.environ.get("FAIRBATCHING_EMULATED_STEP_LOG")
idle = float(os.environ.get("FAKE_IDLE_MS", "0"))
crash_after = int(os.environ.get("FAKE_CRASH_AFTER", "0"))
count = [0]
lock = threading.Lock()

def behavior(body):
    with lock:
        count[0] += 1
        n = count[0]
    print("Receive: rid=" + repr(body.get("rid")), flush=True)
    if crash_after and n >= crash_after:
        threading.Timer(0.02, os._exit, (3,)).start()
    if log:
        now = time.time()
        row = {"num_prefill_tokens": 0, "num_decode_reqs": 1, "decode_kv_tokens": 10,
               "prefill_attn_work": 0.0, "measured_ms": 100.0, "time_s": now + 0.1,
               "launch_s": now, "start_s": now, "processed_s": now + 0.1, "late_ms": 0.1,
               "idle_before_ms": idle, "num_waiting": 0, "forward_mode": "DECODE"}
        with lock, open(log, "a") as f:
            f.write(json.dumps(row) + "\\n")
    return "ok"

srv = FakeServer(behavior, token_delay_s=0.002)
srv.port = args.port
with srv:
    while True:
        time.sleep(3600)
"""


def make_stub(root: Path, version: str = "0.5.23") -> Path:
    """A directory to put first on PYTHONPATH: sglang/launch_server.py + sglang dist-info."""
    pkg = root / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(LAUNCH_SERVER)
    info = root / f"sglang-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {version}\n")
    return root


def use_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str = "0.5.23", **env):
    stub = make_stub(tmp_path / "stub", version)
    monkeypatch.setenv("PYTHONPATH", str(stub))
    monkeypatch.setenv("FAKE_REPO_ROOT", str(ROOT))
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    return stub

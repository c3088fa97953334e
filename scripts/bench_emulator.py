"""How fast the emulated SGLang server can step on this machine: the limits of the emulation.

The emulated device (fairbatching_sglang/emulator) is faithful only while the CPU keeps up:
the scheduler must form and process each batch within the emulated step time, or the device
idles between steps (`idle_before_ms`) and results wait for the scheduler (`late_ms`), and the
run measures this machine instead of the policy. This benchmark finds, for decode batch sizes
(--batches), with and without streaming clients, for stock mixed-chunk SGLang and FairBatching
(the overlap loop, SGLang's default):

- the scheduler's CPU time per step (its process CPU time over a window of steady decode steps
  / steps), and the whole server's (tokenizer manager + scheduler + detokenizer);
- the sustained step interval with a near-zero device step (the CPU-bound ceiling);
- for each fixed emulated step time (--step-ms), the device busy fraction, late_ms and idle
  time, and from those the smallest step time at which the device stays faithful (busy >= 95%
  and p95 late_ms <= --max-late-ms).

The fixed step time comes from a custom profile whose only non-zero coefficient is c0 (c1 is
1e-9 ms per token, the validation needs it > 0), written to --out and passed as
FAIRBATCHING_EMULATED_PROFILE (profiles load from a path), with no
extra emulated overhead. One server per (arm, step time), started a few at a time, measured one
at a time (a measurement must not share the 2 cores with another server's traffic).

    .venv/bin/python scripts/bench_emulator.py --out results/bench_emulator
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import requests

from fairbatching_sglang.core import SloTargets
from fairbatching_sglang.emulator.launch import (
    EmulatedServerConfig,
    emulated_env,
    emulated_server_argv,
)
from fairbatching_sglang.harness.arms import resolve_arms
from fairbatching_sglang.profiles import DEFAULT_PROFILE, load_profile

ARMS = ("sglang-mixed", "fairbatching-ft")
HOST = "127.0.0.1"
FAITHFUL_BUSY = 0.95
CLK_TCK = os.sysconf("SC_CLK_TCK")


def fixed_step_profile(step_ms: float, path: Path) -> Path:
    """A profile whose every non-empty step costs step_ms (c0 only; c1 must be > 0, so a token
    costs 1e-9 ms: 256 decode rows add 0.26 ns)."""
    base = load_profile(DEFAULT_PROFILE)
    coeffs = {k: 0.0 for k in base.cost_model.to_dict()}
    coeffs["c0_ms"] = step_ms
    coeffs["c1_ms_per_token"] = 1e-9
    data = {
        "name": f"fixed-{step_ms:g}ms",
        "coefficients": coeffs,
        # Room for 256 rows of ~5,200 tokens (the pool owns no KV tensors on the emulated
        # device: only the allocator's free list grows), so memory never limits the batch.
        "kv_capacity_tokens": 4_000_000,
        "source": "scripts/bench_emulator.py: constant step time",
    }
    path.write_text(json.dumps(data, indent=1))
    return path


# ---------------------------------------------------------------------------------------------
@dataclass
class Server:
    arm: str
    step_ms: float
    port: int
    proc: subprocess.Popen[bytes]
    device_log: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pids(self) -> dict[str, int]:
        """The server's processes by role (the launcher runs the HTTP server and tokenizer
        manager; SGLang renames its children)."""
        out = {"tokenizer": self.proc.pid}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and cmd.startswith("sglang::"):
                out[cmd.removeprefix("sglang::")] = int(entry.name)
        return out

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
                return


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def start_server(arm: str, step_ms: float, port: int, workdir: Path) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    profile = fixed_step_profile(step_ms, workdir / "profile.json")
    device_log = workdir / "device_steps.jsonl"
    cfg = EmulatedServerConfig(
        device_model="profile", profile=str(profile), overhead_ms=0.0, step_log=str(device_log)
    )
    (arm_obj,) = resolve_arms([arm], "emulated")
    # The planner keeps the real profile (FairBatching decides as it would on an H100); only
    # the device's price is the fixed step. Decode-only steps never consult the policy.
    argv = emulated_server_argv(
        sys.executable,
        cfg,
        host=HOST,
        port=port,
        arm_flags=arm_obj.gpu_flags(SloTargets(1000.0, 50.0), DEFAULT_PROFILE),
        extra_args=["--nccl-port", str(port + 50)],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRBATCHING_EMULATED_")}
    env.update(emulated_env(cfg))
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(arm, step_ms, port, proc, device_log, log_path)


def wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.arm} {server.step_ms} ms exited:\n{tail}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.url + "/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{server.arm} {server.step_ms} ms: not healthy in {timeout_s:.0f} s")


# ---------------------------------------------------------------------------------------------
async def _request(
    session: aiohttp.ClientSession, url: str, rid: str, n_out: int, stream: bool
) -> None:
    rng = random.Random(rid)
    body = {
        "rid": rid,
        "input_ids": [rng.randrange(100, 30000) for _ in range(16)],
        "sampling_params": {"max_new_tokens": n_out, "ignore_eos": True},
        "stream": stream,
    }
    async with session.post(url + "/generate", json=body) as resp:
        if stream:
            async for _ in resp.content:  # read every chunk, as a streaming client does
                pass
        else:
            await resp.read()


async def _drive(url: str, batch: int, n_out: int, stream: bool, tag: str) -> None:
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        await asyncio.gather(
            *(_request(session, url, f"{tag}-{i:06d}", n_out, stream) for i in range(batch))
        )


def _read_steps(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    rows = [json.loads(x) for x in data[:end].splitlines() if x.startswith(b"{")]
    return rows, offset + end


@dataclass
class Measurement:
    arm: str
    step_ms: float
    batch: int
    stream: bool
    steps: int
    wall_per_step_ms: float  # wall span of the window / steps
    busy: float  # emulated busy time / wall span
    late_p50_ms: float
    late_p95_ms: float
    idle_ms_per_step: float
    sched_cpu_ms_per_step: float
    server_cpu_ms_per_step: float  # tokenizer manager + scheduler + detokenizer

    def faithful(self, max_late_ms: float) -> bool:
        return self.busy >= FAITHFUL_BUSY and self.late_p95_ms <= max_late_ms


def measure(
    server: Server, batch: int, stream: bool, window_steps: int, warmup_steps: int
) -> Measurement:
    """Drive `batch` decodes; measure over `window_steps` steady decode steps at that size."""
    # Long enough that no request ends before the last one has joined (with a near-zero step
    # the first ones would otherwise finish while the client is still sending); the requests
    # are aborted once the window is measured.
    n_out = warmup_steps + window_steps + 5000
    offset = server.device_log.stat().st_size if server.device_log.exists() else 0
    tag = f"b{batch}{'s' if stream else 'n'}{int(time.time() * 1000) % 10**8}"
    pids = server.pids()
    result: dict[str, Any] = {}

    def run() -> None:
        asyncio.run(_drive(server.url, batch, n_out, stream, tag))

    import threading

    driver = threading.Thread(target=run)
    driver.start()
    # Wait for a steady full batch, then take CPU readings around a window of steps.
    full: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    cpu0: dict[str, float] = {}
    count_at_start = 0
    while time.monotonic() < deadline and driver.is_alive():
        rows, offset = _read_steps(server.device_log, offset)
        for r in rows:
            if r["forward_mode"] == "DECODE" and r["num_decode_reqs"] == batch:
                full.append(r)
        if not cpu0 and len(full) >= warmup_steps:
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            result["t0"] = time.time()
            count_at_start = len(full)
        if cpu0 and len(full) - count_at_start >= window_steps:
            break
        time.sleep(0.02)
    cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
    t1 = time.time()
    requests.post(server.url + "/abort_request", json={"abort_all": True}, timeout=30)
    driver.join(600)
    if not cpu0:
        raise RuntimeError(f"{server.arm} B={batch}: never reached a steady batch")
    window = [r for r in full[count_at_start:] if r["processed_s"] <= t1]
    n = len(window)
    span_s = window[-1]["time_s"] - window[0]["start_s"]
    busy = sum(r["measured_ms"] for r in window) / 1000.0 / span_s
    lates = sorted(r["late_ms"] for r in window)
    sched = (cpu1.get("scheduler", 0.0) - cpu0.get("scheduler", 0.0)) * 1000.0 / n
    total = sum(cpu1[k] - cpu0[k] for k in cpu0) * 1000.0 / n
    return Measurement(
        arm=server.arm,
        step_ms=server.step_ms,
        batch=batch,
        stream=stream,
        steps=n,
        wall_per_step_ms=round(span_s * 1000.0 / n, 4),
        busy=round(busy, 4),
        late_p50_ms=round(statistics.median(lates), 4),
        late_p95_ms=round(lates[min(n - 1, int(0.95 * n))], 4),
        idle_ms_per_step=round(sum(r["idle_before_ms"] for r in window) / n, 4),
        sched_cpu_ms_per_step=round(sched, 4),
        server_cpu_ms_per_step=round(total, 4),
    )


# ---------------------------------------------------------------------------------------------
def _table(rows: list[Measurement], max_late_ms: float) -> str:
    head = (
        "| arm | step ms | batch | stream | steps | wall/step ms | busy | late p50/p95 ms | "
        "idle/step ms | sched CPU/step ms | server CPU/step ms | faithful |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {m.arm} | {m.step_ms:g} | {m.batch} | {'yes' if m.stream else 'no'} | {m.steps} | "
        f"{m.wall_per_step_ms:.2f} | {m.busy:.3f} | {m.late_p50_ms:.2f}/{m.late_p95_ms:.2f} | "
        f"{m.idle_ms_per_step:.2f} | {m.sched_cpu_ms_per_step:.2f} | "
        f"{m.server_cpu_ms_per_step:.2f} | {'yes' if m.faithful(max_late_ms) else 'no'} |\n"
        for m in rows
    )
    return head + body


def _summary(rows: list[Measurement], max_late_ms: float) -> list[dict[str, Any]]:
    """Per (arm, batch, stream): CPU figures at the smallest step and the smallest faithful
    step time among those tried."""
    out = []
    keys = sorted({(m.arm, m.batch, m.stream) for m in rows})
    for arm, batch, stream in keys:
        ms = sorted(
            (m for m in rows if (m.arm, m.batch, m.stream) == (arm, batch, stream)),
            key=lambda m: m.step_ms,
        )
        floor = ms[0]
        ok = [m.step_ms for m in ms if m.faithful(max_late_ms)]
        # Faithful at T and at every larger step tried (a monotone claim, not a lucky point).
        smallest = None
        for m in reversed(ms):
            if not m.faithful(max_late_ms):
                break
            smallest = m.step_ms
        out.append(
            {
                "arm": arm,
                "batch": batch,
                "stream": stream,
                "cpu_bound_wall_per_step_ms": floor.wall_per_step_ms,
                "sched_cpu_ms_per_step": floor.sched_cpu_ms_per_step,
                "server_cpu_ms_per_step": floor.server_cpu_ms_per_step,
                "faithful_step_ms_tried": ok,
                "smallest_faithful_step_ms": smallest,
            }
        )
    return out


def _or_none(value: float | None) -> str:
    return "> largest tried" if value is None else f"{value:g}"


def _summary_table(summary: list[dict[str, Any]]) -> str:
    head = (
        "| arm | batch | stream | CPU-bound wall/step ms | sched CPU/step ms | "
        "server CPU/step ms | smallest faithful step ms |\n|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {s['arm']} | {s['batch']} | {'yes' if s['stream'] else 'no'} | "
        f"{s['cpu_bound_wall_per_step_ms']:.2f} | {s['sched_cpu_ms_per_step']:.2f} | "
        f"{s['server_cpu_ms_per_step']:.2f} | "
        f"{_or_none(s['smallest_faithful_step_ms'])} |\n"
        for s in summary
    )
    return head + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results directory")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128, 256])
    ap.add_argument(
        "--step-ms",
        type=float,
        nargs="+",
        default=[0.05, 2.0, 4.0, 8.0, 16.0],
        help="fixed emulated step times; the smallest is the CPU-bound probe",
    )
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--window-steps", type=int, default=200)
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--max-late-ms", type=float, default=1.0, help="faithful: p95 late_ms")
    ap.add_argument("--port", type=int, default=31300, help="first HTTP port (2 per server)")
    ap.add_argument("--concurrent-starts", type=int, default=3)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-emulator-", dir=args.out))
    combos = [(arm, t) for t in args.step_ms for arm in args.arms]
    rows: list[Measurement] = []
    t_start = time.time()
    load0 = os.getloadavg()
    for i in range(0, len(combos), args.concurrent_starts):
        group = combos[i : i + args.concurrent_starts]
        servers = [
            start_server(arm, t, args.port + j, work / f"{arm}-{t:g}ms")
            for j, (arm, t) in enumerate(group)
        ]
        try:
            for s in servers:
                wait_healthy(s, 400)
            for s in servers:
                for stream in (False, True):
                    for b in args.batches:
                        m = measure(s, b, stream, args.window_steps, args.warmup_steps)
                        rows.append(m)
                        print(_table([m], args.max_late_ms).splitlines()[-1], flush=True)
        finally:
            for s in servers:
                s.stop()
    summary = _summary(rows, args.max_late_ms)
    meta = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - t_start, 1),
        "faithful": {"busy_at_least": FAITHFUL_BUSY, "late_p95_ms_at_most": args.max_late_ms},
        "loop": "overlap (SGLang default)",
        "command": "scripts/bench_emulator.py " + " ".join(sys.argv[1:]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    (args.out / "bench_emulator.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": [asdict(m) for m in rows]}, indent=1)
    )
    md = (
        "# EMULATED server: step-rate limits on this machine\n\n"
        f"Command: `{meta['command']}`\n\n"
        f"{os.cpu_count()} CPUs, load average {load0[0]:.1f} before / "
        f"{meta['loadavg_after'][0]:.1f} after, {meta['wall_s']} s. Overlap loop. Faithful = "
        f"device busy >= {FAITHFUL_BUSY:.0%} and p95 late_ms <= {args.max_late_ms:g} ms, at "
        "that step time and every larger one tried.\n\n## Summary\n\n"
        + _summary_table(summary)
        + "\n## All runs\n\n"
        + _table(rows, args.max_late_ms)
    )
    (args.out / "bench_emulator.md").write_text(md)
    print("\n" + _summary_table(summary))
    print(f"wrote {args.out / 'bench_emulator.json'} and {args.out / 'bench_emulator.md'}")
    with contextlib.suppress(OSError):
        for p in work.rglob("*"):
            if p.is_file() and p.name != "server.log":
                p.unlink()


if __name__ == "__main__":
    main()

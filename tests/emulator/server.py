"""Emulated SGLang servers for the tests: what each one is, and a farm that starts them all at
once (server start-up costs ~30 s of CPU on 2 cores, so the session pays it concurrently, once).

Each server runs in its own process group (start_new_session), so stopping it reaches the
scheduler and detokenizer children too; the farm stops every group it started, also when a
test fails or the session is interrupted (fixture finalizer + atexit).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from fairbatching_sglang.core import SloTargets
from fairbatching_sglang.emulator.launch import (
    EmulatedServerConfig,
    emulated_env,
    emulated_server_argv,
)
from fairbatching_sglang.harness.arms import resolve_arms

HOST = "127.0.0.1"
# This suite's port block (colleagues use others): HTTP ports from 31310, each server's NCCL
# port 50 above its HTTP port (SGLang would otherwise pick any free port).
HTTP_PORTS = range(31310, 31350)
NCCL_OFFSET = 50
LAUNCH_PORTS = range(31300, 31310)  # launches expected to be refused (they never bind)
START_TIMEOUT_S = 300.0  # several servers start together on 2 cores
KV_TOKENS = 16384  # small pool: the demand of the KV-pressure test does not fit
DEFAULT_SLO = SloTargets(ttft_slo_ms=1000.0, tpot_slo_ms=50.0)  # the flags' defaults


@dataclass(frozen=True)
class ServerSpec:
    """One emulated server: an arm, a loop, and anything else that makes it different."""

    name: str
    arm: str  # harness arm: sglang-default, sglang-mixed, fairbatching, fairbatching-ft
    overlap: bool
    device_model: str = "profile"
    max_total_tokens: int | None = KV_TOKENS
    slo: SloTargets = DEFAULT_SLO
    policy_fault_every: int | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def fairbatching(self) -> bool:
        return self.arm.startswith("fairbatching")


@dataclass
class ServerProcess:
    spec: ServerSpec
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    device_log: Path
    fb_log: Path | None
    _healthy: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if self._healthy:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server {self.spec.name} exited with {self.proc.returncode} during start:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    self._healthy = True
                    return
            time.sleep(0.5)
        raise RuntimeError(
            f"server {self.spec.name} not healthy in {timeout_s:.0f} s\n" + self.log_tail()
        )

    def up(self) -> bool:
        """Cheap check between tests: running and answering /v1/loads (a scheduler crash
        takes the whole server down: SGLang kills its process tree)."""
        if self.proc.poll() is not None:
            return False
        try:
            return requests.get(self.url + "/v1/loads", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def alive(self) -> bool:
        """The process is running and answers /health (a dead scheduler fails this)."""
        if self.proc.poll() is not None:
            return False
        try:
            return requests.get(self.url + "/health", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left (the group id is the pid)."""
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and group_alive(pgid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        if not group_alive(pgid):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)


def group_alive(pgid: int) -> bool:
    """Any process of the group left (zombies of our own child included until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def clean_env() -> dict[str, str]:
    """This process's environment without any FAIRBATCHING_EMULATED_* the caller may have set
    (each server gets exactly its spec's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FAIRBATCHING_EMULATED_")}


def launch_argv(
    spec: ServerSpec, port: int, cfg: EmulatedServerConfig
) -> tuple[list[str], dict[str, str]]:
    (arm,) = resolve_arms([spec.arm], "emulated")
    args = list(spec.extra_args)
    if not spec.overlap:
        args.append("--disable-overlap-schedule")
    argv = emulated_server_argv(
        sys.executable,
        cfg,
        host=HOST,
        port=port,
        arm_flags=arm.gpu_flags(spec.slo, cfg.profile),
        extra_args=["--nccl-port", str(port + NCCL_OFFSET), "--enable-metrics", *args],
    )
    return argv, {**clean_env(), **emulated_env(cfg)}


class ServerFarm:
    """Starts servers concurrently on first use; `get` waits for one to be healthy."""

    def __init__(self, root: Path, specs: dict[str, ServerSpec]) -> None:
        self.root = root
        self.specs = specs
        self.servers: dict[str, ServerProcess] = {}
        self._lock = threading.Lock()
        self._used_ports: set[int] = set()
        atexit.register(self.stop_all)  # also on an interrupted session

    def _free_port(self) -> int:
        for port in HTTP_PORTS:
            if port in self._used_ports:
                continue
            if port_free(port) and port_free(port + NCCL_OFFSET):
                self._used_ports.add(port)
                return port
        raise RuntimeError(f"no free port pair in {HTTP_PORTS} (+{NCCL_OFFSET})")

    def start(self, names: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            for name in names:
                if name not in self.servers:
                    self.servers[name] = self._start(self.specs[name])

    def _start(self, spec: ServerSpec) -> ServerProcess:
        port = self._free_port()
        workdir = self.root / spec.name
        workdir.mkdir(parents=True, exist_ok=True)
        device_log = workdir / "device_steps.jsonl"
        fb_log = workdir / "fairbatching_steps.jsonl" if spec.fairbatching else None
        cfg = EmulatedServerConfig(
            device_model=spec.device_model,
            step_log=str(device_log),
            max_total_tokens=spec.max_total_tokens,
            policy_fault_every=spec.policy_fault_every,
        )
        argv, env = launch_argv(spec, port, cfg)
        if fb_log is not None:
            argv += ["--fairbatching-step-log", str(fb_log)]
        log_path = workdir / "server.log"
        (workdir / "argv.json").write_text(json.dumps(argv, indent=1))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop reaches every child
            )
        return ServerProcess(spec, port, workdir, proc, log_path, device_log, fb_log)

    def get(self, name: str) -> ServerProcess:
        self.start([name])
        server = self.servers[name]
        server.wait_healthy()
        return server

    def stop_all(self) -> None:
        with self._lock:
            servers = list(self.servers.values())
        threads = [threading.Thread(target=s.stop) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def read_jsonl(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # a line being written
                rows.append(json.loads(line))
    return rows


def get_load(server: ServerProcess) -> dict[str, Any]:
    """The scheduler's LoadSnapshot (dp rank 0) from GET /v1/loads."""
    resp = requests.get(server.url + "/v1/loads", timeout=10)
    resp.raise_for_status()
    return resp.json()["loads"][0]


def get_metrics(server: ServerProcess) -> dict[str, float]:
    """Prometheus samples by name (labels dropped, values of one name summed)."""
    resp = requests.get(server.url + "/metrics", timeout=10)
    resp.raise_for_status()
    samples: dict[str, float] = {}
    for line in resp.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            samples[name] = samples.get(name, 0.0) + float(value)
    return samples


def wait_settled(server: ServerProcess, timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll /v1/loads until nothing runs, waits or holds KV; returns the last snapshot (the
    caller asserts on it, so a timeout shows what was left)."""
    deadline = time.monotonic() + timeout_s
    load = get_load(server)
    while time.monotonic() < deadline:
        if (
            load["num_running_reqs"] == 0
            and load["num_waiting_reqs"] == 0
            and load["num_used_tokens"] == 0
        ):
            return load
        time.sleep(0.25)
        load = get_load(server)
    return load

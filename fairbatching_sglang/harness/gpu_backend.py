"""Measured backend: each (arm, rate) run gets a fresh SGLang server on the GPU.

A fresh server per run keeps runs independent (no radix-cache or memory state carried from the
previous rate, one log per run) and confines a crash to the run it happened in. Stock arms use the
stock interpreter, FairBatching arms the patched one; with a single venv the patch is applied or
reverted before each arm (scripts/apply_patches.sh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from fairbatching_sglang import __version__
from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.arms import Arm
from fairbatching_sglang.harness.client import (
    ClientConfig,
    dispatch_lag_summary,
    replay_async,
)
from fairbatching_sglang.harness.loads import sample_loads
from fairbatching_sglang.harness.outcome import RunOutcome
from fairbatching_sglang.harness.records import write_measured_records
from fairbatching_sglang.harness.server import ServerProcess, ServerSpec, ServerStartError
from fairbatching_sglang.metrics import summarize
from fairbatching_sglang.workload import RequestTable

REPO_ROOT = Path(__file__).resolve().parents[2]


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or None when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return names[0] if names else None


@dataclass(frozen=True)
class GpuConfig:
    """stock_python / patched_python: interpreters of the stock and patched SGLang venvs. When
    they are the same interpreter, patch_mode="toggle" applies the patch for FairBatching arms and
    reverts it for stock arms."""

    stock_python: str
    patched_python: str
    server: ServerSpec
    profile: str = "h100-llama3.1-8b"
    patch_mode: str = "none"  # "none" | "toggle"
    num_warmup: int = 4
    client: ClientConfig | None = None
    step_log: bool = True  # FairBatching arms write a step log for the timeline plot


@dataclass
class GpuBackend:
    table: RequestTable
    slo_table: SloTable
    cfg: GpuConfig
    command: str
    gpu: str = "unknown GPU"
    kind: str = "measured"

    @property
    def label(self) -> str:
        return f"MEASURED ON {self.gpu}"

    @contextlib.contextmanager
    def open_arm(self, arm: Arm, arm_dir: Path) -> Iterator[GpuArmSession]:
        python = self.cfg.patched_python if arm.patched else self.cfg.stock_python
        if self.cfg.patch_mode == "toggle":
            args = [str(REPO_ROOT / "scripts/apply_patches.sh"), "--python", python]
            if not arm.patched:
                args.append("--revert")
            with (arm_dir / "patch.log").open("w") as log:
                rc = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise RuntimeError(f"{' '.join(args)} failed ({rc}); see {arm_dir / 'patch.log'}")
        yield GpuArmSession(self, arm, python)


@dataclass
class GpuArmSession:
    backend: GpuBackend
    arm: Arm
    python: str

    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome:
        b = self.backend
        run_dir.mkdir(parents=True, exist_ok=True)
        flags = self.arm.gpu_flags(b.slo_table.default, b.cfg.profile)
        if self.arm.is_fairbatching and b.cfg.step_log:
            flags += ["--fairbatching-step-log", str(run_dir / "step_log.jsonl")]
        spec = replace(b.cfg.server, python=self.python)
        server = ServerProcess(spec, flags, run_dir / "server.log")
        meta = self._meta(rate, server.argv)
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        try:
            server.start()
            meta["startup_s"] = server.wait_healthy()
            warmup(spec.base_url, b.cfg.num_warmup)
        except (ServerStartError, httpx.HTTPError) as exc:
            server.stop()
            return RunOutcome(
                self.arm.name, rate, "start_failed", error=str(exc), out_dir=str(run_dir)
            )
        try:
            client_cfg = replace(
                b.cfg.client or ClientConfig(base_url=spec.base_url),
                base_url=spec.base_url,
                rate_scale=rate,
            )
            result = asyncio.run(self._replay(client_cfg, run_dir))
        finally:
            crashed = not server.alive()
            rc = server.stop()
        write_measured_records(result.records, run_dir / "requests.parquet")
        summary = summarize(result.records, span_s=result.span_s)
        extra = {
            "counts": result.counts(),
            "num_cap_waits": result.num_cap_waits,
            "max_in_flight_seen": result.max_in_flight_seen,
            "replay_wall_s": result.wall_s,
            "server_returncode": rc,
            **dispatch_lag_summary(result.records),
        }
        meta.update(extra)
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        status = "crashed" if crashed else "ok"
        error = f"server exited during the replay (code {rc})" if crashed else None
        return RunOutcome(self.arm.name, rate, status, summary, error, str(run_dir), extra)

    async def _replay(self, cfg: ClientConfig, run_dir: Path):  # -> ReplayResult
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_loads(cfg.base_url, run_dir / "loads.jsonl", stop))
        try:
            return await replay_async(self.backend.table, self.backend.slo_table, cfg)
        finally:
            stop.set()
            await sampler

    def _meta(self, rate: float, argv: list[str]) -> dict:
        b = self.backend
        return {
            "kind": "measured",
            "gpu": b.gpu,
            "command": b.command,
            "server_argv": argv,
            "versions": {"fairbatching_sglang": __version__, "sglang": sglang_version(self.python)},
            "arm": self.arm.name,
            "rate_scale": rate,
            "profile": b.cfg.profile,
            "trace": measured_trace_metadata(b.table),
            "slo": {
                "ttft_slo_ms": b.slo_table.default.ttft_slo_ms,
                "tpot_slo_ms": b.slo_table.default.tpot_slo_ms,
            },
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def measured_trace_metadata(table: RequestTable) -> dict[str, Any]:
    """run.json's "trace" entry of a measured run (single server or cluster)."""
    return {
        "source": str(table.source),
        "num_requests": table.num_requests,
        "span_s": table.span_s,
        "transformations": list(table.transformations),
    }


def sglang_version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('sglang'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def warmup(base_url: str, num: int) -> None:
    """A few short requests (CUDA graphs, allocator) then a cache flush, so that the measured
    replay starts from an empty radix cache."""
    body = {
        "input_ids": list(range(1000, 1128)),
        "sampling_params": {"max_new_tokens": 16, "ignore_eos": True, "temperature": 0},
    }
    with httpx.Client(base_url=base_url, timeout=300.0) as client:
        for _ in range(num):
            client.post("/generate", json=body).raise_for_status()
        with contextlib.suppress(httpx.HTTPError):
            client.post("/flush_cache")

"""Measured backend: each (arm, rate) run gets a fresh real SGLang server.

One class serves the GPU and the emulated device: the managed-server sequence (patch state per
arm, preflight, start, /health, warm-up, replay at absolute times, /v1/loads sampling, records,
validity) is the same, and a LaunchRecipe supplies only what differs: the command line, the
environment, the label and the run's validity check (gpu_backend.py, emulated_backend.py).

A fresh server per run keeps runs independent (no radix-cache or memory state carried from the
previous rate, one log per run) and confines a crash to the run it happened in. Stock arms use the
stock interpreter, FairBatching arms the patched one; with a single venv the patch is applied or
reverted before each arm (scripts/apply_patches.sh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from fairbatching_sglang import __version__
from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.arms import Arm
from fairbatching_sglang.harness.client import (
    ClientConfig,
    ReplayResult,
    dispatch_lag_summary,
    replay_async,
)
from fairbatching_sglang.harness.loads import sample_loads
from fairbatching_sglang.harness.outcome import ArmUnavailable, RunOutcome
from fairbatching_sglang.harness.preflight import (
    APPLY_PATCHES,
    PreflightError,
    check_patched,
    check_sglang,
)
from fairbatching_sglang.harness.records import write_measured_records
from fairbatching_sglang.harness.server import ServerProcess, ServerSpec, ServerStartError
from fairbatching_sglang.harness.starvation import Validity
from fairbatching_sglang.metrics import summarize
from fairbatching_sglang.workload import RequestTable


class LaunchRecipe(Protocol):
    """What differs between measured backends. kind: "measured" (GPU) | "emulated"."""

    kind: str

    @property
    def label(self) -> str: ...

    def server_argv(self, spec: ServerSpec, arm_flags: list[str]) -> list[str]: ...

    def server_env(self, run_dir: Path) -> dict[str, str]:
        """Environment added for a server whose run directory is run_dir."""
        ...

    def describe(self) -> dict[str, Any]:
        """run.json entries naming the device (GPU name, device model, ...)."""
        ...

    def assess(self, run_dir: Path, result: ReplayResult, replay_start_s: float) -> Validity | None:
        """Is the run a measurement? None: not checked."""
        ...


@dataclass(frozen=True)
class MeasuredConfig:
    """stock_python / patched_python: interpreters of the stock and patched SGLang venvs. When
    they are the same interpreter, patch_mode="toggle" applies the patch for FairBatching arms and
    reverts it for stock arms; "none" leaves the venvs as they are (the preflight checks that
    FairBatching arms get a patched one)."""

    stock_python: str
    patched_python: str
    server: ServerSpec
    profile: str = "h100-llama3.1-8b"
    patch_mode: str = "none"  # "none" | "toggle"
    num_warmup: int = 4
    client: ClientConfig | None = None
    step_log: bool = True  # FairBatching arms write a step log for the timeline plot
    preflight: bool = True


@dataclass
class MeasuredBackend:
    table: RequestTable
    slo_table: SloTable
    cfg: MeasuredConfig
    recipe: LaunchRecipe
    command: str

    @property
    def kind(self) -> str:
        return self.recipe.kind

    @property
    def label(self) -> str:
        return self.recipe.label

    def describe(self) -> dict[str, Any]:
        return {"profile": self.cfg.profile, **self.recipe.describe()}

    def python_for(self, arm: Arm) -> str:
        return self.cfg.patched_python if arm.patched else self.cfg.stock_python

    def preflight(self, arms: list[Arm]) -> dict[str, str]:
        """Check every interpreter the arms will use (PreflightError); python -> sglang version.
        With patch_mode toggle the patch state changes per arm, so it is checked in open_arm."""
        versions: dict[str, str] = {}
        for arm in arms:
            python = self.python_for(arm)
            if python not in versions:
                versions[python] = check_sglang(python)
            if arm.patched and self.cfg.patch_mode == "none":
                check_patched(python)
        return versions

    @contextlib.contextmanager
    def open_arm(self, arm: Arm, arm_dir: Path) -> Iterator[MeasuredArmSession]:
        python = self.python_for(arm)
        try:
            version = check_sglang(python) if self.cfg.preflight else None
            if self.cfg.patch_mode == "toggle":
                _toggle_patch(python, arm.patched, arm_dir / "patch.log")
            elif arm.patched and self.cfg.preflight:
                check_patched(python)
        except PreflightError as exc:
            raise ArmUnavailable(str(exc)) from exc
        yield MeasuredArmSession(self, arm, python, version)


def _toggle_patch(python: str, patched: bool, log_path: Path) -> None:
    args = [str(APPLY_PATCHES), "--python", python, *([] if patched else ["--revert"])]
    with log_path.open("w") as log:
        rc = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise PreflightError(f"{' '.join(args)} failed ({rc}); see {log_path}")


@dataclass
class MeasuredArmSession:
    backend: MeasuredBackend
    arm: Arm
    python: str
    sglang_version: str | None = None

    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome:
        b = self.backend
        run_dir.mkdir(parents=True, exist_ok=True)
        flags = self.arm.gpu_flags(b.slo_table.default, b.cfg.profile)
        if self.arm.is_fairbatching and b.cfg.step_log:
            flags += ["--fairbatching-step-log", str(run_dir / "step_log.jsonl")]
        spec = replace(b.cfg.server, python=self.python)
        spec = replace(spec, env={**spec.env, **b.recipe.server_env(run_dir)})
        argv = b.recipe.server_argv(spec, flags)
        server = ServerProcess(spec, flags, run_dir / "server.log", argv=argv)
        meta = self._meta(rate, argv, spec.env)
        _write_json(run_dir / "run.json", meta)
        try:
            server.start()
            meta["startup_s"] = server.wait_healthy()
            warmup(spec.base_url, b.cfg.num_warmup)
        except (ServerStartError, httpx.HTTPError) as exc:
            server.stop()
            meta.update(status="start_failed", error=str(exc))
            _write_json(run_dir / "run.json", meta)
            return RunOutcome(
                self.arm.name, rate, "start_failed", error=str(exc), out_dir=str(run_dir)
            )
        except BaseException:
            server.stop()  # Ctrl-C while it starts: no orphan server (own session) left behind
            raise
        client_cfg = replace(
            b.cfg.client or ClientConfig(base_url=spec.base_url),
            base_url=spec.base_url,
            rate_scale=rate,
        )
        replay_start_s = time.time()  # device steps before this are warm-up
        try:
            result = asyncio.run(self._replay(client_cfg, run_dir))
        finally:
            crashed = not server.alive()
            rc = server.stop()
        write_measured_records(result.records, run_dir / "requests.parquet")
        summary = summarize(result.records, span_s=result.span_s)
        lag = dispatch_lag_summary(result.records)
        validity = b.recipe.assess(run_dir, result, replay_start_s)
        extra: dict[str, Any] = {
            "counts": result.counts(),
            "num_cap_waits": result.num_cap_waits,
            "max_in_flight_seen": result.max_in_flight_seen,
            "replay_t0_wall_s": result.t0_wall_s,
            "replay_wall_s": result.wall_s,
            "server_returncode": rc,
            "rid_token": result.run_token,
            "replay_start_s": replay_start_s,
            **lag,
        }
        if validity is not None:
            extra["validity"] = validity.to_dict()
        status, error = "ok", None
        if crashed:  # a crash explains everything after it; validity is then moot
            status, error = "crashed", f"server exited during the replay (code {rc})"
        elif validity is not None and not validity.valid:
            status, error = "invalid", validity.reason
        meta.update(extra, status=status, error=error)
        _write_json(run_dir / "run.json", meta)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return RunOutcome(self.arm.name, rate, status, summary, error, str(run_dir), extra)

    async def _replay(self, cfg: ClientConfig, run_dir: Path) -> ReplayResult:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_loads(cfg.base_url, run_dir / "loads.jsonl", stop))
        try:
            return await replay_async(self.backend.table, self.backend.slo_table, cfg)
        finally:
            stop.set()
            await sampler

    def _meta(self, rate: float, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
        b = self.backend
        return {
            "kind": b.kind,
            "label": b.label,
            **b.recipe.describe(),
            "command": b.command,
            "python": self.python,
            "server_argv": argv,
            "server_env": env,
            "versions": {"fairbatching_sglang": __version__, "sglang": self.sglang_version},
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


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def measured_trace_metadata(table: RequestTable) -> dict[str, Any]:
    """run.json's "trace" entry of a measured run (single server or cluster)."""
    return {
        "source": str(table.source),
        "num_requests": table.num_requests,
        "span_s": table.span_s,
        "transformations": list(table.transformations),
    }


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

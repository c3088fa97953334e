"""Build the measured backend (GPU or emulated) from `fairbatching ab`'s options."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.client import ClientConfig
from fairbatching_sglang.harness.measured_backend import MeasuredBackend, MeasuredConfig
from fairbatching_sglang.harness.server import ServerSpec
from fairbatching_sglang.harness.starvation import StarvationThresholds
from fairbatching_sglang.workload import RequestTable

GPU_HEALTH_TIMEOUT_S = 900.0  # model download + load + CUDA graphs


class OptionError(ValueError):
    """A bad combination of options; the message names them."""


@dataclass(frozen=True)
class MeasuredOptions:
    kind: str  # "gpu" | "emulated"
    profile: str
    model: str | None = None
    stock_venv: Path | None = None
    patched_venv: Path | None = None
    venv: Path | None = None
    port: int = 30000
    server_args: tuple[str, ...] = ()
    request_timeout_s: float = 600.0
    max_in_flight: int = 4096
    health_timeout_s: float | None = None  # None: the backend's default
    gpu: str | None = None
    device_model: str = "profile"
    emulated_overhead_ms: float | None = None
    emulated_max_total_tokens: int | None = None
    thresholds: StarvationThresholds = field(default_factory=StarvationThresholds)
    num_warmup: int = 4


def interpreters(opts: MeasuredOptions) -> tuple[str, str, str]:
    """(stock python, patched python, patch_mode)."""
    if opts.venv is not None:
        python = str(opts.venv / "bin/python")
        return python, python, "toggle"
    if opts.stock_venv is not None and opts.patched_venv is not None:
        return str(opts.stock_venv / "bin/python"), str(opts.patched_venv / "bin/python"), "none"
    if opts.stock_venv is not None or opts.patched_venv is not None:
        raise OptionError("--stock-venv and --patched-venv go together (or use --venv)")
    if opts.kind == "emulated":
        # This interpreter's sglang is the patched one; with --enable-fairbatching off it
        # behaves exactly as stock (patches/README.md), so both arm kinds can share it.
        return sys.executable, sys.executable, "none"
    raise OptionError("--backend gpu needs --venv, or --stock-venv and --patched-venv")


def build_measured_backend(
    opts: MeasuredOptions, table: RequestTable, slo: SloTable, command: str
) -> MeasuredBackend:
    stock, patched, mode = interpreters(opts)
    if opts.kind == "gpu":
        from fairbatching_sglang.harness.gpu_backend import GpuRecipe

        if opts.model is None:
            raise OptionError("--backend gpu needs --model")
        recipe = GpuRecipe(opts.gpu or "unknown GPU")
        model = opts.model
        health = opts.health_timeout_s or GPU_HEALTH_TIMEOUT_S
    else:
        from fairbatching_sglang.emulator.launch import TINY_MODEL_DIR, EmulatedServerConfig
        from fairbatching_sglang.emulator.settings import DEFAULT_OVERHEAD_MS
        from fairbatching_sglang.harness.emulated_backend import (
            DEFAULT_HEALTH_TIMEOUT_S,
            EmulatedRecipe,
        )

        if opts.model is not None:
            raise OptionError("--model is for --backend gpu (the emulated server has no model)")
        overhead = opts.emulated_overhead_ms
        if overhead is not None and overhead < 0:
            raise OptionError("--emulated-overhead-ms must be >= 0")
        device = EmulatedServerConfig(
            device_model=opts.device_model,
            profile=opts.profile,
            overhead_ms=DEFAULT_OVERHEAD_MS if overhead is None else overhead,
            max_total_tokens=opts.emulated_max_total_tokens,
        )
        recipe = EmulatedRecipe(device, opts.profile, opts.thresholds)
        model = str(TINY_MODEL_DIR)
        health = opts.health_timeout_s or DEFAULT_HEALTH_TIMEOUT_S
    spec = ServerSpec(
        python=stock,
        model_path=model,
        port=opts.port,
        extra_args=opts.server_args,
        health_timeout_s=health,
    )
    client = ClientConfig(
        base_url=spec.base_url,
        request_timeout_s=opts.request_timeout_s,
        max_in_flight=opts.max_in_flight,
    )
    cfg = MeasuredConfig(
        stock, patched, spec, opts.profile, mode, num_warmup=opts.num_warmup, client=client
    )
    return MeasuredBackend(table, slo, cfg, recipe, command)


def warn_without_gpu(opts: MeasuredOptions) -> str | None:
    if opts.kind == "gpu" and opts.gpu is None and shutil.which("nvidia-smi") is None:
        return "warning: nvidia-smi not found; the GPU run will probably fail"
    return None

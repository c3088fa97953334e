"""How to start the real SGLang server on the emulated device (no sglang import here: the
harness and the CLI build the command line; the server process loads the plugin).

    argv = emulated_server_argv(python, cfg, port=30000, arm_flags=[...])
    env  = emulated_env(cfg)          # turns the plugin on in every SGLang process
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fairbatching_sglang.emulator.settings import (
    DEFAULT_OVERHEAD_MS,
    ENV_DEVICE,
    ENV_OVERHEAD,
    ENV_POLICY_FAULT,
    ENV_PROFILE,
    ENV_STEP_LOG,
)
from fairbatching_sglang.profiles import DEFAULT_PROFILE

TINY_MODEL_DIR = Path(__file__).resolve().parent / "tiny_llama"
MODELS_PACKAGE = "fairbatching_sglang.emulator.models"

# Flags every emulated server needs (DESIGN.md section 6): no GPU, no weights, no tokenizer (the
# harness sends input_ids), no CUDA graphs, and a scheduler that sleeps when idle instead of
# spinning on one of the two cores.
BASE_FLAGS: tuple[str, ...] = (
    "--device",
    "cpu",
    "--load-format",
    "dummy",
    "--skip-tokenizer-init",
    "--disable-cuda-graph",
    "--sleep-on-idle",
)
# SGLang's defaults for an 80 GB GPU, which the simulator models (sim/config.py SimConfig); on
# CPU SGLang would pick a 4096-token chunk.
ENGINE_FLAGS: tuple[str, ...] = (
    "--chunked-prefill-size",
    "8192",
    "--max-prefill-tokens",
    "16384",
    "--max-running-requests",
    "1024",
)


@dataclass(frozen=True)
class EmulatedServerConfig:
    """device_model: --device-model spec of what a step really costs. profile: the emulated
    GPU (its KV capacity sizes the pool unless max_total_tokens is set)."""

    device_model: str = "profile"
    profile: str = DEFAULT_PROFILE
    overhead_ms: float = DEFAULT_OVERHEAD_MS
    step_log: str | None = None
    max_total_tokens: int | None = None
    engine_flags: tuple[str, ...] = ENGINE_FLAGS
    policy_fault_every: int | None = None  # test only: every Nth policy decision raises


def emulated_env(cfg: EmulatedServerConfig) -> dict[str, str]:
    env = {
        ENV_DEVICE: cfg.device_model,
        ENV_PROFILE: cfg.profile,
        ENV_OVERHEAD: f"{cfg.overhead_ms:g}",
        "SGLANG_EXTERNAL_MODEL_PACKAGE": MODELS_PACKAGE,
        "HF_HUB_OFFLINE": "1",
    }
    if cfg.step_log:
        env[ENV_STEP_LOG] = str(cfg.step_log)
    if cfg.policy_fault_every is not None:
        env[ENV_POLICY_FAULT] = str(cfg.policy_fault_every)
    return env


def emulated_server_flags(cfg: EmulatedServerConfig) -> list[str]:
    flags = [*BASE_FLAGS, *cfg.engine_flags]
    if cfg.max_total_tokens is not None:
        flags += ["--max-total-tokens", str(cfg.max_total_tokens)]
    return flags


def emulated_server_argv(
    python: str,
    cfg: EmulatedServerConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 30000,
    arm_flags: list[str] | tuple[str, ...] = (),
    extra_args: list[str] | tuple[str, ...] = (),
) -> list[str]:
    return [
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(TINY_MODEL_DIR),
        "--host",
        host,
        "--port",
        str(port),
        *emulated_server_flags(cfg),
        *arm_flags,
        *extra_args,
    ]

"""The emulated launch recipe for the measured backend (measured_backend.py): the real SGLang
server on CPU, its model worker replaced by the emulated device (fairbatching_sglang.emulator),
the device's step log in the run directory and the run judged for CPU starvation
(starvation.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fairbatching_sglang.emulator.launch import (
    EmulatedServerConfig,
    emulated_env,
    emulated_server_argv,
)
from fairbatching_sglang.harness.client import ReplayResult, dispatch_lag_summary
from fairbatching_sglang.harness.server import ServerSpec
from fairbatching_sglang.harness.starvation import (
    DEVICE_STEP_LOG,
    StarvationThresholds,
    Validity,
    assess,
    read_device_steps,
)
from fairbatching_sglang.profiles.device_spec import parse_device_model

DEFAULT_HEALTH_TIMEOUT_S = 180.0  # ~30 s on 2 idle cores; slack for a busy machine


def emulated_label(device: EmulatedServerConfig, planner_profile: str) -> str:
    spec = parse_device_model(device.device_model)
    priced = spec.profile or device.profile
    return (
        f"EMULATED: real SGLang server on CPU, emulated device {device.device_model!r} "
        f"priced from {priced}, planner profile {planner_profile}"
    )


def planner_flags(
    arm_flags: list[str], overhead_ms: float, extra_args: tuple[str, ...] | list[str] = ()
) -> list[str]:
    """FairBatching plans with its profile + --fairbatching-overhead-ms; the simulator's planner
    is the profile + the step overhead, which the emulated device charges on every step. Give
    the server's planner the same belief (unless the user set the flag), so an emulated run and
    a simulated one judge the same planner; device-model errors (bias, noise) stay unknown."""
    flag = "--fairbatching-overhead-ms"
    if "--enable-fairbatching" not in arm_flags or flag in arm_flags or flag in extra_args:
        return list(arm_flags)
    return [*arm_flags, flag, f"{overhead_ms:g}"]


@dataclass(frozen=True)
class EmulatedRecipe:
    """device: what the emulated device charges (its step_log is set per run). planner_profile:
    what FairBatching arms plan with (--fairbatching-profile)."""

    device: EmulatedServerConfig = field(default_factory=EmulatedServerConfig)
    planner_profile: str = "h100-llama3.1-8b"
    thresholds: StarvationThresholds = field(default_factory=StarvationThresholds)
    kind: str = "emulated"

    @property
    def label(self) -> str:
        return emulated_label(self.device, self.planner_profile)

    def server_argv(self, spec: ServerSpec, arm_flags: list[str]) -> list[str]:
        return emulated_server_argv(
            spec.python,
            self.device,
            host=spec.host,
            port=spec.port,
            arm_flags=planner_flags(arm_flags, self.device.overhead_ms, spec.extra_args),
            extra_args=spec.extra_args,
        )

    def server_env(self, run_dir: Path) -> dict[str, str]:
        return emulated_env(replace(self.device, step_log=str(run_dir / DEVICE_STEP_LOG)))

    def describe(self) -> dict[str, Any]:
        spec = parse_device_model(self.device.device_model)
        return {
            "device_model": spec.to_dict(),
            "emulated_profile": self.device.profile,
            "emulated_overhead_ms": self.device.overhead_ms,
            "max_total_tokens": self.device.max_total_tokens,
            "starvation_thresholds": self.thresholds.__dict__,
        }

    def assess(self, run_dir: Path, result: ReplayResult, replay_start_s: float) -> Validity | None:
        steps = read_device_steps(run_dir / DEVICE_STEP_LOG, since_s=replay_start_s)
        lag = dispatch_lag_summary(result.records)["dispatch_lag_ms_p99"]
        return assess(steps, lag, self.thresholds)

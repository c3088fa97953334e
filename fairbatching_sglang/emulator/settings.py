"""The emulated device's settings, from environment variables (a plugin cannot add CLI flags).

FAIRBATCHING_EMULATED_DEVICE   the device model spec (profiles/device_spec.py); setting it
                               is what turns the emulator on: without it the plugin is inert
FAIRBATCHING_EMULATED_PROFILE  the profile the device prices from (default h100-llama3.1-8b);
                               also the KV capacity when --max-total-tokens is not given
FAIRBATCHING_EMULATED_OVERHEAD_MS  per-step CPU/launch time added to each step (default 0.5,
                               the simulator's default step overhead)
FAIRBATCHING_EMULATED_STEP_LOG JSONL step log of the device (one line per step), optional
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fairbatching_sglang.profiles import DEFAULT_PROFILE, load_profile
from fairbatching_sglang.profiles.device_spec import DeviceModelSpec, parse_device_model

ENV_DEVICE = "FAIRBATCHING_EMULATED_DEVICE"
ENV_PROFILE = "FAIRBATCHING_EMULATED_PROFILE"
ENV_OVERHEAD = "FAIRBATCHING_EMULATED_OVERHEAD_MS"
ENV_STEP_LOG = "FAIRBATCHING_EMULATED_STEP_LOG"
DEFAULT_OVERHEAD_MS = 0.5


def emulation_requested(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_DEVICE, "").strip())


@dataclass(frozen=True)
class EmulatorSettings:
    device: DeviceModelSpec
    profile: str
    kv_capacity_tokens: int
    overhead_ms: float
    step_log: str | None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> EmulatorSettings:
        env = os.environ if environ is None else environ
        device = parse_device_model(env.get(ENV_DEVICE, ""), flag=ENV_DEVICE)
        profile_name = env.get(ENV_PROFILE, "").strip() or DEFAULT_PROFILE
        profile = load_profile(profile_name)
        raw = env.get(ENV_OVERHEAD, "").strip()
        try:
            overhead = float(raw) if raw else DEFAULT_OVERHEAD_MS
        except ValueError:
            raise ValueError(f"{ENV_OVERHEAD}={raw!r} is not a number") from None
        if not overhead >= 0:
            raise ValueError(f"{ENV_OVERHEAD}={raw!r} must be >= 0")
        return cls(
            device=device,
            profile=profile_name,
            kv_capacity_tokens=profile.kv_capacity_tokens,
            overhead_ms=overhead,
            step_log=env.get(ENV_STEP_LOG, "").strip() or None,
        )

    def describe(self) -> str:
        return f"device model {self.device.text!r} on profile {self.profile}"

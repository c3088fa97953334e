"""The emulated device's settings, from environment variables (a plugin cannot add CLI flags).

FAIRBATCHING_EMULATED_DEVICE   the device model spec (profiles/device_spec.py); setting it
                               is what turns the emulator on: without it the plugin is inert
FAIRBATCHING_EMULATED_PROFILE  the profile the device prices from (default h100-llama3.1-8b);
                               also the KV capacity when --max-total-tokens is not given
FAIRBATCHING_EMULATED_OVERHEAD_MS  per-step CPU/launch time added to each step (default 0.5,
                               the simulator's default step overhead)
FAIRBATCHING_EMULATED_STEP_LOG JSONL step log of the device (one line per step), optional
FAIRBATCHING_EMULATED_POLICY_FAULT  test-only fault injection: N >= 1 makes every Nth
                               FairBatchingPolicy.decide call raise (fault.py), to exercise the
                               adapter's fallback on the real server; unset (the default) leaves
                               the policy untouched
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
ENV_POLICY_FAULT = "FAIRBATCHING_EMULATED_POLICY_FAULT"
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
    policy_fault_every: int | None = None  # test-only (fault.py)

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
        fault_raw = env.get(ENV_POLICY_FAULT, "").strip()
        fault: int | None = None
        if fault_raw:
            try:
                fault = int(fault_raw)
            except ValueError:
                raise ValueError(f"{ENV_POLICY_FAULT}={fault_raw!r} is not an integer") from None
            if fault < 1:
                raise ValueError(f"{ENV_POLICY_FAULT}={fault_raw!r} must be >= 1")
        return cls(
            device=device,
            profile=profile_name,
            kv_capacity_tokens=profile.kv_capacity_tokens,
            overhead_ms=overhead,
            step_log=env.get(ENV_STEP_LOG, "").strip() or None,
            policy_fault_every=fault,
        )

    def describe(self) -> str:
        text = f"device model {self.device.text!r} on profile {self.profile}"
        if self.policy_fault_every is not None:
            text += f", policy fault every {self.policy_fault_every} decisions (test only)"
        return text

"""Simulated backend: each (arm, rate) run is a `run_simulation` call in virtual time."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.arms import Arm
from fairbatching_sglang.harness.outcome import RunOutcome
from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.profiles.device_spec import DeviceModelSpec, parse_device_model
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.runner import run_simulation
from fairbatching_sglang.workload import RequestTable


@dataclass
class SimBackend:
    table: RequestTable
    profile: CostProfile
    slo_table: SloTable
    sim_config: SimConfig
    command: str
    kind: str = "simulated"
    # What a step really costs; the planner always believes `profile` (+ the step overhead).
    device_model: DeviceModelSpec = field(default_factory=lambda: parse_device_model("profile"))

    @property
    def label(self) -> str:
        loop = ", overlap loop" if self.sim_config.overlap_schedule else ""
        return (
            f"SIMULATED (device model {self.device_model.text!r}, planner profile "
            f"{self.profile.name}{loop}, no GPU)"
        )

    def describe(self) -> dict[str, object]:
        return {
            "profile": self.profile.name,
            "device_model": self.device_model.to_dict(),
            "overlap_schedule": self.sim_config.overlap_schedule,
            # The engine settings every arm starts from (a knob setting overrides one field).
            "sim_config": dataclasses.asdict(self.sim_config),
        }

    def setting(self, field_name: str) -> int:
        """The default value of a SimConfig knob (what an arm without overrides runs with)."""
        value: int = getattr(self.sim_config, field_name)
        return value

    @contextlib.contextmanager
    def open_arm(self, arm: Arm, arm_dir: Path) -> Iterator[SimArmSession]:
        yield SimArmSession(self, arm)


@dataclass
class SimArmSession:
    backend: SimBackend
    arm: Arm

    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome:
        b = self.backend
        run_dir.mkdir(parents=True, exist_ok=True)
        sim_config = dataclasses.replace(b.sim_config, **self.arm.sim_overrides)
        result = run_simulation(
            b.table,
            self.arm.sim_policy,
            b.profile,
            slo_table=b.slo_table,
            rate_scale=rate,
            sim_config=sim_config,
            fairbatching_config=self.arm.fairbatching_config(),
            out_dir=run_dir,
            command=b.command,
            device_model=b.device_model,
        )
        if not keep_records:  # capacity probes keep summary + run.json; records are large
            for name in ("requests.parquet", "steps.parquet"):
                (run_dir / name).unlink(missing_ok=True)
        return RunOutcome(
            arm=self.arm.name,
            rate_scale=rate,
            status="ok",
            summary=result.summary,
            out_dir=str(run_dir),
            extra={"wall_s": result.wall_s, "records_kept": keep_records},
        )

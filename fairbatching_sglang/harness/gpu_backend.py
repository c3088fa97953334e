"""The GPU launch recipe for the measured backend (measured_backend.py): the user's model on
the machine's GPU, `python -m sglang.launch_server --model-path M ...` with the arm's flags."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairbatching_sglang.harness.client import ReplayResult
from fairbatching_sglang.harness.server import ServerSpec, launch_server_argv
from fairbatching_sglang.harness.starvation import Validity


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
class GpuRecipe:
    gpu: str = "unknown GPU"
    kind: str = "measured"

    @property
    def label(self) -> str:
        return f"MEASURED ON {self.gpu}"

    def server_argv(self, spec: ServerSpec, arm_flags: list[str]) -> list[str]:
        return launch_server_argv(spec, arm_flags)

    def server_env(self, run_dir: Path) -> dict[str, str]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"gpu": self.gpu}

    def assess(self, run_dir: Path, result: ReplayResult, replay_start_s: float) -> Validity | None:
        # A GPU does not share this CPU; the client's dispatch lag is reported (run.json), and
        # a saturated server legitimately delays sends through the connection cap.
        return None

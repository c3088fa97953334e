"""What identifies an A/B's results, for its configuration hash (run_config.py, --resume).

In: the trace as replayed, arms, SLOs, the profile's content, the device model, the backend
kind and every backend option that changes a measurement, the rates and capacity settings.
Out: where results go, the report title, and options that only change how the harness waits
or which port it uses (port, health timeout): a resume may change those.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.ab import AbConfig
from fairbatching_sglang.harness.measured_cli import MeasuredOptions
from fairbatching_sglang.harness.run_config import profile_identity, table_identity
from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.workload import RequestTable

NOT_RESULTS = ("port", "health_timeout_s")


def backend_identity(
    kind: str, sim_overlap_schedule: bool, measured: MeasuredOptions | None
) -> dict[str, Any]:
    if measured is None:
        return {"kind": kind, "sim_overlap_schedule": sim_overlap_schedule}
    opts = dataclasses.asdict(measured)
    return {"kind": kind, **{k: v for k, v in opts.items() if k not in NOT_RESULTS}}


def ab_config_fields(
    *,
    table: RequestTable,
    window: dict[str, Any],
    slo: SloTable,
    profile: CostProfile,
    device_model: str,
    backend: dict[str, Any],
    cfg: AbConfig,
) -> dict[str, Any]:
    return {
        "trace": table_identity(table, **window),
        "arms": list(cfg.arms),
        "slo": dataclasses.asdict(slo.default),
        "profile": profile_identity(profile),
        "device_model": device_model,
        "backend": backend,
        "runs": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "arms"},
    }

"""Simulated schedulers by name."""

from __future__ import annotations

from fairbatching_sglang.core import FairBatchingConfig, FairBatchingPolicy, HingeCostModel
from fairbatching_sglang.sim.schedulers.base import SimScheduler, StepPlan
from fairbatching_sglang.sim.schedulers.fairbatching import FairBatchingScheduler
from fairbatching_sglang.sim.schedulers.sarathi import SarathiScheduler
from fairbatching_sglang.sim.schedulers.sglang_default import SglangDefaultScheduler
from fairbatching_sglang.sim.schedulers.sglang_mixed import SglangMixedScheduler

POLICY_NAMES = ("sglang-default", "sglang-mixed", "sarathi", "fairbatching")


def make_scheduler(
    name: str,
    cost_model: HingeCostModel,
    fairbatching_config: FairBatchingConfig | None = None,
) -> SimScheduler:
    """cost_model: what FairBatching plans with (may differ from the simulator's truth)."""
    if name == "sglang-default":
        return SglangDefaultScheduler()
    if name == "sglang-mixed":
        return SglangMixedScheduler()
    if name == "sarathi":
        return SarathiScheduler()
    if name == "fairbatching":
        policy = FairBatchingPolicy(cost_model, fairbatching_config or FairBatchingConfig())
        return FairBatchingScheduler(policy)
    raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICY_NAMES)}")


__all__ = ["POLICY_NAMES", "SimScheduler", "StepPlan", "make_scheduler"]

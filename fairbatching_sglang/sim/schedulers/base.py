"""What a simulated scheduler returns for one step, and the interface it implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fairbatching_sglang.sim.request import SimRequest
from fairbatching_sglang.sim.state import InstanceState


@dataclass(frozen=True)
class StepPlan:
    """decodes: rows producing a token; chunks: (request, new prefill tokens); parked: decodes
    left out on purpose; budget_ms: the scheduler's time budget (nan when it has none)."""

    decodes: tuple[SimRequest, ...] = ()
    chunks: tuple[tuple[SimRequest, int], ...] = ()
    parked: tuple[SimRequest, ...] = ()
    budget_ms: float = float("nan")
    decays_token_ratio: bool = field(default=False)

    @property
    def is_empty(self) -> bool:
        return not self.decodes and not self.chunks


class SimScheduler(Protocol):
    name: str

    def plan(self, now_ms: float, state: InstanceState) -> StepPlan: ...

"""Tunables for every choice the FairBatching paper leaves open (each is documented here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fairbatching_sglang.core.closed_loop import ClosedLoopConfig
from fairbatching_sglang.core.online_calibration import OnlineCalibrationConfig


@dataclass(frozen=True)
class FairBatchingConfig:
    """FairBatching policy knobs.

    budget_floor_tpot_fraction: the per-step time budget is max(min decode slack, this fraction of
        the smallest TPOT SLO among running decodes). The floor keeps batches from shrinking to
        fragments when a decode burst has spent its slack. 1.0 is the paper's max(min slack,
        min tpot).
    max_step_budget_ms: optional ceiling on the budget. Without it, decodes far ahead of their
        envelope allow long steps that the token caps alone bound.
    park_guard_factor / urgency_margin_ms: a decode is urgent (must run this step) when its slack
        is below budget + guard, guard = park_guard_factor * max(budget floor, predicted time of a
        decode-only step of all running decodes) + urgency_margin_ms. Parking therefore always
        leaves at least one more step's worth of slack, so a decode parked now cannot miss its
        deadline because it was parked (unless the next step is forced past its budget by load
        the engine cannot shed).
    enable_parking: False gives "all decodes every step" (Sarathi-like) with time-budgeted prefill.
    max_consecutive_parked_steps: optional starvation bound; a decode parked that many steps in a
        row runs next step whatever its slack (None: the envelope alone decides).
    min_chunk_tokens: a prefill chunk that does not finish its request is not scheduled below this
        size (tiny chunks cost a full step overhead for little progress).
    guarantee_prefill_progress: when prefills wait, the first one in order always gets
        min(min_chunk_tokens, its remaining tokens) if caps allow, even past the budget, so
        prefills cannot starve behind a decode set whose floor leaves no room. The budget is raised
        to cover it before urgency is decided, so the parking guarantee still holds.
    protect_prefill_ttft: once a prefill that will complete in this step (and can still meet its
        TTFT deadline) is admitted, later additions may not push the step past that deadline.
    decode_deadline_anchor: where a decode's envelope starts. "arrival" (the envelope as the
        paper's abstract describes it): token j is due at arrival + ttft + j * tpot, so a fast
        first token banks up to ttft of slack that later tokens may spend; mean TPOT can then
        exceed tpot while every envelope deadline holds, which the usual TTFT + mean-TPOT SLO
        counts as a miss. "first_token" (default): token j is due at first_token_time + j * tpot,
        which meets the mean-TPOT SLO whenever the envelope holds; slack then comes only from
        decode tokens produced early. Rows with an unknown first-token time use "arrival".
    deadline_headroom: the policy plans against SLOs scaled by this factor (0.9 = aim for 90% of
        each TTFT / TPOT target) to absorb cost-model error and per-step jitter; 1.0 plans to the
        exact SLO, so any step that runs longer than predicted turns into a miss.
    late_prefill_order: "edf" orders all new prefills by TTFT slack (most late first); under a
        surge every queued request then turns late together. "deprioritize" serves prefills that
        can still meet their TTFT first and the already late ones after them (fewer misses, and a
        lower p99 TTFT when misses are few), at the risk of starving late ones.
    late_prefill_max_defer_slo: with "deprioritize", a late prefill is deferred behind meetable
        ones only until it is this many of its own TTFT SLOs past its deadline; then it is ordered
        by slack with them again (so first), which bounds how long it can starve (TTFT about
        (1 + this) x SLO plus the queue ahead). None: no bound.
    closed_loop: how the planner follows measured step times (core/closed_loop.py: online
        recalibration plus a margin from the recent measured/predicted distribution); None plans
        with the offline model as given, open loop (then any under-prediction is a miss).
        The policy object itself does not read it: the scheduler that drives the policy (the
        simulator's, the SGLang hook) owns the loop and hands the policy the planning model.
    """

    budget_floor_tpot_fraction: float = 1.0
    max_step_budget_ms: float | None = None
    park_guard_factor: float = 1.0
    urgency_margin_ms: float = 0.0
    enable_parking: bool = True
    max_consecutive_parked_steps: int | None = None
    min_chunk_tokens: int = 32
    guarantee_prefill_progress: bool = True
    protect_prefill_ttft: bool = True
    late_prefill_order: Literal["edf", "deprioritize"] = "edf"
    late_prefill_max_defer_slo: float | None = None
    decode_deadline_anchor: Literal["arrival", "first_token"] = "first_token"
    deadline_headroom: float = 1.0
    closed_loop: ClosedLoopConfig | None = field(default_factory=ClosedLoopConfig)

    def __post_init__(self) -> None:
        if isinstance(self.closed_loop, dict):
            # From JSON (--fairbatching-config, run.json): nested keys build the dataclasses.
            object.__setattr__(self, "closed_loop", closed_loop_from_dict(self.closed_loop))
        if self.budget_floor_tpot_fraction < 0:
            raise ValueError("budget_floor_tpot_fraction must be >= 0")
        if self.max_step_budget_ms is not None and self.max_step_budget_ms <= 0:
            raise ValueError("max_step_budget_ms must be > 0 when set")
        if self.park_guard_factor < 1.0:
            raise ValueError("park_guard_factor must be >= 1.0 (below 1 parking can cause misses)")
        if self.urgency_margin_ms < 0:
            raise ValueError("urgency_margin_ms must be >= 0")
        if self.max_consecutive_parked_steps is not None and self.max_consecutive_parked_steps < 1:
            raise ValueError("max_consecutive_parked_steps must be >= 1 when set")
        if self.min_chunk_tokens < 1:
            raise ValueError("min_chunk_tokens must be >= 1")
        if self.late_prefill_order not in ("edf", "deprioritize"):
            raise ValueError("late_prefill_order must be 'edf' or 'deprioritize'")
        if self.late_prefill_max_defer_slo is not None and self.late_prefill_max_defer_slo < 0:
            raise ValueError("late_prefill_max_defer_slo must be >= 0 when set")
        if not 0.0 < self.deadline_headroom <= 1.0:
            raise ValueError("deadline_headroom must be in (0, 1]")
        if self.decode_deadline_anchor not in ("arrival", "first_token"):
            raise ValueError("decode_deadline_anchor must be 'arrival' or 'first_token'")


def closed_loop_from_dict(data: dict[str, Any]) -> ClosedLoopConfig:
    """ClosedLoopConfig from a JSON object; unknown keys are an error naming them."""
    known = set(ClosedLoopConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"closed_loop: unknown key(s) {unknown}; known: {sorted(known)}")
    values = dict(data)
    cal = values.get("calibration")
    if isinstance(cal, dict):
        cal_known = set(OnlineCalibrationConfig.__dataclass_fields__)
        if set(cal) - cal_known:
            raise ValueError(
                f"closed_loop.calibration: unknown key(s) {sorted(set(cal) - cal_known)}; "
                f"known: {sorted(cal_known)}"
            )
        values["calibration"] = OnlineCalibrationConfig(**cal)
    return ClosedLoopConfig(**values)

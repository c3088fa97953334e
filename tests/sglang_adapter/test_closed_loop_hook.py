"""The hook's closed loop on real SGLang scheduler objects: the measured wall time of each step
reaches the planner paired with the step that ran (either loop), and first tokens take their
observed time instead of the predicted one."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sglang")

from conftest import FakeClock
from cpu_harness import CpuScheduler

from fairbatching_sglang.core.cost_model import StepShape
from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings

loops = pytest.mark.parametrize("overlap", [False, True], ids=["normal", "overlap"])
SLOW = 1.3  # the "device" runs every step 30% slower than the offline model says


class Run:
    def __init__(self, tmp_path: Path, overlap: bool, config_json: str | None = None) -> None:
        self.clock = FakeClock()
        settings = FairBatchingSettings(
            ttft_slo_ms=5000.0, tpot_slo_ms=200.0, config_json=config_json
        )
        self.cs = CpuScheduler(
            tmp_path / "m",
            fairbatching=settings,
            clock=self.clock,
            enable_overlap=overlap,
            chunked_prefill_size=2048,
        )
        self.hook = self.cs.s.fairbatching
        self.overlap = overlap
        self.observed: list[tuple[StepShape, float]] = []
        self.first_token_checks = 0
        loop = self.hook.closed_loop
        if loop is not None:
            real = loop.observe

            def spy(shape: StepShape, ms: float) -> None:
                self.observed.append((shape, ms))
                real(shape, ms)

            loop.observe = spy  # type: ignore[method-assign]
        real_end = self.hook._observe_step_end

        def check_end(now_ms: float, interval_ms: float) -> None:
            pending = self.hook._unobserved
            ready = len(pending) >= (2 if overlap else 1)
            states = list(pending[0][2]) if ready else []
            real_end(now_ms, interval_ms)
            for st in states:
                assert st.first_token_ms == now_ms  # the observed end, not the prediction
                self.first_token_checks += 1

        self.hook._observe_step_end = check_end  # type: ignore[method-assign]

    def run(self, num_reqs: int = 24, max_steps: int = 110) -> list[StepShape]:
        reqs = [self.cs.add_request(300, 120) for _ in range(num_reqs)]
        shapes: list[StepShape] = []
        for _ in range(max_steps):
            if self.cs.step() is None:
                break
            shapes.append(self.hook._unobserved[-1][0])
            # Back-to-back device: the next formation comes when the step that the loop waits
            # on ends - this one (normal loop) or the one before it (overlap loop).
            ending = shapes[-2] if self.overlap and len(shapes) > 1 else shapes[-1]
            self.clock.advance_ms(SLOW * self.hook.cost_model.predict_ms(ending))
        self.cs.drain()
        del reqs
        return shapes


@loops
def test_measured_step_times_reach_the_planner_for_the_step_that_ran(
    tmp_path: Path, overlap: bool
) -> None:
    r = Run(tmp_path, overlap)
    shapes = r.run()
    hook = r.hook
    assert len(r.observed) >= 50
    # In order, step by step: the shape observed is the one that ran for that wall time.
    for i, (shape, ms) in enumerate(r.observed):
        assert shape == shapes[i]
        assert ms == pytest.approx(SLOW * hook.cost_model.predict_ms(shape), rel=1e-9)
    loop = hook.closed_loop
    # Measured against what the loop believed at the time: above 1 until it learnt the device.
    assert 1.02 < loop.stats()["measured_over_predicted"] < SLOW
    probe = StepShape(0, 24, 24 * 400, 0.0)
    # The planner learnt the slower device and plans at or above it.
    assert loop.believed_model().predict_ms(probe) > 1.15 * hook.cost_model.predict_ms(probe)
    assert hook.policy.cost_model is loop.planning_model()
    assert loop.planning_model().predict_ms(probe) >= loop.believed_model().predict_ms(probe)


@loops
def test_first_tokens_take_their_observed_time(tmp_path: Path, overlap: bool) -> None:
    r = Run(tmp_path, overlap)
    r.run()
    assert r.first_token_checks >= 20  # most of the 24 requests' first tokens were checked


def test_open_loop_plans_with_the_offline_model(tmp_path: Path) -> None:
    r = Run(tmp_path, False, config_json='{"closed_loop": null}')
    r.run(max_steps=30)
    assert r.hook.closed_loop is None and r.observed == []
    assert r.hook.policy.cost_model is r.hook.cost_model

"""SimConfig.overlap_schedule: SGLang's overlap loop sees a request one step later."""

from __future__ import annotations

import numpy as np
import pytest

from fairbatching_sglang.sim.schedulers import POLICY_NAMES
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from tests.sim.helpers import random_workload, simulate
from tests.sim.test_engine import _check_conservation


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_overlap_conserves_tokens_and_fast_forward_is_exact(policy: str) -> None:
    wl = random_workload(3, n=120, rate_per_s=5.0)
    fast, a, _ = simulate(wl, policy, fast_forward=True, overlap_schedule=True)
    slow, b, _ = simulate(wl, policy, fast_forward=False, overlap_schedule=True)
    assert fast.num_finished == wl.num_requests
    _check_conservation(wl, a)
    assert fast.num_steps == slow.num_steps
    a, b = a.sort_values("rid"), b.sort_values("rid")
    for ta, tb in zip(a.token_times_ms, b.token_times_ms, strict=True):
        np.testing.assert_allclose(ta, tb, rtol=0, atol=1e-6)


def test_arrival_during_a_step_waits_one_more_step() -> None:
    # A long decode keeps the engine busy; the second request arrives in the middle of a step.
    wl = SimWorkload.uniform_slo(
        np.array([0.0, 101.3]), np.array([100, 100]), np.array([400, 5]), 1000.0, 50.0
    )
    _, normal, steps_n = simulate(wl, "sglang-mixed", fast_forward=False)
    _, overlap, _ = simulate(wl, "sglang-mixed", fast_forward=False, overlap_schedule=True)
    step_ms = float(steps_n.step_ms.iloc[5])
    ttft_n = normal.set_index("rid").first_token_ms[1] - 101.3
    ttft_o = overlap.set_index("rid").first_token_ms[1] - 101.3
    # Normal loop: admitted at the end of the step it arrived in; overlap: one step later.
    assert ttft_o == pytest.approx(ttft_n + step_ms, abs=0.5)
    # The lone first request is seen at once (an idle overlap loop forms immediately).
    assert overlap.set_index("rid").first_token_ms[0] == normal.set_index("rid").first_token_ms[0]

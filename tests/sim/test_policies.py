"""Hand-checked tiny scenarios, one or more per simulated policy."""

from __future__ import annotations

import numpy as np
import pytest

from fairbatching_sglang.core import FairBatchingConfig
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from tests.sim.helpers import CM, simulate


def _wl(arrivals, inputs, outputs, ttft=1000.0, tpot=50.0) -> SimWorkload:  # type: ignore[no-untyped-def]
    return SimWorkload.uniform_slo(arrivals, inputs, outputs, ttft, tpot)


def test_prefill_first_stalls_decodes_for_exactly_the_prefill_steps() -> None:
    # A decodes; B (3 chunks of prompt) arrives mid-way: SGLang's default runs B's 3 chunks alone.
    wl = _wl([0.0, 30.0], [10, 3000], [40, 2])
    _, reqs, steps = simulate(wl, "sglang-default", chunked_prefill_size=1000)
    prefill_steps = steps[steps.num_prefill_tokens > 0]
    b_steps = prefill_steps[prefill_steps.start_ms >= 30.0]
    assert list(b_steps.num_prefill_tokens) == [1000, 1000, 1000]
    assert (b_steps.num_decodes == 0).all()
    a_times = np.array(reqs.set_index("rid").loc[0, "token_times_ms"])
    gaps = np.diff(a_times)
    stall = b_steps.step_ms.sum()
    # A's longest gap is the 3 prefill steps plus its own decode step, nothing more.
    decode_step = CM.predict_raw_ms(1, 40, 0.0, num_decode_reqs=1)
    assert gaps.max() == pytest.approx(stall + decode_step, rel=0.05)


def test_mixed_mode_charges_one_token_per_decode() -> None:
    wl = _wl([0.0] * 10 + [50.0], [10] * 10 + [5000], [200] * 10 + [2])
    _, _, steps = simulate(wl, "sglang-mixed", chunked_prefill_size=1000)
    mixed = steps[(steps.num_prefill_tokens > 0) & (steps.start_ms >= 50.0)]
    assert list(mixed.num_decodes) == [10] * len(mixed)
    assert list(mixed.num_prefill_tokens[:-1]) == [990] * (len(mixed) - 1)
    assert mixed.num_prefill_tokens.sum() == 5000


def test_sarathi_serves_every_decode_and_fills_the_token_budget() -> None:
    wl = _wl([0.0] * 8 + [50.0], [10] * 8 + [3000], [300] * 8 + [2])
    _, _, steps = simulate(wl, "sarathi", sarathi_token_budget=512)
    busy = steps[(steps.num_prefill_tokens > 0) & (steps.start_ms >= 50.0)]
    assert (busy.num_decodes == 8).all()
    assert list(busy.num_prefill_tokens[:-1]) == [504] * (len(busy) - 1)


def test_fairbatching_parks_ahead_decodes_under_a_prefill_burst_without_missing_deadlines() -> None:
    # Four decodes with a loose TPOT SLO are far ahead of their envelope when a burst arrives.
    arrivals = [0.0] * 4 + [400.0 + i for i in range(12)]
    inputs = [50] * 4 + [4000] * 12
    outputs = [120] * 4 + [3] * 12
    wl = SimWorkload(
        arrival_ms=np.array(arrivals),
        input_tokens=np.array(inputs),
        output_tokens=np.array(outputs),
        ttft_slo_ms=np.array([200.0] * 4 + [3000.0] * 12),
        tpot_slo_ms=np.array([150.0] * 4 + [50.0] * 12),
    )
    _, reqs, steps = simulate(wl, "fairbatching")
    assert steps.num_parked.max() > 0
    # Parked decodes still meet every envelope deadline: token j by arrival + ttft + j * tpot.
    for _, r in reqs[reqs.rid < 4].iterrows():
        t = np.asarray(r.token_times_ms)
        due = r.arrival_ms + r.ttft_slo_ms + r.tpot_slo_ms * np.arange(len(t))
        assert np.all(t <= due)
    # The burst is served faster than with every decode riding along (no parking).
    _, no_park, _ = simulate(wl, "fairbatching", fb_config=FairBatchingConfig(enable_parking=False))
    burst = reqs.rid >= 4
    assert (reqs[burst].first_token_ms - reqs[burst].arrival_ms).max() <= (
        no_park[burst].first_token_ms - no_park[burst].arrival_ms
    ).max()


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy 'fifo'"):
        simulate(_wl([0.0], [10], [2]), "fifo")

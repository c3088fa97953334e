"""Conservation, determinism, fast-forward equivalence, KV squeeze, rejection, prefix cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fairbatching_sglang.core import FairBatchingConfig
from fairbatching_sglang.sim.schedulers import POLICY_NAMES
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from tests.sim.helpers import random_workload, simulate


def _check_conservation(wl: SimWorkload, reqs: pd.DataFrame) -> None:
    assert sorted(reqs.rid) == list(range(wl.num_requests)), "every request recorded once"
    ok = reqs[reqs.status == "ok"]
    for _, r in ok.iterrows():
        t = np.asarray(r.token_times_ms)
        assert len(t) == r.output_tokens == wl.output_tokens[r.rid]
        assert np.all(np.diff(t) > 0)
        assert t[0] == r.first_token_ms > r.arrival_ms
        assert t[-1] == r.finish_ms


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_request_finishes_once_with_its_tokens(policy: str) -> None:
    wl = random_workload(1)
    summary, reqs, _ = simulate(wl, policy)
    assert summary.num_finished == wl.num_requests
    _check_conservation(wl, reqs)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_runs_are_deterministic(policy: str) -> None:
    wl = random_workload(2)
    _, a, _ = simulate(wl, policy)
    _, b, _ = simulate(wl, policy)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_fast_forward_equals_stepping_one_at_a_time(policy: str) -> None:
    wl = random_workload(3, n=120, rate_per_s=5.0)
    # Open loop: the closed loop observes a fast-forwarded block by its first and last step,
    # not step by step, so its learning (not the engine) differs between the two modes.
    open_loop = FairBatchingConfig(closed_loop=None)
    fast, a, _ = simulate(wl, policy, fast_forward=True, fb_config=open_loop)
    slow, b, _ = simulate(wl, policy, fast_forward=False, fb_config=open_loop)
    assert fast.num_steps == slow.num_steps
    assert fast.num_events < slow.num_events
    a, b = a.sort_values("rid"), b.sort_values("rid")
    for ta, tb in zip(a.token_times_ms, b.token_times_ms, strict=True):
        np.testing.assert_allclose(ta, tb, rtol=0, atol=1e-6)


def test_closed_loop_fast_forward_stays_close_to_stepping() -> None:
    wl = random_workload(3, n=120, rate_per_s=5.0)
    fast, a, _ = simulate(wl, "fairbatching", fast_forward=True)
    slow, b, _ = simulate(wl, "fairbatching", fast_forward=False)
    assert fast.num_finished == slow.num_finished == wl.num_requests
    a, b = a.sort_values("rid"), b.sort_values("rid")
    tpot_a = (a.finish_ms - a.first_token_ms) / (a.output_tokens - 1).clip(lower=1)
    tpot_b = (b.finish_ms - b.first_token_ms) / (b.output_tokens - 1).clip(lower=1)
    assert abs(tpot_a.mean() - tpot_b.mean()) < 0.02 * tpot_b.mean()


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_kv_squeeze_retracts_and_still_delivers_every_token(policy: str) -> None:
    wl = random_workload(4, n=150, rate_per_s=200.0)
    # Without ignore_eos SGLang reserves new_token_ratio of the remaining output (optimistic),
    # so a squeeze retracts; with it (replays) the reservation is whole and nothing retracts.
    summary, reqs, steps = simulate(wl, policy, kv_capacity_tokens=12_000, ignore_eos=False)
    assert summary.num_retractions > 0
    assert summary.num_finished == wl.num_requests
    assert steps.kv_used_tokens.max() <= 12_000
    _check_conservation(wl, reqs)
    assert reqs.num_retractions.sum() == summary.num_retractions


def test_request_larger_than_kv_is_rejected_not_hung() -> None:
    wl = SimWorkload.uniform_slo([0.0, 1.0], [5000, 100], [10, 10], 1000.0, 50.0)
    summary, reqs, _ = simulate(wl, "fairbatching", kv_capacity_tokens=4000)
    assert summary.num_rejected == 1
    assert reqs.set_index("rid").loc[0, "status"] == "rejected"
    assert reqs.set_index("rid").loc[1, "status"] == "ok"


def test_prefix_cache_hits_from_hash_ids() -> None:
    shared = list(range(8))  # 8 blocks x 512 tokens of common prefix
    wl = SimWorkload.uniform_slo(
        [0.0, 5000.0], [4600, 4600], [5, 5], 5000.0, 50.0, hash_ids=[[*shared, 100], [*shared, 200]]
    )
    _, reqs, _ = simulate(wl, "sglang-default")
    cached = reqs.set_index("rid").cached_tokens
    assert cached[0] == 0
    assert cached[1] == 8 * 512
    _, no_cache, _ = simulate(wl, "sglang-default", enable_prefix_cache=False)
    assert (no_cache.cached_tokens == 0).all()


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_kv_squeeze_with_ignore_eos_reserves_whole_outputs_and_never_retracts(policy: str) -> None:
    wl = random_workload(4, n=150, rate_per_s=200.0)
    summary, reqs, steps = simulate(wl, policy, kv_capacity_tokens=12_000)
    assert summary.num_finished == wl.num_requests
    assert steps.kv_used_tokens.max() <= 12_000
    if policy != "sarathi":  # vLLM reserves nothing ahead: it preempts instead
        assert summary.num_retractions == 0
    _check_conservation(wl, reqs)

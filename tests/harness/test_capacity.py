"""Capacity bisection on synthetic monotone attainment curves."""

from __future__ import annotations

import pytest

from fairbatching_sglang.harness.capacity import (
    CapacityConfig,
    ProbeCache,
    find_capacity,
)


def _curve(knee: float):
    # Attainment 1 up to the knee, then falling linearly: monotone non-increasing.
    return lambda r: 1.0 if r <= knee else max(0.0, 1.0 - (r - knee))


@pytest.mark.parametrize("knee", [0.3, 1.0, 3.7, 11.2])
def test_finds_knee_within_tolerance(knee: float) -> None:
    cfg = CapacityConfig(rel_tol=0.02, max_probes=30)
    res = find_capacity(_curve(knee), 1.0, cfg)
    assert res.capacity is not None and res.upper is not None
    assert res.capacity <= knee + 1e-12 < res.upper
    assert res.upper / res.capacity - 1 <= 0.02


def test_two_targets_share_probes() -> None:
    calls: list[float] = []

    def f(r: float) -> float:
        calls.append(r)
        return _curve(2.0)(r)

    cache = ProbeCache(f)
    r90 = find_capacity(cache, 0.9, CapacityConfig(max_probes=30))
    r99 = find_capacity(cache, 0.99, CapacityConfig(max_probes=30))
    assert 2.0 <= r99.capacity <= r90.capacity <= 2.1 + 1e-9
    assert len(calls) == len(set(calls)) == len(cache.probes)
    assert r90.num_probes + r99.num_probes > len(calls)  # some probes reused


def test_edges_and_probe_budget() -> None:
    never = find_capacity(lambda r: 0.0, 0.9, CapacityConfig(min_rate=0.25))
    assert never.capacity is None and never.upper == 0.25
    always = find_capacity(lambda r: 1.0, 0.9, CapacityConfig(max_rate=16))
    assert always.capacity == 16 and always.upper is None
    capped = find_capacity(_curve(5.0), 0.9, CapacityConfig(max_probes=5))
    assert capped.num_probes == 5 and capped.capacity == 4 and capped.upper == 6

"""Pure routing choices (core.routing)."""

from __future__ import annotations

import numpy as np
import pytest

from fairbatching_sglang.core.routing import (
    choose_by_admission_budget,
    choose_least,
    choose_power_of_two,
    least_load_score,
    power_of_two_pair,
)


def test_admission_budget_picks_largest_that_fits() -> None:
    assert choose_by_admission_budget([100, 500, 300], 200) == 1
    assert choose_by_admission_budget(np.array([100, 500, 300]), 400) == 1
    assert choose_by_admission_budget([100, 500, 500], 200) == 1  # tie -> lowest index
    assert choose_by_admission_budget([100, 200, 300], 300) == 2  # budget == need fits


def test_admission_budget_none_when_no_room() -> None:
    assert choose_by_admission_budget([100, 200, 0], 201) is None
    assert choose_by_admission_budget([], 1) is None


def test_oversize_request_goes_to_an_idle_replica() -> None:
    idle = 40_000
    # Larger than any replica could ever admit: without the cap it would wait forever.
    assert choose_by_admission_budget([idle, idle], 100_000) is None
    # With the cap it needs only an idle replica's budget, and only an idle one qualifies.
    assert choose_by_admission_budget([idle - 1, idle], 100_000, max_admission_tokens=idle) == 1
    assert choose_by_admission_budget([idle - 1, 5], 100_000, max_admission_tokens=idle) is None
    # The cap never makes a normal request's need larger.
    assert choose_by_admission_budget([300, 10], 200, max_admission_tokens=idle) == 0


def test_choose_least_ties_lowest() -> None:
    assert choose_least([3, 1, 1, 2]) == 1
    assert choose_least([0.5]) == 0
    with pytest.raises(ValueError):
        choose_least([])


def test_power_of_two_pair_distinct_and_seeded() -> None:
    a = [power_of_two_pair(5, rng) for rng in [np.random.default_rng(3)] for _ in range(200)]
    b = [power_of_two_pair(5, rng) for rng in [np.random.default_rng(3)] for _ in range(200)]
    assert a == b
    assert all(i != j and 0 <= i < 5 and 0 <= j < 5 for i, j in a)
    assert {p for p in a} >= {(0, 1), (1, 0)} or len({p for p in a}) > 10
    assert power_of_two_pair(1, np.random.default_rng(0)) == (0, 0)


def test_power_of_two_keeps_lower_load() -> None:
    rng = np.random.default_rng(0)
    loads = [10.0, 0.0]
    assert all(choose_power_of_two(loads, rng) == 1 for _ in range(20))
    assert choose_power_of_two([5.0, 5.0], np.random.default_rng(0)) in (0, 1)


def test_least_load_score_matches_smg_formula() -> None:
    s = least_load_score(1000.0, 1000.0, 2000.0, 0.5)
    assert s == pytest.approx(2000.0 / 2000.0 + 0.15 * 0.5 / 0.5)
    # No throughput reported: the default is used; KV usage clamps below 1.
    assert least_load_score(2000.0, 0.0, 0.0, 0.0) == pytest.approx(1.0)
    assert least_load_score(0.0, 0.0, 1.0, 1.0) == pytest.approx(0.15 * 0.999 / 0.001)

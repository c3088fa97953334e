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


def test_floor_is_configurable() -> None:
    # A trace already far beyond the device: the knee lies below the default 1/64 floor.
    knee = 0.004

    def cliff(r: float) -> float:
        return 1.0 if r <= knee else 0.0

    assert find_capacity(cliff, 0.9, CapacityConfig(max_probes=40)).capacity is None
    cfg = CapacityConfig(min_rate=1 / 1024, max_probes=40)
    res = find_capacity(cliff, 0.9, cfg)
    assert res.capacity is not None and res.capacity <= knee < res.upper


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"min_rate": 0.0}, "min_rate must be > 0"),
        ({"min_rate": 4.0, "max_rate": 2.0}, "max_rate (2) must be >= min_rate (4)"),
        ({"start_rate": 1.0, "min_rate": 2.0}, "start_rate 1 is outside"),
    ],
)
def test_contradictory_search_bounds_are_refused(fields: dict, needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        CapacityConfig(**fields)
    assert needle in str(exc.value)


def test_detail_rate_is_the_probed_capacity_not_a_rounding_of_it() -> None:
    from fairbatching_sglang.harness.ab import AbConfig, ArmResult, pick_detail_rate

    res = ArmResult("a", runs={})
    res.capacity = {"0.9": 6.3125}
    cfg = AbConfig(arms=("a",), capacity_targets=(0.9,))
    assert pick_detail_rate([res], cfg) == 6.3125  # was 6.312: a second run beside the probe


def test_cli_names_the_search_flags_at_fault(tmp_path) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from fairbatching_sglang.cli import app

    trace = Path(__file__).resolve().parents[2] / "traces/synthetic_conv_10min.csv"
    args = ["ab", "--trace", str(trace), "--backend", "sim", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, [*args, "--min-rate", "2", "--start-rate", "1"])
    assert res.exit_code != 0
    assert "--start-rate" in res.output and "--min-rate" in res.output

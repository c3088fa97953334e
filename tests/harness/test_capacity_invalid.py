"""Invalid probes (runs that are no measurement) in the capacity search and in run_ab."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from fairbatching_sglang.harness.ab import AbConfig, run_ab
from fairbatching_sglang.harness.arms import resolve_arms
from fairbatching_sglang.harness.capacity import (
    CapacityConfig,
    InvalidMeasurement,
    ProbeCache,
    find_capacity,
)
from fairbatching_sglang.harness.outcome import RunOutcome
from fairbatching_sglang.report import load_ab, write_report
from fairbatching_sglang.report.tables import capacity_table, ratio_table


def _curve(knee: float, invalid_from: float | None):
    calls: list[float] = []

    def att(rate: float) -> float:
        calls.append(rate)
        if invalid_from is not None and rate >= invalid_from:
            raise InvalidMeasurement(rate, "CPU-starved")
        return 1.0 if rate <= knee else 0.5

    return att, calls


def test_search_stops_at_an_invalid_probe_with_a_lower_bound() -> None:
    att, calls = _curve(knee=10.0, invalid_from=4.0)
    res = find_capacity(att, 0.9, CapacityConfig(start_rate=1.0))
    assert res.capacity == 2.0 and res.upper is None and res.invalid_rate == 4.0
    assert res.bound == "lower" and res.invalid_reason == "CPU-starved"
    assert calls == [1.0, 2.0, 4.0]  # nothing probed above or around the invalid rate

    # Mid-bisection: the bracket found so far is kept.
    def mid_invalid(rate: float) -> float:  # passes to x3.5, x4 fails, the midpoint x3 starves
        if rate == 3.0:
            raise InvalidMeasurement(rate, "CPU-starved")
        return 1.0 if rate <= 3.5 else 0.5

    res = find_capacity(mid_invalid, 0.9, CapacityConfig(start_rate=1.0, rel_tol=0.01))
    assert res.capacity == 2.0 and res.upper == 4.0 and res.bound == "lower"
    att, _ = _curve(knee=10.0, invalid_from=1.0)
    res = find_capacity(att, 0.9, CapacityConfig(start_rate=1.0))
    assert res.capacity is None and res.bound == "unknown"
    att, _ = _curve(knee=3.0, invalid_from=None)
    assert find_capacity(att, 0.9).bound == "found"


def test_probe_cache_remembers_invalid_probes() -> None:
    att, calls = _curve(knee=10.0, invalid_from=4.0)
    cache = ProbeCache(att)
    for _ in range(2):
        with pytest.raises(InvalidMeasurement):
            cache(4.0)
    assert calls == [4.0] and cache.invalid == {4.0: "CPU-starved"} and cache.probes == {}


class _StarvingBackend:
    """Attainment 1 up to x3; from x4 on every run is invalid (the CPU cannot keep up)."""

    kind = "emulated"
    label = "EMULATED: test"

    @contextlib.contextmanager
    def open_arm(self, arm, arm_dir):
        class Session:
            def run(self, rate: float, run_dir: Path, keep: bool) -> RunOutcome:
                d = str(run_dir)
                if rate >= 4.0:
                    why = "CPU-starved emulation: device idle 30%"
                    bad = {"validity": {"valid": False, "reasons": ["idle"]}}
                    return RunOutcome(
                        arm.name, rate, "invalid", {"slo_attainment": 0.2}, why, d, bad
                    )
                att = {"slo_attainment": 1.0 if rate <= 3.0 else 0.5}
                good = {"validity": {"valid": True, "busy_s": 1.0}}
                return RunOutcome(arm.name, rate, "ok", att, None, d, good)

        yield Session()


def test_run_ab_reports_invalid_probes_as_bounds(tmp_path: Path) -> None:
    names = ["sglang-mixed", "fairbatching-ft"]
    cfg = AbConfig(arms=tuple(names), capacity=CapacityConfig(start_rate=1.0, rel_tol=0.1))
    index = run_ab(_StarvingBackend(), resolve_arms(names, "emulated"), cfg, tmp_path, {})
    cap = json.loads((tmp_path / "sglang-mixed/capacity.json").read_text())
    assert cap["capacity"] == {"0.9": 2.0, "0.99": 2.0}
    assert cap["bounds"] == {"0.9": "lower", "0.99": "lower"}
    assert cap["invalid_probes"] == [
        {"rate_scale": 4.0, "reason": "CPU-starved emulation: device idle 30%"}
    ]
    assert 4.0 not in [p["rate_scale"] for p in cap["probes"]]
    assert index["arms"]["sglang-mixed"]["runs"]["x4"] == "invalid"
    data = load_ab(tmp_path)
    table = capacity_table(data).set_index("arm")
    assert table.at["fairbatching-ft", "bound_at_0.9"] == "lower"
    assert "stopped at invalid x4" in table.at["fairbatching-ft", "note"]
    ratios = ratio_table(data, 2.0)
    assert ratios["capacity_ratio_at_0.9"].isna().all()  # a bound is no measurement
    report = write_report(tmp_path).read_text()
    assert "| invalid |" in report and "lower" in report

"""Saturation limit: the run metrics it reads, the search on a fluid-queue backend whose limit
is known, resume, and an A/B that reports capacities as fractions of it (issue #15)."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.outcome import RunOutcome
from fairbatching_sglang.harness.saturation import (
    SATURATION_ARM,
    read_saturation,
    run_saturation,
)
from fairbatching_sglang.metrics import summarize

SPAN_S = 600.0  # the trace's arrival span at rate scale 1
LIMIT = 3.0  # the fluid device serves LIMIT x the trace's rate


def _records(arrival_s: np.ndarray, finish_s: np.ndarray) -> pd.DataFrame:
    n = arrival_s.shape[0]
    return pd.DataFrame(
        {
            "rid": [f"r{i}" for i in range(n)],
            "status": ["ok"] * n,
            "arrival_ms": arrival_s * 1000.0,
            "input_tokens": [10] * n,
            "output_tokens": [2] * n,
            "first_token_ms": arrival_s * 1000.0 + 100.0,
            "finish_ms": finish_s * 1000.0,
            "ttft_slo_ms": [1000.0] * n,
            "tpot_slo_ms": [50.0] * n,
            "token_times_ms": [
                [a * 1000.0 + 100.0, f * 1000.0] for a, f in zip(arrival_s, finish_s, strict=True)
            ],
        }
    )


def test_summary_has_makespan_drain_and_sustained_throughput() -> None:
    arrival = np.arange(100, dtype=np.float64)  # 1 req/s over 99 s
    s = summarize(_records(arrival, arrival + 1.0))  # keeps up: each done 1 s later
    assert s["makespan_s"] == pytest.approx(100.0)
    assert s["drain_s"] == pytest.approx(1.0)
    assert s["sustained_throughput_rps"] == pytest.approx(1.0)
    # Served at half the offered rate: the backlog grows, completions stretch to 200 s.
    slow = summarize(_records(arrival, 2.0 * arrival + 1.0))
    assert slow["throughput_rps"] == pytest.approx(100 / 99)  # the offered rate: blind to it
    assert slow["sustained_throughput_rps"] == pytest.approx(0.5, rel=0.01)
    assert slow["drain_s"] == pytest.approx(100.0)


class _FluidSession:
    def __init__(self, calls: list[float]) -> None:
        self.calls = calls

    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome:
        self.calls.append(rate)
        span = SPAN_S / rate
        drain = 2.0 + max(0.0, rate / LIMIT - 1.0) * span  # fluid queue past the limit
        summary = {
            "num_requests": 1000.0,
            "num_failed": 0.0,
            "makespan_s": span + drain,
            "drain_s": drain,
            "sustained_throughput_rps": 1000.0 / (span + drain),
        }
        return RunOutcome(SATURATION_ARM, rate, "ok", summary)


class _FluidBackend:
    kind = "simulated"
    label = "SIMULATED (fluid)"

    def __init__(self) -> None:
        self.calls: list[float] = []

    @contextlib.contextmanager
    def open_arm(self, arm, arm_dir):
        assert arm.name == SATURATION_ARM
        yield _FluidSession(self.calls)


def test_search_finds_the_fluid_limit_and_resumes(tmp_path: Path) -> None:
    be = _FluidBackend()
    search = CapacityConfig(rel_tol=0.01, max_probes=20)
    res = run_saturation(be, tmp_path, search, base_rate_rps=1000 / SPAN_S)
    # Sustained while (rate / LIMIT - 1) <= 5%: the limit is LIMIT x 1.05 within the tolerance.
    assert res.limit is not None and res.upper is not None
    assert res.limit <= LIMIT * 1.05 < res.upper <= res.limit * 1.01 + 1e-9
    assert res.reference_rate == 1 / 8 and res.reference_drain_s == pytest.approx(2.0)
    doc = read_saturation(tmp_path)
    assert doc is not None and doc["limit"] == res.limit and len(doc["probes"]) == len(be.calls)
    # A resume reuses every finished probe: nothing runs again, the same limit comes out.
    from fairbatching_sglang.harness.resume import finished_runs

    prior = finished_runs(tmp_path / "saturation", SATURATION_ARM)
    assert len(prior) == len(be.calls)
    be2 = _FluidBackend()
    again = run_saturation(be2, tmp_path, search, base_rate_rps=1000 / SPAN_S, prior=prior)
    assert be2.calls == [] and again.limit == res.limit


def test_failed_requests_are_not_sustained(tmp_path: Path) -> None:
    class Failing(_FluidSession):
        def run(self, rate, run_dir, keep_records):
            o = super().run(rate, run_dir, keep_records)
            failed = 50.0 if rate > 1.5 else 0.0
            return RunOutcome(o.arm, rate, "ok", {**o.summary, "num_failed": failed})

    class Backend(_FluidBackend):
        @contextlib.contextmanager
        def open_arm(self, arm, arm_dir):
            yield Failing(self.calls)

    res = run_saturation(Backend(), tmp_path, CapacityConfig(rel_tol=0.01), 1.0)
    assert res.limit is not None and res.limit <= 1.5 < res.upper


def test_sim_ab_reports_capacity_as_a_fraction_of_the_limit(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fairbatching_sglang.cli import app

    trace = Path(__file__).resolve().parents[2] / "traces/synthetic_conv_10min.csv"
    args = ["ab", "--trace", str(trace), "--backend", "sim", "--duration", "120",
            "--arms", "sglang-mixed", "--targets", "0.9", "--rel-tol", "0.1",
            "--out", str(tmp_path)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    sat = json.loads((tmp_path / "ab.json").read_text())["saturation"]
    assert sat["arm"] == SATURATION_ARM and sat["limit"] > 0
    cap = pd.read_csv(tmp_path / "capacity.csv").set_index("arm")
    frac = cap.at["sglang-mixed", "of_limit_at_0.9"]
    assert math.isclose(frac, cap.at["sglang-mixed", "capacity_at_0.9"] / sat["limit"])
    report = (tmp_path / "report.md").read_text()
    assert "## Saturation limit" in report and f"x{sat['limit']:.4g}" in report
    # The saturation probes are no arm of the A/B.
    assert "sglang-mixed" in report and "saturation" not in set(
        pd.read_csv(tmp_path / "runs.csv")["arm"]
    )
    # A limit below a capacity the arms served is no limit (the drain criterion failed, as on
    # heavy-tailed outputs): the report says so and shows no fraction of it.
    ab = json.loads((tmp_path / "ab.json").read_text())
    ab["saturation"]["limit"] = cap.at["sglang-mixed", "capacity_at_0.9"] / 10.0
    (tmp_path / "ab.json").write_text(json.dumps(ab))
    from fairbatching_sglang.report.build import write_report

    report = write_report(tmp_path).read_text()
    assert "Not a limit for this workload" in report and "of_limit" not in report
    assert "of_limit_at_0.9" not in pd.read_csv(tmp_path / "capacity.csv").columns


def test_limit_contradiction_needs_a_capacity_beyond_the_tolerance() -> None:
    from fairbatching_sglang.report.tables import LIMIT_CONTRADICTION_TOL, limit_contradiction

    assert limit_contradiction(2.0, {"a": 2.0 * LIMIT_CONTRADICTION_TOL, "b": None}) is None
    assert limit_contradiction(2.0, {"a": math.nan, "b": 1.0}) is None
    assert limit_contradiction(None, {"a": 100.0}) is None
    assert limit_contradiction(2.0, {"a": 2.2, "b": 6.75}) == ("b", 6.75)

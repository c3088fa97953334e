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
    BACKLOG_TOL,
    SATURATION_ARMS,
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
    # Late arrivals (the last 10%, arrivals 90-99): each waits as long as it arrived late.
    assert s["late_e2e_p50_s"] == pytest.approx(1.0)
    assert slow["late_e2e_p50_s"] == pytest.approx(np.median(np.arange(90, 100)) + 1.0)
    # Their first token comes 100 ms after arrival in both (_records): no wait in a queue.
    assert s["late_ttft_p50_s"] == pytest.approx(0.1) == slow["late_ttft_p50_s"]


def test_late_latency_is_a_median_and_counts_late_failures_as_slowest() -> None:
    arrival = np.arange(100, dtype=np.float64)
    finish = arrival + 1.0
    finish[-1] += 5000.0  # one very long late answer does not move the median
    rec = _records(arrival, finish)
    assert summarize(rec)["late_e2e_p50_s"] == pytest.approx(1.0)
    # Four of the ten late requests fail: they count as the slowest, not as absent, so the
    # median moves up to between the fifth and sixth fastest (1 s and the 5001-s answer).
    rec.loc[90:93, "status"] = "failed"
    assert summarize(rec)["late_e2e_p50_s"] == pytest.approx((1.0 + 5001.0) / 2)
    rec.loc[90:95, "status"] = "failed"  # most failed: no latency to speak of
    assert math.isnan(summarize(rec)["late_e2e_p50_s"])


LATE_AT = 0.95  # the late arrivals' median arrives at 95% of the span
# At the limit the device runs slower per step: a request takes up to 1.5x its low-load time.
SLOWDOWN_AT_LIMIT = 0.5


class _FluidSession:
    """A fluid queue served at `limit` x the trace's rate: past it, a request arriving at t
    waits (rate / limit - 1) t. Below it a loaded device is slower per step (SLOWDOWN_AT_LIMIT),
    and `long_answer_s` adds one answer that long arriving last, slowed down alike (its finish
    is the drain: the heavy tail that fooled the drain criterion)."""

    def __init__(
        self,
        arm: str,
        calls: list[tuple[str, float]],
        limit: float,
        long_answer_s: float = 0.0,
        median_answer_s: float = 2.0,
    ) -> None:
        self.arm, self.calls, self.limit = arm, calls, limit
        self.long_answer_s, self.median_answer_s = long_answer_s, median_answer_s

    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome:
        self.calls.append((self.arm, rate))
        span = SPAN_S / rate
        slow = 1.0 + SLOWDOWN_AT_LIMIT * min(rate / self.limit, 1.0)
        queue_frac = max(0.0, rate / self.limit - 1.0)
        wait = queue_frac * LATE_AT * span  # the late arrivals' median wait in the queue
        drain = max(2.0 * slow, self.long_answer_s * slow) + queue_frac * span
        summary = {
            "num_requests": 1000.0,
            "num_failed": 0.0,
            "makespan_s": span + drain,
            "drain_s": drain,
            "late_e2e_p50_s": self.median_answer_s * slow + wait,
            "late_ttft_p50_s": 0.05 * slow + wait,
            "sustained_throughput_rps": 1000.0 / (span + drain),
        }
        return RunOutcome(self.arm, rate, "ok", summary)


class _FluidBackend:
    """Each saturation schedule is a fluid queue; the second serves 10% less by default."""

    kind = "simulated"
    label = "SIMULATED (fluid)"

    def __init__(
        self,
        long_answer_s: float = 0.0,
        limits: dict[str, float] | None = None,
        median_answer_s: float = 2.0,
    ) -> None:
        self.calls: list[tuple[str, float]] = []
        self.long_answer_s, self.median_answer_s = long_answer_s, median_answer_s
        self.limits = limits or {SATURATION_ARMS[0]: LIMIT, SATURATION_ARMS[1]: 0.9 * LIMIT}

    @contextlib.contextmanager
    def open_arm(self, arm, arm_dir):
        assert arm.name in SATURATION_ARMS
        yield _FluidSession(
            arm.name, self.calls, self.limits[arm.name], self.long_answer_s, self.median_answer_s
        )


# Sustained while (rate / LIMIT - 1) x LATE_AT <= 5%, less the steady slowdown's share.
FLUID_LIMIT = LIMIT * (1.0 + BACKLOG_TOL / LATE_AT)


def test_search_finds_the_fluid_limit_and_resumes(tmp_path: Path) -> None:
    be = _FluidBackend()
    search = CapacityConfig(rel_tol=0.01, max_probes=20)
    res = run_saturation(be, tmp_path, search, base_rate_rps=1000 / SPAN_S)
    assert res.limit is not None and res.upper is not None
    # The steady slowdown at the limit (+25 ms of first-token time) costs it nearly nothing.
    assert 0.99 * FLUID_LIMIT < res.limit <= FLUID_LIMIT
    assert res.upper <= res.limit * 1.01 + 1e-9
    ref_late = 0.05 * (1.0 + SLOWDOWN_AT_LIMIT / 8 / LIMIT)
    assert res.reference_rate == 1 / 8 and res.late_figure == "late_ttft_p50_s"
    assert res.reference_late_s == pytest.approx(ref_late)
    # Both schedules were searched; the faster one set the limit.
    assert res.arm == SATURATION_ARMS[0] and {a for a, _ in be.calls} == set(SATURATION_ARMS)
    slower = {s["arm"]: s["limit"] for s in res.schedules}[SATURATION_ARMS[1]]
    assert 0.99 * 0.9 * FLUID_LIMIT < slower <= 0.9 * FLUID_LIMIT
    doc = read_saturation(tmp_path)
    assert doc is not None and doc["limit"] == res.limit and len(doc["schedules"]) == 2
    assert len(doc["probes"]) == sum(a == SATURATION_ARMS[0] for a, _ in be.calls)
    # A resume reuses every finished probe: nothing runs again, the same limit comes out.
    from fairbatching_sglang.harness.resume import finished_runs

    prior = {a: finished_runs(tmp_path / "saturation", a) for a in SATURATION_ARMS}
    assert sum(map(len, prior.values())) == len(be.calls)
    be2 = _FluidBackend()
    again = run_saturation(be2, tmp_path, search, base_rate_rps=1000 / SPAN_S, prior=prior)
    assert be2.calls == [] and again.limit == res.limit


def test_the_limit_is_the_fastest_schedules(tmp_path: Path) -> None:
    fast = {SATURATION_ARMS[0]: 0.5 * LIMIT, SATURATION_ARMS[1]: LIMIT}
    res = run_saturation(_FluidBackend(limits=fast), tmp_path, CapacityConfig(rel_tol=0.01), 1.0)
    assert res.arm == SATURATION_ARMS[1] and 0.98 * FLUID_LIMIT < res.limit <= FLUID_LIMIT


def test_a_backend_whose_default_chunk_is_2048_searches_once(tmp_path: Path) -> None:
    class Chunk2048(_FluidBackend):
        def setting(self, field_name: str) -> int:
            assert field_name == "chunked_prefill_size"
            return 2048

    be = Chunk2048()
    res = run_saturation(be, tmp_path, CapacityConfig(rel_tol=0.01), 1.0)
    assert {a for a, _ in be.calls} == {SATURATION_ARMS[0]} and len(res.schedules) == 1


def test_one_long_late_answer_does_not_set_the_limit(tmp_path: Path) -> None:
    # One 200-s answer arriving last, 1.5x slower at the limit: its drain alone exceeds 5% of
    # the span from about x1 on (the drain criterion's limit), the late median does not.
    be = _FluidBackend(long_answer_s=200.0)
    res = run_saturation(be, tmp_path, CapacityConfig(rel_tol=0.01, max_probes=20), 1.0)
    assert res.limit is not None and 0.98 * FLUID_LIMIT < res.limit <= FLUID_LIMIT
    drain_said = [
        p["rate_scale"]
        for p in res.probes
        if (p["drain_s"] - 200.0 * (1 + SLOWDOWN_AT_LIMIT / 8 / LIMIT)) * p["rate_scale"]
        > BACKLOG_TOL * SPAN_S
    ]
    assert drain_said and min(drain_said) < 0.75 * FLUID_LIMIT  # what the drain criterion said


def test_a_steady_slowdown_without_a_queue_is_sustained(tmp_path: Path) -> None:
    # Median answers of 60 s, 1.5x slower near the limit: the late arrivals' latency grows by
    # ~30 s, 16% of the span there, while nobody waits (the reasoning preset's case).
    be = _FluidBackend(median_answer_s=60.0)
    res = run_saturation(be, tmp_path, CapacityConfig(rel_tol=0.01, max_probes=20), 1.0)
    assert res.limit is not None and 0.99 * FLUID_LIMIT < res.limit <= FLUID_LIMIT
    near = [p for p in res.probes if p["sustained"] and p["rate_scale"] > 0.9 * LIMIT]
    ref_e2e = res.probes[0]["late_e2e_p50_s"]
    assert near and all(
        (p["late_e2e_p50_s"] - ref_e2e) * p["rate_scale"] / SPAN_S > 0.1 for p in near
    )


def test_failed_requests_are_not_sustained(tmp_path: Path) -> None:
    class Failing(_FluidSession):
        def run(self, rate, run_dir, keep_records):
            o = super().run(rate, run_dir, keep_records)
            failed = 50.0 if rate > 1.5 else 0.0
            return RunOutcome(o.arm, rate, "ok", {**o.summary, "num_failed": failed})

    class Backend(_FluidBackend):
        @contextlib.contextmanager
        def open_arm(self, arm, arm_dir):
            yield Failing(arm.name, self.calls, LIMIT)

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
    assert sat["arm"] in SATURATION_ARMS and sat["limit"] > 0
    cap = pd.read_csv(tmp_path / "capacity.csv").set_index("arm")
    frac = cap.at["sglang-mixed", "of_limit_at_0.9"]
    assert math.isclose(frac, cap.at["sglang-mixed", "capacity_at_0.9"] / sat["limit"])
    report = (tmp_path / "report.md").read_text()
    assert "## Saturation limit" in report and f"x{sat['limit']:.4g}" in report
    # The saturation probes are no arm of the A/B.
    assert "sglang-mixed" in report and "saturation" not in set(
        pd.read_csv(tmp_path / "runs.csv")["arm"]
    )
    # A limit below a capacity the arms served is no limit (the search was fooled, as the drain
    # criterion was on heavy-tailed outputs): the report says so and shows no fraction of it.
    ab = json.loads((tmp_path / "ab.json").read_text())
    ab["saturation"]["limit"] = cap.at["sglang-mixed", "capacity_at_0.9"] / 10.0
    (tmp_path / "ab.json").write_text(json.dumps(ab))
    from fairbatching_sglang.report.build import write_report

    report = write_report(tmp_path).read_text()
    assert "Not a limit for this workload" in report and "of_limit" not in report
    assert "of_limit_at_0.9" not in pd.read_csv(tmp_path / "capacity.csv").columns
    # A capacity above the limit but within the tolerance is shown, and named as above it.
    ab["saturation"]["limit"] = cap.at["sglang-mixed", "capacity_at_0.9"] / 1.2
    (tmp_path / "ab.json").write_text(json.dumps(ab))
    report = write_report(tmp_path).read_text()
    assert "Above the limit: `sglang-mixed`" in report and "Not a limit" not in report
    assert pd.read_csv(tmp_path / "capacity.csv").at[0, "of_limit_at_0.9"] == pytest.approx(1.2)


def test_resume_runs_again_a_probe_from_before_the_figure(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fairbatching_sglang.cli import app
    from fairbatching_sglang.harness.saturation import LATE_FIGURE

    trace = Path(__file__).resolve().parents[2] / "traces/synthetic_conv_10min.csv"
    args = ["ab", "--trace", str(trace), "--backend", "sim", "--duration", "60",
            "--arms", "sglang-mixed", "--targets", "0.9", "--rel-tol", "0.1",
            "--no-tune-baselines", "--out", str(tmp_path)]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    first = json.loads((tmp_path / "ab.json").read_text())["saturation"]
    # The reference probe as an older version wrote it: no late-arrival figure.
    ref = tmp_path / "saturation" / SATURATION_ARMS[0] / "x0.125" / "status.json"
    doc = json.loads(ref.read_text())
    del doc["summary"][LATE_FIGURE]
    ref.write_text(json.dumps(doc))
    res = CliRunner().invoke(app, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "ab.json").read_text())["saturation"]
    assert again["limit"] == first["limit"] and again.get("note") is None
    assert LATE_FIGURE in json.loads(ref.read_text())["summary"]  # run again, not judged blind


def test_limit_contradiction_needs_a_capacity_beyond_the_tolerance() -> None:
    from fairbatching_sglang.report.tables import LIMIT_CONTRADICTION_TOL, limit_contradiction

    assert limit_contradiction(2.0, {"a": 2.0 * LIMIT_CONTRADICTION_TOL, "b": None}) is None
    assert limit_contradiction(2.0, {"a": math.nan, "b": 1.0}) is None
    assert limit_contradiction(None, {"a": 100.0}) is None
    assert limit_contradiction(2.0, {"a": 2.2, "b": 6.75}) == ("b", 6.75)

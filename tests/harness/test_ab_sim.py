"""run_ab end to end with the simulated backend on a small generated trace."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.harness.ab import AbConfig, run_ab
from fairbatching_sglang.harness.arms import resolve_arms
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.outcome import RunOutcome
from fairbatching_sglang.harness.sim_backend import SimBackend
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.report import load_ab, write_report
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.workload import load_trace

ROOT = Path(__file__).resolve().parents[2]


def _backend() -> SimBackend:
    table = load_trace(ROOT / "traces/synthetic_conv_10min.csv", max_rows=250)
    slo = SloTable(SloTargets(1000.0, 50.0))
    return SimBackend(table, load_profile("h100-llama3.1-8b"), slo, SimConfig(), "test")


def test_sim_ab_end_to_end(tmp_path: Path) -> None:
    be = _backend()
    arms = resolve_arms(["sglang-default", "fairbatching"], "sim")
    cfg = AbConfig(
        arms=("sglang-default", "fairbatching"),
        rates=(1.0,),
        capacity=CapacityConfig(start_rate=2.0, rel_tol=0.1, max_probes=6),
    )
    seen: list[RunOutcome] = []
    index = run_ab(be, arms, cfg, tmp_path, {"command": "test"}, seen.append)
    assert index["label"].startswith("SIMULATED")
    for arm in ("sglang-default", "fairbatching"):
        assert (tmp_path / arm / "x1" / "requests.parquet").exists()
        cap = json.loads((tmp_path / arm / "capacity.json").read_text())
        assert cap["status"] == "ok" and cap["capacity"]["0.9"] is not None
        assert len(cap["probes"]) >= 3
        for p in cap["probes"]:
            st = json.loads(
                (tmp_path / arm / f"x{p['rate_scale']:.6g}" / "status.json").read_text()
            )
            assert abs(st["summary"]["slo_attainment"] - p["slo_attainment"]) < 1e-12
    detail = index["detail_rate"]
    assert (tmp_path / "fairbatching" / f"x{detail:.6g}" / "steps.parquet").exists()
    report = write_report(tmp_path, "test report")
    text = report.read_text()
    assert "SIMULATED" in text and "sglang-default" in text and "fairbatching" in text
    assert (tmp_path / "plots" / "timeline.png").exists()
    assert len(load_ab(tmp_path).runs) == len({(o.arm, o.rate_scale) for o in seen})


class _FlakyBackend:
    """Arm "sglang-mixed" fails to start; "sglang-default" raises mid-run at rate 2."""

    kind = "measured"
    label = "MEASURED ON FAKE GPU"

    @contextlib.contextmanager
    def open_arm(self, arm, arm_dir):
        yield _FlakySession(arm.name)


class _FlakySession:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome:
        if self.name == "sglang-mixed":
            return RunOutcome(self.name, rate, "start_failed", error="no server")
        if self.name == "sglang-default" and rate == 2.0:
            raise RuntimeError("server crashed")
        return RunOutcome(self.name, rate, "ok", {"slo_attainment": 1.0 if rate <= 1.5 else 0.5})


def test_failed_arms_do_not_lose_others(tmp_path: Path) -> None:
    names = ["sglang-default", "sglang-mixed", "fairbatching"]
    cfg = AbConfig(arms=tuple(names), rates=(1.0, 2.0), capacity=CapacityConfig(max_probes=6))
    index = run_ab(_FlakyBackend(), resolve_arms(names, "gpu"), cfg, tmp_path, {})
    assert index["arms"]["sglang-mixed"]["status"] == "start_failed"
    assert index["arms"]["sglang-default"]["runs"]["x2"] == "error"
    assert index["arms"]["fairbatching"]["status"] == "ok"
    assert 1.5 <= index["arms"]["fairbatching"]["capacity"]["0.9"] < 2.0
    err = json.loads((tmp_path / "sglang-default" / "x2" / "status.json").read_text())
    assert "server crashed" in err["error"]
    text = write_report(tmp_path).read_text()
    assert "MEASURED ON FAKE GPU" in text and "start_failed" in text


def test_harness_error_is_no_measurement(tmp_path: Path) -> None:
    # sglang-default's run at x2 raises (a harness fault): the search must stop there with a
    # lower bound, not bisect between 1 and 2 as if the server had failed every request.
    cfg = AbConfig(arms=("sglang-default",), capacity=CapacityConfig(max_probes=6))
    index = run_ab(_FlakyBackend(), resolve_arms(["sglang-default"], "gpu"), cfg, tmp_path, {})
    cap = json.loads((tmp_path / "sglang-default" / "capacity.json").read_text())
    assert [p["rate_scale"] for p in cap["probes"]] == [1.0]
    assert cap["bounds"]["0.9"] == "lower" and cap["capacity"]["0.9"] == 1.0
    assert "harness error" in cap["invalid_probes"][0]["reason"]
    assert index["arms"]["sglang-default"]["runs"]["x2"] == "error"

"""`fairbatching ab --out`: a non-empty directory is refused unless --resume (same configuration
hash) or --force; a resume reuses finished runs and redoes interrupted ones (issue #14.1, 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.harness import sim_backend
from fairbatching_sglang.harness.ab import AbConfig, run_ab
from fairbatching_sglang.harness.arms import resolve_arms
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.resume import finished_by_arm
from tests.harness.test_ab_sim import _backend

ROOT = Path(__file__).resolve().parents[2]
TRACE = str(ROOT / "traces/synthetic_conv_10min.csv")


def _ab(out: Path, *args: str) -> tuple[int, str]:
    base = ["ab", "--backend", "sim", "--trace", TRACE, "--max-rows", "40", "--out", str(out)]
    res = CliRunner().invoke(app, [*base, "--rates", "1", "--no-capacity", *args])
    return res.exit_code, " ".join(res.output.replace("│", " ").split())


def test_refuse_resume_force(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    code, text = _ab(out, "--arms", "sglang-mixed")
    assert code == 0, text
    code, text = _ab(out, "--arms", "sglang-default")
    assert code == 2 and "is not empty" in text and "--force" in text
    code, text = _ab(out, "--arms", "sglang-default", "--slo-ttft-ms", "500", "--resume")
    assert code == 2 and "another configuration" in text
    assert "differing fields: arms, slo.ttft_slo_ms." in text
    # --force: the earlier arm is gone from the directory and from the report's tables.
    code, text = _ab(out, "--arms", "sglang-default", "--force")
    assert code == 0, text
    assert set(pd.read_csv(out / "runs.csv")["arm"]) == {"sglang-default"}
    assert not (out / "sglang-mixed").exists()
    assert json.loads((out / "ab.json").read_text())["config_hash"]
    # The same configuration resumes; nothing is run again.
    before = (out / "sglang-default/x1/status.json").stat().st_mtime_ns
    code, text = _ab(out, "--arms", "sglang-default", "--resume")
    assert code == 0 and "1 finished run(s) reused" in text, text
    assert (out / "sglang-default/x1/status.json").stat().st_mtime_ns == before
    code, text = _ab(out, "--arms", "sglang-default", "--resume", "--force")
    assert code == 2 and "exclude each other" in text


def test_resume_without_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ab.json").write_text("{}\n")  # a run made before hashes existed
    code, text = _ab(tmp_path, "--arms", "sglang-mixed", "--resume")
    assert code == 2 and "no configuration hash" in text


def test_resume_redoes_only_interrupted_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arms = resolve_arms(["sglang-default"], "sim")
    cfg = AbConfig(
        arms=("sglang-default",),
        capacity_targets=(0.9,),
        capacity=CapacityConfig(start_rate=2.0, rel_tol=0.2, max_probes=6),
    )
    first = run_ab(_backend(), arms, cfg, tmp_path, {})
    probes = sorted((tmp_path / "sglang-default").glob("x*/status.json"))
    assert len(probes) >= 3
    probes[1].unlink()  # an interrupted probe: its run directory has no status.json
    ran: list[float] = []
    real_run = sim_backend.SimArmSession.run

    def counting(self, rate, run_dir, keep):  # type: ignore[no-untyped-def]
        ran.append(rate)
        return real_run(self, rate, run_dir, keep)

    monkeypatch.setattr(sim_backend.SimArmSession, "run", counting)
    prior = finished_by_arm(tmp_path, ["sglang-default"])
    again = run_ab(_backend(), arms, cfg, tmp_path, {}, prior_runs=prior)
    assert ran == [float(probes[1].parent.name[1:])]
    assert again["arms"] == first["arms"]  # same capacities, same runs: a deterministic search


def test_ctrl_c_keeps_finished_runs_then_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = sim_backend.SimArmSession.run
    calls: list[float] = []

    def interrupted(self, rate, run_dir, keep):  # type: ignore[no-untyped-def]
        calls.append(rate)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(self, rate, run_dir, keep)

    monkeypatch.setattr(sim_backend.SimArmSession, "run", interrupted)
    code, text = _ab(tmp_path / "ab2", "--arms", "sglang-default,sglang-mixed")
    assert code == 130 and "interrupted: 1 finished run(s) kept" in text, text
    monkeypatch.setattr(sim_backend.SimArmSession, "run", real_run)
    code, text = _ab(tmp_path / "ab2", "--arms", "sglang-default,sglang-mixed", "--resume")
    assert code == 0 and "1 finished run(s) reused" in text, text


def test_every_run_of_an_arm_failed_exits_nonzero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = sim_backend.SimArmSession.run

    def broken(self, rate, run_dir, keep):  # type: ignore[no-untyped-def]
        if self.arm.name == "sglang-mixed":
            raise RuntimeError("harness bug")
        return real_run(self, rate, run_dir, keep)

    monkeypatch.setattr(sim_backend.SimArmSession, "run", broken)
    code, text = _ab(tmp_path / "ab", "--arms", "sglang-default,sglang-mixed")
    assert code == 1 and "no run of arm(s) sglang-mixed succeeded" in text, text
    assert (tmp_path / "ab/report.md").exists()  # the report is still written


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rates", "-1"], "--rates"),
        (["--rates", "nan"], "--rates"),
        (["--start-rate", "0"], "--start-rate"),
        (["--start-rate", "nan"], "--start-rate"),
        (["--max-probes", "0"], "--max-probes"),
        (["--targets", "1.5"], "--targets"),
        (["--targets", ""], "--targets"),
        (["--rel-tol", "-0.1"], "--rel-tol"),
        (["--detail-rate", "0"], "--detail-rate"),
        (["--slo-ttft-ms", "0"], "--slo-ttft-ms"),
    ],
)
def test_bad_numbers_rejected_at_parse_time(tmp_path: Path, args: list[str], option: str) -> None:
    out = tmp_path / "ab"
    base = ["ab", "--backend", "sim", "--trace", TRACE, "--max-rows", "20", "--out", str(out)]
    res = CliRunner().invoke(app, [*base, *args])
    text = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and f"Invalid value for '{option}'" in text, text
    assert not out.exists()  # nothing ran


def test_default_device_is_realistic_and_reported(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    code, text = _ab(out, "--arms", "sglang-mixed")
    assert code == 0, text
    meta = json.loads((out / "sglang-mixed" / "x1" / "run.json").read_text())
    assert meta["device_model"]["spec"] == "realistic"
    assert meta["device_model"]["bias"] == 0.05
    assert "SIMULATED (device model 'realistic', planner profile" in (out / "report.md").read_text()

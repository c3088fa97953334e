"""`ab --tune-baselines` (issue #13.5): each stock arm's knob is swept with a capacity search per
value, the best setting is reported as <arm>@tuned, and ratios are against the best stock arm."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.harness.ab import AbConfig, TuneConfig, all_arm_names, run_ab
from fairbatching_sglang.harness.arms import ARMS, Arm, resolve_arms, setting_arm
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.outcome import RunOutcome
from fairbatching_sglang.harness.resume import finished_by_arm
from fairbatching_sglang.harness.sim_backend import SimBackend
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.report import load_ab, write_report
from fairbatching_sglang.report.tables import best_stock_arm, ratio_table
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.workload import load_trace

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "traces/synthetic_code_10min.csv"
SEARCH = CapacityConfig(start_rate=1.0, rel_tol=0.1, max_probes=6)


class _KnobBackend:
    """Attainment 1 up to a capacity that depends on the arm's knob setting, 0 above it:
    the capacity search finds `caps[(policy, value)]` (within rel_tol)."""

    kind = "simulated"
    label = "SIMULATED (knob test)"

    def __init__(self, caps: dict[tuple[str, int], float]) -> None:
        self.caps = caps
        self.sim_config = SimConfig()
        self.calls: list[tuple[str, float]] = []

    def setting(self, field_name: str) -> int:
        value: int = getattr(self.sim_config, field_name)
        return value

    @contextlib.contextmanager
    def open_arm(self, arm: Arm, arm_dir: Path) -> Iterator[object]:
        backend = self

        class Session:
            def run(self, rate: float, run_dir: Path, keep: bool) -> RunOutcome:
                backend.calls.append((arm.name, rate))
                if arm.is_fairbatching:
                    cap = 3.0
                else:
                    value = next(iter(arm.sim_overrides.values()), None)
                    if value is None:
                        value = backend.setting(
                            "sarathi_token_budget"
                            if arm.sim_policy == "sarathi"
                            else "chunked_prefill_size"
                        )
                    cap = backend.caps[(arm.sim_policy, value)]
                att = 1.0 if rate <= cap else 0.0
                return RunOutcome(arm.name, rate, "ok", {"slo_attainment": att}, None, str(run_dir))

        yield Session()


def _cfg(arms: tuple[str, ...], **sweeps: tuple[int, ...]) -> AbConfig:
    return AbConfig(
        arms=arms,
        capacity=SEARCH,
        capacity_targets=(0.9,),
        tune=TuneConfig(tuple((a.replace("_", "-"), v) for a, v in sweeps.items())),
    )


def test_best_setting_wins_and_default_is_a_candidate(tmp_path: Path) -> None:
    caps = {("sarathi", 1024): 2.2, ("sarathi", 2048): 1.2, ("sarathi", 4096): 0.7}
    caps |= {("sglang-mixed", 4096): 0.9, ("sglang-mixed", 8192): 1.0}
    be = _KnobBackend(caps)
    arms = ("sglang-mixed", "sarathi", "fairbatching-ft")
    cfg = _cfg(arms, sarathi=(1024, 4096), sglang_mixed=(4096,))
    progress: list[str] = []
    index = run_ab(be, resolve_arms(arms, "sim"), cfg, tmp_path, {}, on_progress=progress.append)
    tun = index["tuning"]
    assert tun["sarathi"]["best_value"] == 1024 and tun["sarathi"]["best_arm"] == "sarathi@1024"
    # The default (8192) beats the only other chunk size: the tuned arm is the default arm.
    assert tun["sglang-mixed"]["best_value"] == 8192
    assert tun["sglang-mixed"]["best_arm"] == "sglang-mixed"
    assert tun["sarathi"]["values"] == [1024, 2048, 4096]  # the default joined the sweep
    assert not (tmp_path / "sarathi@2048").exists()  # ... as the default arm, not run again
    assert (tmp_path / "sarathi@1024" / "capacity.json").exists()
    assert any(p.startswith("tuning sarathi: sarathi_token_budget=1024 (1/2)") for p in progress)
    assert any(p.startswith("tuned sarathi: sarathi_token_budget=1024") for p in progress)
    # The winner also ran at the common rate (latency table of sarathi@tuned).
    detail = index["detail_rate"]
    assert ("sarathi@1024", detail) in be.calls

    data = load_ab(tmp_path)
    assert data.arms == [
        "sglang-mixed", "sglang-mixed@tuned", "sarathi", "sarathi@tuned", "fairbatching-ft",
    ]  # fmt: skip
    for arm in ("sarathi", "sglang-mixed"):
        tuned = data.capacity[f"{arm}@tuned"]["capacity"]["0.9"]
        assert tuned >= data.capacity[arm]["capacity"]["0.9"]
    assert best_stock_arm(data) == "sarathi@tuned"
    text = write_report(tmp_path).read_text()
    assert "Best stock arm: **`sarathi@tuned`** (sarathi_token_budget=1024)" in text
    assert "## Baseline tuning" in text and (tmp_path / "tuning.csv").exists()
    ratios = pd.read_csv(tmp_path / "ratios.csv")
    head = ratios[ratios["vs_best_stock"]]
    assert list(head["stock_arm"]) == ["sarathi@tuned"]
    fb = data.capacity["fairbatching-ft"]["capacity"]["0.9"]
    best = data.capacity["sarathi@tuned"]["capacity"]["0.9"]
    assert math.isclose(head["capacity_ratio_at_0.9"].iloc[0], fb / best)
    assert ratios.iloc[0]["stock_arm"] == "sarathi@tuned"  # headline row first


def test_ties_keep_the_default_setting(tmp_path: Path) -> None:
    caps = {("sarathi", v): 1.5 for v in (512, 2048, 8192)}
    cfg = _cfg(("sarathi",), sarathi=(512, 8192))
    index = run_ab(_KnobBackend(caps), [ARMS["sarathi"]], cfg, tmp_path, {})
    assert index["tuning"]["sarathi"]["best_value"] == 2048
    data = load_ab(tmp_path)
    assert best_stock_arm(data) == "sarathi"  # the tuned alias only equals it


def test_resume_reuses_every_sweep_point(tmp_path: Path) -> None:
    caps = {("sarathi", 1024): 2.2, ("sarathi", 2048): 1.2}
    cfg = _cfg(("sarathi", "fairbatching-ft"), sarathi=(1024,))
    arms = resolve_arms(cfg.arms, "sim")
    first = _KnobBackend(caps)
    run_ab(first, arms, cfg, tmp_path, {})
    names = all_arm_names(cfg, first.setting)
    assert names == ["sarathi", "fairbatching-ft", "sarathi@1024"]
    again = _KnobBackend(caps)
    index = run_ab(again, arms, cfg, tmp_path, {}, prior_runs=finished_by_arm(tmp_path, names))
    assert again.calls == []  # nothing ran twice
    assert index["tuning"]["sarathi"]["best_value"] == 1024


def test_tuned_arm_never_worse_on_a_real_trace(tmp_path: Path) -> None:
    table = load_trace(TRACE, start_s=0, duration_s=90)
    be = SimBackend(
        table, load_profile("h100-llama3.1-8b"), SloTable(SloTargets(1000.0, 50.0)),
        SimConfig(), "test",
    )  # fmt: skip
    arms = ("sglang-default", "sarathi", "fairbatching-ft")
    cfg = AbConfig(
        arms=arms,
        capacity=CapacityConfig(start_rate=1.0, rel_tol=0.1, max_probes=8),
        tune=TuneConfig((("sglang-default", (4096,)), ("sarathi", (1024, 4096)))),
    )
    index = run_ab(be, resolve_arms(arms, "sim"), cfg, tmp_path, {"command": "test"})
    data = load_ab(tmp_path)
    for arm in ("sglang-default", "sarathi"):
        t = index["tuning"][arm]
        caps = {p["value"]: p["capacity"]["0.9"] for p in t["points"]}
        assert caps[t["best_value"]] == max(caps.values())
        # Never worse at the ranking target (the first; 0.99 only breaks ties).
        tuned = data.capacity[f"{arm}@tuned"]["capacity"]["0.9"]
        assert tuned >= data.capacity[arm]["capacity"]["0.9"]
    # A sweep point's runs really ran with its setting (run.json's sim_config).
    run = next((tmp_path / "sarathi@1024").glob("x*/run.json"))
    assert json.loads(run.read_text())["sim_config"]["sarathi_token_budget"] == 1024
    best = best_stock_arm(data)
    r = ratio_table(data, data.detail_rate)
    assert set(r[r["vs_best_stock"]]["stock_arm"]) == {best}
    stock_caps = [
        data.capacity[a]["capacity"]["0.9"] for a in data.arms if not a.startswith("fairbatching")
    ]
    assert data.capacity[best]["capacity"]["0.9"] == max(stock_caps)
    assert f"Best stock arm: **`{best}`**" in write_report(tmp_path).read_text()


def test_setting_arms() -> None:
    a = setting_arm("sglang-mixed", 4096)
    assert a.name == "sglang-mixed@4096" and a.base_name == "sglang-mixed"
    assert a.sim_overrides == {"chunked_prefill_size": 4096}
    assert a.gpu_flags(SloTargets(1000.0, 50.0), "p") == [
        "--enable-mixed-chunk", "--chunked-prefill-size", "4096",
    ]  # fmt: skip
    (s,) = resolve_arms(["sarathi@1024"], "sim")
    assert s.sim_overrides == {"sarathi_token_budget": 1024}
    assert resolve_arms(["sglang-default@2048"], "emulated")[0].server_flags[-1] == "2048"
    for bad, why in (
        ("sarathi@tuned", "what --tune-baselines reports"),
        ("sarathi@0", "integer N >= 1"),
        ("sarathi@big", "integer N >= 1"),
        ("fairbatching@4", "unknown arm"),
    ):
        with pytest.raises(ValueError, match=why):
            resolve_arms([bad], "sim")
    with pytest.raises(ValueError, match="only in the simulator"):
        resolve_arms(["sarathi@1024"], "gpu")
    with pytest.raises(ValueError, match="--tune-baselines needs the capacity search"):
        AbConfig(arms=("sarathi",), capacity=None, tune=TuneConfig((("sarathi", (1024,)),)))


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["ab", "--trace", str(TRACE), "--backend", "sim", *args])
    return res.exit_code, " ".join(res.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--tune-baselines", "--tune-sarathi-token-budget", "0,1024", "--arms", "sarathi"],
         "'--tune-sarathi-token-budget': 0 must be >= 1"),
        (["--tune-baselines", "--tune-chunked-prefill-size", "4k"],
         "'--tune-chunked-prefill-size': '4k' is not an integer"),
        (["--tune-baselines", "--tune-chunked-prefill-size", " , "],
         "'--tune-chunked-prefill-size': at least one value is needed"),
        (["--tune-chunked-prefill-size", "4096"],
         "--tune-chunked-prefill-size needs --tune-baselines"),
        (["--tune-baselines", "--tune-sarathi-token-budget", "1024"],
         "--tune-sarathi-token-budget: no arm in --arms uses it (sarathi)"),
        (["--tune-baselines", "--arms", "fairbatching"],
         "--tune-baselines: none of --arms has a knob to tune"),
        (["--tune-baselines", "--no-capacity"], "--tune-baselines needs the capacity search"),
        (["--arms", "sarathi@tuned"], "what --tune-baselines reports"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_sweeps(tmp_path: Path, args: list[str], expect: str) -> None:
    code, text = _cli("--out", str(tmp_path / "o"), *args)
    assert code == 2 and expect in text, text
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_cli_tuning_is_sim_only(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["ab", "--trace", str(TRACE), "--backend", "emulated", "--tune-baselines",
         "--out", str(tmp_path / "o")],
    )  # fmt: skip
    text = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and "--tune-baselines: sim backend only" in text


def test_cli_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    args = [
        "--duration", "60", "--arms", "sarathi,fairbatching-ft", "--tune-baselines",
        "--tune-sarathi-token-budget", "1024", "--rel-tol", "0.2", "--max-probes", "5",
        "--targets", "0.9", "--out", str(out),
    ]  # fmt: skip
    code, text = _cli(*args)
    assert code == 0, text
    assert "tuning sarathi: sarathi_token_budget=1024 (1/1)" in text
    report = (out / "report.md").read_text()
    assert "sarathi@tuned" in report and "Best stock arm:" in report
    code, text = _cli(*args, "--resume")
    assert code == 0 and "finished run(s) reused" in text
    assert "sarathi@1024 x" not in text  # every sweep probe was reused
    code, text = _cli(*args[:-2], "--tune-sarathi-token-budget", "4096", "--out", str(out))
    assert code == 2 and "not empty" in text

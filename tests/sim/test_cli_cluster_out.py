"""`cluster simulate|capacity --out` and `simulate --out`: the non-empty directory rule
(--resume / --force), capacity resume from saved probes, and parse-time number checks
(issue #14.1, 4, 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.harness import cluster_capacity
from fairbatching_sglang.harness.capacity import CapacityConfig
from fairbatching_sglang.harness.cluster_capacity import router_variants, run_cluster_capacity
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.workload import generate, get_preset

ROOT = Path(__file__).resolve().parents[2]
TRACE = str(ROOT / "traces/synthetic_conv_10min.csv")


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, " ".join(res.output.replace("│", " ").split())


def _capacity(out: Path, *extra: str) -> tuple[int, str]:
    return _cli(
        "cluster", "capacity", "--trace", TRACE, "--duration", "20", "--replicas", "2",
        "--routers", "round-robin", "--arms", "sglang-mixed", "--targets", "0.9",
        "--max-probes", "3", "--rel-tol", "0.5", "--jobs", "1", "--out", str(out), *extra,
    )  # fmt: skip


def test_cluster_capacity_out_rule(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    assert _capacity(out)[0] == 0
    code, text = _capacity(out)
    assert code == 2 and "is not empty" in text
    code, text = _capacity(out, "--slo-tpot-ms", "20", "--resume")
    assert code == 2 and "differing fields: slo.tpot_slo_ms." in text
    probes = sorted(out.glob("n2/round-robin/sglang-mixed.probes/x*.json"))
    stamp = [p.stat().st_mtime_ns for p in probes]
    code, text = _capacity(out, "--resume")
    assert code == 0, text
    assert [p.stat().st_mtime_ns for p in probes] == stamp  # reused, not recomputed
    (out / "notes.txt").write_text("mine\n")
    code, text = _capacity(out, "--arms", "sglang-default", "--force")
    assert code == 0, text
    assert not (out / "n2/round-robin/sglang-mixed.json").exists()
    assert (out / "notes.txt").exists()  # --force deletes only what the harness wrote


def test_cluster_simulate_and_simulate_out_rule(tmp_path: Path) -> None:
    for cmd in (["cluster", "simulate", "--replicas", "2"], ["simulate"]):
        out = tmp_path / cmd[0]
        args = [*cmd, "--trace", TRACE, "--duration", "10", "--out", str(out)]
        code, text = _cli(*args)
        assert code == 0, text
        assert json.loads((out / "run.json").read_text())["complete"] is True
        code, text = _cli(*args)
        assert code == 2 and "is not empty" in text
        code, text = _cli(*args, "--resume")
        assert code == 0 and "is reused" in text
        code, text = _cli(*args, "--rate-scale", "2", "--resume")
        assert code == 2 and "rate_scale" in text
        code, text = _cli(*args, "--rate-scale", "2", "--force")
        assert code == 0 and json.loads((out / "run.json").read_text())["rate_scale"] == 2


def test_capacity_resume_reuses_saved_probes(tmp_path: Path, monkeypatch) -> None:
    kwargs = dict(
        replicas=[2],
        routers=router_variants(["round-robin"], 10_000.0),
        arms=["sglang-mixed"],
        out_dir=tmp_path,
        meta={},
        targets=(0.9,),
        capacity=CapacityConfig(start_rate=2.0, rel_tol=0.25, max_probes=5),
    )
    inputs = (
        generate(get_preset("conv"), 20.0, seed=0),
        load_profile(),
        SloTable(SloTargets(1000.0, 50.0)),
        SimConfig(),
    )
    first = run_cluster_capacity(*inputs, **kwargs)
    saved = sorted(tmp_path.glob("n2/round-robin/sglang-mixed.probes/x*.json"))
    assert len(saved) == len(first[0]["probes"]) >= 3
    # An interrupted run: the job document and the last two probes never got written.
    (tmp_path / "n2/round-robin/sglang-mixed.json").unlink()
    for p in saved[-2:]:
        p.unlink()
    ran: list[float] = []
    real = cluster_capacity._probe

    def counting(job, rate):  # type: ignore[no-untyped-def]
        ran.append(rate)
        return real(job, rate)

    monkeypatch.setattr(cluster_capacity, "_probe", counting)
    again = run_cluster_capacity(*inputs, **kwargs, resume=True)
    assert sorted(ran) == sorted(float(p.stem[1:]) for p in saved[-2:])
    assert again[0]["capacity"] == first[0]["capacity"]
    assert [p["rate_scale"] for p in again[0]["probes"]] == [
        p["rate_scale"] for p in first[0]["probes"]
    ]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["cluster", "simulate", "--replicas", "0"], "--replicas"),
        (["cluster", "simulate", "--rate-scale", "0"], "--rate-scale"),
        (["cluster", "simulate", "--rate-scale", "-1"], "--rate-scale"),
        (["cluster", "simulate", "--rate-scale", "nan"], "--rate-scale"),
        (["cluster", "capacity", "--out", "X", "--replicas", "0"], "--replicas"),
        (["cluster", "capacity", "--out", "X", "--replicas", "2,x"], "--replicas"),
        (["cluster", "capacity", "--out", "X", "--start-rate", "0"], "--start-rate"),
        (["cluster", "capacity", "--out", "X", "--max-probes", "0"], "--max-probes"),
        (["cluster", "capacity", "--out", "X", "--jobs", "0"], "--jobs"),
        (["cluster", "capacity", "--out", "X", "--targets", "0"], "--targets"),
        (["simulate", "--rate-scale", "0"], "--rate-scale"),
        (["simulate", "--rate-scale", "nan"], "--rate-scale"),
        (["simulate", "--rate-scale", "-2"], "--rate-scale"),
    ],
)
def test_bad_numbers_rejected_at_parse_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], option: str
) -> None:
    monkeypatch.chdir(tmp_path)  # default output directories would land here
    code, text = _cli(*args, "--trace", TRACE, "--duration", "5")
    assert code == 2 and f"Invalid value for '{option}'" in text, text
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written

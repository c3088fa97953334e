"""`fairbatching cluster --device-model` (issue #13.1): one device per replica, distinct seeds,
recorded in run.json / cluster.json / report; a bad spec is refused at parse time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.core.cost_model import StepShape
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.profiles.device_spec import parse_device_model
from fairbatching_sglang.sim.cluster import RouterConfig, run_cluster_simulation
from fairbatching_sglang.sim.cluster.devices import build_replica_devices, replica_seed
from fairbatching_sglang.workload import load_trace

ROOT = Path(__file__).resolve().parents[2]
TRACE = str(ROOT / "traces/synthetic_conv_10min.csv")
H100 = load_profile("h100-llama3.1-8b")
H200 = load_profile("h200-llama3.1-8b")


def _prices(device: object, n: int = 32) -> np.ndarray:
    shape = StepShape(num_prefill_tokens=512, num_decode_reqs=16, decode_kv_tokens=16_000)
    return np.array([device.step_ms(shape) for _ in range(n)])  # type: ignore[attr-defined]


def test_replica_seeds() -> None:
    assert replica_seed(7, 0) == 7  # a 1-replica cluster draws what `simulate` draws
    seeds = [replica_seed(7, i) for i in range(8)]
    assert len(set(seeds)) == 8 and seeds == [replica_seed(7, i) for i in range(8)]
    # Not seed + i: replica 1 of seed 7 is not replica 0 of seed 8.
    assert replica_seed(7, 1) != 8 and replica_seed(7, 1) != replica_seed(8, 0)


def test_each_replica_has_its_own_noise() -> None:
    spec = parse_device_model("profile:noise=0.05,seed=3")
    devs = build_replica_devices(spec, [H100, H100, H100], 0.5)
    p = [_prices(d) for d in devs]
    assert not np.allclose(p[0], p[1]) and not np.allclose(p[1], p[2])
    np.testing.assert_array_equal(p[0], _prices(spec.build(H100, 0.5)))
    # Rebuilt for the next run: every stream starts from its seed again.
    again = build_replica_devices(spec, [H100, H100, H100], 0.5)
    np.testing.assert_array_equal(_prices(again[1]), p[1])
    # An exact device is the same everywhere.
    exact = build_replica_devices(parse_device_model("profile"), [H100, H100], 0.5)
    np.testing.assert_array_equal(_prices(exact[0]), _prices(exact[1]))


def test_mix_is_priced_per_replica_unless_the_spec_names_a_profile() -> None:
    own = build_replica_devices(parse_device_model("profile:bias=0.1"), [H100, H200], 0.5)
    assert [d.description.split(",")[0] for d in own] == [
        "profile h100-llama3.1-8b", "profile h200-llama3.1-8b",
    ]  # fmt: skip
    named = parse_device_model("profile:profile=h200-llama3.1-8b")
    assert all("h200" in d.description for d in build_replica_devices(named, [H100, H100], 0.5))


def _run(tmp_path: Path, spec: str) -> tuple[dict[str, float], dict[str, object]]:
    table = load_trace(TRACE, start_s=0, duration_s=60)
    res = run_cluster_simulation(
        table,
        "sglang-mixed",
        H100,
        num_replicas=2,
        router_config=RouterConfig("round-robin"),
        slo_table=SloTable(SloTargets(1000.0, 50.0)),
        rate_scale=4.0,
        out_dir=tmp_path / spec.replace(":", "_"),
        device_model=parse_device_model(spec),
    )
    meta = json.loads((res.out_dir / "run.json").read_text())  # type: ignore[operator]
    return res.summary, meta


def test_run_charges_the_device_and_records_it(tmp_path: Path) -> None:
    exact, meta0 = _run(tmp_path, "profile")
    slow, meta = _run(tmp_path, "profile:bias=0.5,noise=0.03,seed=1")
    assert slow["ttft_ms_p50"] > exact["ttft_ms_p50"] * 1.2  # 50% slower steps show
    dev = meta["device_model"]
    assert dev["spec"] == "profile:bias=0.5,noise=0.03,seed=1"  # type: ignore[index]
    assert dev["replica_seeds"] == [1, replica_seed(1, 1)]  # type: ignore[index]
    assert "bias +0.5" in dev["description"]  # type: ignore[index]
    assert meta["planner_profile"] == "h100-llama3.1-8b"
    assert meta0["device_model"]["spec"] == "profile"  # type: ignore[index]
    again, _ = _run(tmp_path / "again", "profile:bias=0.5,noise=0.03,seed=1")
    assert again == slow  # deterministic for a spec


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, " ".join(res.output.replace("│", " ").split())


def test_cli_bad_spec_names_the_flag(tmp_path: Path) -> None:
    for sub in (["simulate"], ["capacity", "--out", str(tmp_path / "c")]):
        code, text = _cli("cluster", *sub, "--trace", TRACE, "--device-model", "profile:nois=1")
        assert code == 2, text
        assert "'--device-model'" in text and "unknown parameter 'nois'" in text
    assert not (tmp_path / "c").exists()


def test_cli_capacity_report_states_device_and_planner(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    args = [
        "cluster", "capacity", "--trace", TRACE, "--duration", "20", "--replicas", "2",
        "--routers", "round-robin", "--arms", "sglang-mixed", "--targets", "0.9",
        "--max-probes", "3", "--rel-tol", "0.5", "--jobs", "1", "--out", str(out),
    ]  # fmt: skip
    code, text = _cli(*args, "--device-model", "profile:noise=0.05,seed=2")
    assert code == 0, text
    index = json.loads((out / "cluster.json").read_text())
    assert index["device_model"]["spec"] == "profile:noise=0.05,seed=2"
    assert index["device_model"]["replica_seeds"] == [2, replica_seed(2, 1)]
    assert index["planner_profile"] == "h100-llama3.1-8b"
    report = (out / "report.md").read_text()
    assert "Device model (what a step really costs): `profile:noise=0.05,seed=2`" in report
    assert "planner's profile: `h100-llama3.1-8b`" in report
    code, text = _cli(*args, "--resume")  # another device model is another configuration
    assert code == 2 and "differing fields: device_model" in text


def test_cli_simulate_states_device_and_planner(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    code, text = _cli(
        "cluster", "simulate", "--trace", TRACE, "--duration", "10", "--replicas", "2",
        "--device-model", "profile:jitter_ms=0.2,seed=5", "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    assert "device model 'profile:jitter_ms=0.2,seed=5', planner profile h100-llama3.1-8b" in text
    meta = json.loads((out / "run.json").read_text())
    assert meta["device_model"]["replica_seeds"] == [5, replica_seed(5, 1)]
    assert len(set(meta["device_model"]["replica_descriptions"])) == 2

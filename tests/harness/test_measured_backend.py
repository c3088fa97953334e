"""The measured backend with its two launch recipes (GPU, emulated): argv/env/labels, option
handling, preflight errors, and whole runs against a stub `sglang.launch_server` (a fake
server: real SGLang start-ups take ~30 s; tests/harness/test_emulated_e2e.py runs one)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.emulator.launch import TINY_MODEL_DIR, EmulatedServerConfig
from fairbatching_sglang.harness.ab import AbConfig, run_ab
from fairbatching_sglang.harness.arms import ARMS, resolve_arms
from fairbatching_sglang.harness.emulated_backend import EmulatedRecipe
from fairbatching_sglang.harness.gpu_backend import GpuRecipe
from fairbatching_sglang.harness.measured_cli import (
    MeasuredOptions,
    OptionError,
    build_measured_backend,
)
from fairbatching_sglang.harness.preflight import PreflightError, check_patched, check_sglang
from fairbatching_sglang.harness.server import ServerSpec
from fairbatching_sglang.harness.starvation import StarvationThresholds
from fairbatching_sglang.report import write_report
from fairbatching_sglang.workload import RequestTable
from tests.harness.ports import free_ports
from tests.harness.stub_sglang import use_stub

SLO = SloTable(SloTargets(1000.0, 50.0))


def _table(n: int = 12, span_s: float = 0.6) -> RequestTable:
    arrival = np.linspace(0.0, span_s, n)
    return RequestTable.from_arrays(arrival, [32 + i for i in range(n)], [4] * n, source="t")


def _spec(port: int = 31299) -> ServerSpec:
    return ServerSpec(python="py", model_path=str(TINY_MODEL_DIR), port=port)


def test_recipes_argv_env_and_labels(tmp_path: Path) -> None:
    flags = ARMS["fairbatching"].gpu_flags(SLO.default, "h100-llama3.1-8b")
    dev = EmulatedServerConfig(device_model="profile:bias=0.05,profile=h200-llama3.1-8b")
    em = EmulatedRecipe(dev, planner_profile="h100-llama3.1-8b")
    argv = em.server_argv(_spec(), flags)
    assert argv[:3] == ["py", "-m", "sglang.launch_server"]
    assert argv[argv.index("--model-path") + 1] == str(TINY_MODEL_DIR)
    assert argv[argv.index("--port") + 1] == "31299" and "--sleep-on-idle" in argv
    assert argv[argv.index("--device") + 1] == "cpu" and "--enable-fairbatching" in argv
    # The planner believes the profile + the step overhead the device charges (as in the sim).
    assert argv[argv.index("--fairbatching-overhead-ms") + 1] == "0.5"
    stock = em.server_argv(_spec(), ARMS["sglang-mixed"].gpu_flags(SLO.default, "x"))
    assert "--fairbatching-overhead-ms" not in stock
    user = em.server_argv(_spec(), [*flags, "--fairbatching-overhead-ms", "1.5"])
    assert user.count("--fairbatching-overhead-ms") == 1
    env = em.server_env(tmp_path)
    assert env["FAIRBATCHING_EMULATED_DEVICE"] == dev.device_model
    assert env["FAIRBATCHING_EMULATED_STEP_LOG"] == str(tmp_path / "device_steps.jsonl")
    assert em.kind == "emulated" and em.label.startswith("EMULATED")
    assert "priced from h200-llama3.1-8b" in em.label and "planner profile h100" in em.label
    assert em.describe()["device_model"]["bias"] == 0.05
    gpu = GpuRecipe("H100")
    assert gpu.label == "MEASURED ON H100" and gpu.server_env(tmp_path) == {}
    assert "--device" not in gpu.server_argv(_spec(), flags)


def test_options_pick_interpreters_and_defaults(tmp_path: Path) -> None:
    table = _table()
    em = build_measured_backend(MeasuredOptions("emulated", "h100-llama3.1-8b"), table, SLO, "c")
    assert em.kind == "emulated" and em.cfg.patch_mode == "none"
    assert em.cfg.stock_python == em.cfg.patched_python == sys.executable
    assert em.cfg.server.health_timeout_s == 180.0
    assert em.cfg.server.model_path == str(TINY_MODEL_DIR)
    one = MeasuredOptions("emulated", "h100-llama3.1-8b", venv=tmp_path / "v")
    assert build_measured_backend(one, table, SLO, "c").cfg.patch_mode == "toggle"
    gpu = MeasuredOptions("gpu", "h100-llama3.1-8b", model="m", venv=tmp_path / "v")
    g = build_measured_backend(gpu, table, SLO, "c")
    assert g.kind == "measured" and g.cfg.server.health_timeout_s == 900.0
    with pytest.raises(OptionError, match="needs --model"):
        build_measured_backend(MeasuredOptions("gpu", "p", venv=tmp_path), table, SLO, "c")
    with pytest.raises(OptionError, match="needs --venv"):
        build_measured_backend(MeasuredOptions("gpu", "p", model="m"), table, SLO, "c")
    with pytest.raises(OptionError, match="no model"):
        build_measured_backend(MeasuredOptions("emulated", "p", model="m"), table, SLO, "c")
    with pytest.raises(OptionError, match="go together"):
        opts = MeasuredOptions("emulated", "p", stock_venv=tmp_path)
        build_measured_backend(opts, table, SLO, "c")


def test_cli_rejects_bad_device_model() -> None:
    from fairbatching_sglang.cli import app

    res = CliRunner().invoke(
        app, ["ab", "--backend", "emulated", "--trace", "t.csv", "--device-model", "gpu:fast"]
    )
    text = " ".join(res.output.replace("│", " ").split())  # undo rich's box and wrapping
    assert res.exit_code == 2
    assert "--device-model" in text and "unknown device model 'gpu'" in text


def test_preflight_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PreflightError, match="does not exist"):
        check_sglang(str(tmp_path / "nope/python"))
    use_stub(tmp_path, monkeypatch, version="0.5.22")
    with pytest.raises(PreflightError, match=r"has sglang 0\.5\.22; .* need sglang==0\.5\.23"):
        check_sglang(sys.executable)


def test_preflight_patch_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_stub(tmp_path, monkeypatch)  # 0.5.23 by metadata, but none of the patched files
    assert check_sglang(sys.executable) == "0.5.23"
    with pytest.raises(PreflightError, match="needs the patched SGLang"):
        check_patched(sys.executable)


def _backend(port: int, health_timeout_s: float = 20.0, **thr) -> object:
    opts = MeasuredOptions(
        "emulated",
        "h100-llama3.1-8b",
        port=port,
        health_timeout_s=health_timeout_s,
        request_timeout_s=10.0,
        num_warmup=1,
        thresholds=StarvationThresholds(**thr),
    )
    return build_measured_backend(opts, _table(), SLO, "test")


def _ab(tmp_path: Path, be, arms=("sglang-mixed",), rates=(1.0,)) -> dict:
    cfg = AbConfig(arms=tuple(arms), rates=tuple(rates), capacity=None)
    return run_ab(be, resolve_arms(list(arms), "emulated"), cfg, tmp_path / "ab", {})


def test_stub_run_records_rids_env_and_validity(tmp_path, monkeypatch) -> None:
    use_stub(tmp_path, monkeypatch)
    (port,) = free_ports(1)
    index = _ab(tmp_path, _backend(port))
    assert index["backend"] == "emulated" and index["arms"]["sglang-mixed"]["runs"] == {"x1": "ok"}
    run = tmp_path / "ab/sglang-mixed/x1"
    meta = json.loads((run / "run.json").read_text())
    assert meta["kind"] == "emulated" and meta["versions"]["sglang"] == "0.5.23"
    assert meta["server_env"]["FAIRBATCHING_EMULATED_STEP_LOG"] == str(run / "device_steps.jsonl")
    assert meta["device_model"]["spec"] == "profile" and meta["status"] == "ok"
    assert "--enable-mixed-chunk" in meta["server_argv"]
    rec = pd.read_parquet(run / "requests.parquet")
    assert len(rec) == 12 and (rec["status"] == "ok").all()
    ids = rec["request_id"].tolist()
    token = meta["rid_token"]
    assert ids == [f"{token}-{i:08d}" for i in range(12)] and len(set(map(len, ids))) == 1
    log = (run / "server.log").read_text()
    assert f"rid='{token}-00000011'" in log  # the server received the explicit rid
    st = json.loads((run / "status.json").read_text())
    v = st["extra"]["validity"]
    assert v["valid"] and v["num_steps"] == 12  # the warm-up step is outside the window
    report = write_report(tmp_path / "ab").read_text()
    assert report.splitlines()[0].startswith("# EMULATED (device model 'profile'")
    assert "Validity of the emulation" in report


def test_starved_run_is_invalid(tmp_path, monkeypatch) -> None:
    use_stub(tmp_path, monkeypatch, FAKE_IDLE_MS="20")  # 20 ms idle per 100 ms step
    (port,) = free_ports(1)
    index = _ab(tmp_path, _backend(port))
    assert index["arms"]["sglang-mixed"]["runs"] == {"x1": "invalid"}
    st = json.loads((tmp_path / "ab/sglang-mixed/x1/status.json").read_text())
    assert "device idle 20.0% of busy time" in st["error"]
    assert st["summary"]["num_completed"] == 12  # the figures are kept, flagged
    report = write_report(tmp_path / "ab").read_text()
    assert "| invalid |" in report and "CPU-starved emulation" in report


def test_never_healthy_and_exit_at_start(tmp_path, monkeypatch) -> None:
    use_stub(tmp_path, monkeypatch, FAKE_MODE="never_healthy")
    (port,) = free_ports(1)
    index = _ab(tmp_path, _backend(port, health_timeout_s=2.0), arms=("sglang-mixed",))
    arm = index["arms"]["sglang-mixed"]
    assert arm["status"] == "start_failed" and "no healthy /health within 2 s" in arm["error"]
    monkeypatch.setenv("FAKE_MODE", "exit")
    index = _ab(tmp_path / "b", _backend(port), arms=("sglang-default",))
    assert "exited with code 7" in index["arms"]["sglang-default"]["error"]


def test_crash_mid_run_and_other_arm_continues(tmp_path, monkeypatch) -> None:
    # Every server of this test crashes after its warm-up and 5 replayed requests; both arms
    # still run, each recorded as crashed with all its records.
    use_stub(tmp_path, monkeypatch, FAKE_CRASH_AFTER="6")
    (port,) = free_ports(1)
    index = _ab(tmp_path, _backend(port), arms=("sglang-mixed", "sglang-default"))
    for arm in ("sglang-mixed", "sglang-default"):
        assert index["arms"][arm]["runs"] == {"x1": "crashed"}
        rec = pd.read_parquet(tmp_path / f"ab/{arm}/x1/requests.parquet")
        assert len(rec) == 12 and 4 <= (rec["status"] == "ok").sum() < 12
        st = json.loads((tmp_path / f"ab/{arm}/x1/status.json").read_text())
        assert "server exited during the replay (code 3)" in st["error"]


def test_wrong_version_stops_the_arm(tmp_path, monkeypatch) -> None:
    use_stub(tmp_path, monkeypatch, version="0.5.20")
    (port,) = free_ports(1)
    be = _backend(port)
    with pytest.raises(PreflightError, match=r"0\.5\.20"):
        be.preflight(resolve_arms(["sglang-mixed"], "emulated"))
    index = _ab(tmp_path, be)
    arm = index["arms"]["sglang-mixed"]
    assert arm["status"] == "start_failed" and "need sglang==0.5.23" in arm["error"]
    assert not (tmp_path / "ab/sglang-mixed/x1").exists()  # no server was started

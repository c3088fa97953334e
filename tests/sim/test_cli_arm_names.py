"""`simulate`, `ab` and `cluster` take one set of arm names with one meaning (issue #15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app

ROOT = Path(__file__).resolve().parents[2]
TRACE = str(ROOT / "traces/synthetic_conv_10min.csv")


def _simulate(tmp_path: Path, *extra: str) -> tuple[int, str, dict]:
    out = tmp_path / "run"
    args = ["simulate", "--trace", TRACE, "--duration", "5", "--out", str(out), *extra]
    res = CliRunner().invoke(app, args)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    return res.exit_code, res.output, run.get("config_fields", {})


@pytest.mark.parametrize(
    ("policy", "anchor", "closed_loop"),
    [
        ("fairbatching", "first_token", True),
        ("fairbatching-ft", "first_token", True),
        ("fairbatching-arrival", "arrival", True),
        ("fairbatching-open", "first_token", False),
        ("fairbatching-defer-late", "first_token", True),
    ],
)
def test_simulate_takes_every_fairbatching_arm(
    tmp_path: Path, policy: str, anchor: str, closed_loop: bool
) -> None:
    code, output, run = _simulate(tmp_path, "--policy", policy)
    assert code == 0, output
    assert run["policy"] == policy and run["sim_policy"] == "fairbatching"
    fb = run["fairbatching_config"]
    assert fb["decode_deadline_anchor"] == anchor
    assert (fb["closed_loop"] is not None) == closed_loop


def test_simulate_stock_arm_at_a_knob_setting(tmp_path: Path) -> None:
    code, output, run = _simulate(tmp_path, "--policy", "sarathi@1024")
    assert code == 0, output
    assert run["sim_policy"] == "sarathi" and run["sim_config"]["sarathi_token_budget"] == 1024
    code, output, _ = _simulate(
        tmp_path / "b", "--policy", "sarathi@1024", "--sarathi-token-budget", "512"
    )
    assert code != 0 and "contradicts" in output


def test_simulate_unknown_arm_names_the_flag_and_the_arms(tmp_path: Path) -> None:
    code, output, _ = _simulate(tmp_path, "--policy", "fairbatchin")
    assert code != 0
    assert "--policy" in output and "fairbatching-arrival" in output


def test_fb_anchor_option_overrides_the_arm(tmp_path: Path) -> None:
    code, output, run = _simulate(tmp_path, "--policy", "fairbatching", "--fb-anchor", "arrival")
    assert code == 0, output
    assert run["fairbatching_config"]["decode_deadline_anchor"] == "arrival"

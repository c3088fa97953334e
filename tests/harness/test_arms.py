"""Arm definitions: one registry, one meaning per name; the anchors stay distinct; GPU flags."""

from __future__ import annotations

import json

import pytest

from fairbatching_sglang.core import SloTargets
from fairbatching_sglang.harness.arms import ARM_NAMES, ARMS, resolve_arm, resolve_arms


def test_anchor_arms_are_explicit() -> None:
    # fairbatching = the shipped default (first-token anchor); the arrival anchor has its own name.
    assert ARMS["fairbatching"].fairbatching_config().decode_deadline_anchor == "first_token"
    arrival = ARMS["fairbatching-arrival"].fairbatching_config()
    assert arrival.decode_deadline_anchor == "arrival"
    assert ARMS["sglang-default"].fairbatching_config() is None


def test_ft_alias_is_fairbatching_under_its_own_name() -> None:
    ft, fb = resolve_arm("fairbatching-ft"), resolve_arm("fairbatching")
    assert ft.name == "fairbatching-ft" and "fairbatching-ft" in ARM_NAMES
    assert ft.fairbatching_config() == fb.fairbatching_config()
    slo = SloTargets(1000.0, 50.0)
    assert ft.gpu_flags(slo, "p") == fb.gpu_flags(slo, "p")
    (emu,) = resolve_arms(["fairbatching-ft"], "emulated")  # an alias of a server arm runs there
    assert emu.patched
    with pytest.raises(ValueError, match="same configuration"):
        resolve_arms(["fairbatching", "fairbatching-ft"], "sim")


def test_gpu_flags() -> None:
    slo = SloTargets(1000.0, 50.0)
    assert ARMS["sglang-default"].gpu_flags(slo, "p") == []
    assert ARMS["sglang-mixed"].gpu_flags(slo, "p") == ["--enable-mixed-chunk"]
    fb = resolve_arm("fairbatching-ft").gpu_flags(slo, "h100-llama3.1-8b")
    assert fb[:7] == [
        "--enable-fairbatching",
        "--fairbatching-ttft-slo-ms",
        "1000",
        "--fairbatching-tpot-slo-ms",
        "50",
        "--fairbatching-profile",
        "h100-llama3.1-8b",
    ]
    assert json.loads(fb[fb.index("--fairbatching-config") + 1]) == {
        "decode_deadline_anchor": "first_token"
    }
    with pytest.raises(ValueError):
        resolve_arms(["sarathi"], "gpu")
    with pytest.raises(ValueError):
        resolve_arms(["nope"], "sim")


def test_open_loop_arm_is_first_token_without_the_closed_loop() -> None:
    open_cfg = ARMS["fairbatching-open"].fairbatching_config()
    assert open_cfg.closed_loop is None
    assert open_cfg.decode_deadline_anchor == "first_token"
    assert ARMS["fairbatching"].fairbatching_config().closed_loop is not None
    flags = ARMS["fairbatching-open"].gpu_flags(SloTargets(1000.0, 50.0), "p")
    assert json.loads(flags[flags.index("--fairbatching-config") + 1])["closed_loop"] is None
    (arm,) = resolve_arms(["fairbatching-open"], "emulated")
    assert arm.name == "fairbatching-open" and arm.patched


def test_defer_late_arm_bounds_the_deferral() -> None:
    cfg = ARMS["fairbatching-defer-late"].fairbatching_config()
    assert cfg.late_prefill_order == "deprioritize" and cfg.late_prefill_max_defer_slo == 3.0
    assert cfg.closed_loop is not None and cfg.decode_deadline_anchor == "first_token"
    flags = ARMS["fairbatching-defer-late"].gpu_flags(SloTargets(1000.0, 50.0), "p")
    sent = json.loads(flags[flags.index("--fairbatching-config") + 1])
    assert sent["late_prefill_max_defer_slo"] == 3.0

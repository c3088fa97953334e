"""The reasoning and agent presets exercise what they are for in the simulator: prefix-cache
hits (agent) and KV pressure with exact outputs (reasoning at a small KV)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.runner import run_simulation
from fairbatching_sglang.workload.presets import generate_preset

SLO = SloTable(SloTargets(1000.0, 50.0))


def test_agent_sessions_hit_the_prefix_cache(tmp_path: Path) -> None:
    table = generate_preset("agent", 120, seed=0)
    res = run_simulation(table, "sglang-mixed", load_profile("h100-llama3.1-8b"),
                         slo_table=SLO, out_dir=tmp_path)  # fmt: skip
    req = pd.read_parquet(tmp_path / "requests.parquet")
    assert req["cached_tokens"].sum() > 0.4 * req["input_tokens"].sum()
    assert res.summary["num_failed"] == 0


@pytest.mark.parametrize("policy", ["sglang-mixed", "fairbatching"])
def test_reasoning_under_kv_pressure(tmp_path: Path, policy: str) -> None:
    table = generate_preset("reasoning", 120, seed=1, rate_rps=4.0)
    prof = dataclasses.replace(load_profile("h100-llama3.1-8b"), kv_capacity_tokens=60_000)
    cfg = SimConfig(ignore_eos=False)  # ratio reservation: overcommits, so it retracts
    res = run_simulation(table, policy, prof, slo_table=SLO, sim_config=cfg, out_dir=tmp_path)
    req = pd.read_parquet(tmp_path / "requests.parquet").set_index("rid")
    assert (req["status"] == "ok").all()
    assert sorted(req["output_tokens"]) == sorted(int(x) for x in table.output_tokens)
    # KV pressure shows (at the profile's KV the same load retracts nothing, p99 TTFT ~0.2 s).
    assert res.engine.num_retractions > 0 and res.summary["ttft_ms_p99"] > 2000

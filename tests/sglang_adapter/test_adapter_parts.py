"""Load export, per-request SLOs, TP plan encoding, step log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from conftest import FakeClock  # noqa: E402
from cpu_harness import CpuScheduler  # noqa: E402

from fairbatching_sglang.core.slo import SloTargets  # noqa: E402
from fairbatching_sglang.sglang_adapter.plan import StepPlan  # noqa: E402
from fairbatching_sglang.sglang_adapter.req_state import resolve_slo  # noqa: E402
from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings  # noqa: E402


def test_load_snapshot_carries_admission_budget(tmp_path: Path, tree_cache: str) -> None:
    from sglang.srt.managers.load_snapshot import LoadSnapshot, snapshot_decoder, snapshot_encoder

    cs = CpuScheduler(
        tmp_path / "m",
        fairbatching=FairBatchingSettings(),
        kv_tokens=100_000,
        tree_cache=tree_cache,
    )
    for _ in range(8):
        cs.add_request(500, 50)
    for _ in range(3):
        cs.step()
    load = LoadSnapshot(num_running_reqs=len(cs.s.running_batch.reqs), token_usage=0.1)
    load = cs.s.fairbatching.annotate_load(cs.s, load)
    assert load.fairbatching_prefill_admission_tokens is not None
    assert load.fairbatching_prefill_admission_tokens > 0
    assert cs.s.max_running_requests_under_SLO > 0
    assert load.utilization > 0
    wire = snapshot_decoder.decode(snapshot_encoder.encode(load))  # the /v1/loads path
    assert wire.fairbatching_prefill_admission_tokens == load.fairbatching_prefill_admission_tokens
    assert "fairbatching_prefill_admission_tokens" in wire.to_dict({"core"})


def test_per_request_slo() -> None:
    default = SloTargets(1000.0, 50.0)
    assert resolve_slo(None, default) == default
    assert resolve_slo({"fairbatching_tpot_slo_ms": 20}, default) == SloTargets(1000.0, 20.0)
    assert resolve_slo({"fairbatching_ttft_slo_ms": -1, "x": 1}, default) == default
    assert resolve_slo({"fairbatching_ttft_slo_ms": "fast"}, default) == default


def test_custom_params_reach_the_snapshot(tmp_path: Path) -> None:
    clock = FakeClock()
    cs = CpuScheduler(tmp_path / "m", fairbatching=FairBatchingSettings(), clock=clock)
    req = cs.add_request(50, 5, custom_params={"fairbatching_ttft_slo_ms": 123.0})
    cs.step()
    assert req.fairbatching_state.ttft_slo_ms == 123.0
    assert req.fairbatching_state.tpot_slo_ms == 50.0
    assert req.fairbatching_state.arrival_ms == pytest.approx(clock.now_s * 1000.0)


def test_plan_round_trip() -> None:
    plan = StepPlan(700, (3, 0, 9), 4, (1, 5, 8), 12, 14.5, 13.9)
    assert StepPlan.decode(plan.encode()) == plan
    empty = StepPlan(0, (), 0, (), 0, 50.0, 0.0)
    assert StepPlan.decode(empty.encode()) == empty


def test_step_log(tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    clock = FakeClock()
    cs = CpuScheduler(
        tmp_path / "m", fairbatching=FairBatchingSettings(step_log=str(log)), clock=clock
    )
    for _ in range(4):
        cs.add_request(300, 6)
    for _ in range(12):
        cs.step()
        clock.advance_ms(10.0)
    cs.s.fairbatching.step_log.close()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows
    keys = {
        "num_prefill_tokens",
        "num_decode_reqs",
        "decode_kv_tokens",
        "prefill_attn_work",
        "measured_ms",
        "predicted_ms",
        "time_s",
    }
    assert keys <= set(rows[0])
    assert rows[0]["measured_ms"] == pytest.approx(10.0)
    assert rows[0]["num_prefill_tokens"] > 0

"""Patched batch formation on real SGLang objects (CPU): the policy's chunk is admitted, and the
split -> mix -> merge cycle keeps rows, sequence lengths and KV slots consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from conftest import FakeClock  # noqa: E402
from cpu_harness import CpuScheduler, finish_and_check  # noqa: E402

from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings  # noqa: E402

KV_TOKENS = 400_000
LOOSE = FairBatchingSettings(ttft_slo_ms=5000.0, tpot_slo_ms=200.0)
TIGHT = {"fairbatching_tpot_slo_ms": 14.0, "fairbatching_ttft_slo_ms": 300.0}


def _check_rows(batch: Any) -> None:
    """Row i of every tensor belongs to reqs[i]."""
    if batch is None or not batch.reqs:
        return
    pool_idx = batch.req_pool_indices_cpu.tolist()
    for i, req in enumerate(batch.reqs):
        if not req.finished():  # finished rows released their slot; filtered next step
            assert pool_idx[i] == req.kv.req_pool_idx
    assert len(batch.seq_lens) == len(batch.reqs)


def _check_kv_slots(cs: CpuScheduler, batch: Any) -> None:
    """No two rows share a KV slot (prompts are distinct, so no prefix is shared)."""
    r2t = cs.s.req_to_token_pool.req_to_token
    seen: set[int] = set()
    for i, req in enumerate(batch.reqs):
        if req.finished():
            continue
        n = int(batch.seq_lens_cpu[i])
        slots = r2t[req.kv.req_pool_idx, :n].tolist()
        assert 0 not in slots  # slot 0 is the padding slot, never allocated
        assert seen.isdisjoint(slots)
        seen.update(slots)


def _run_scenario(cs: CpuScheduler, clock: FakeClock, *, overlap: bool) -> dict[str, int]:
    reqs = [cs.add_request(200, 60) for _ in range(64)]
    stats = {"parked_steps": 0, "mixed_steps": 0, "max_parked": 0}
    hook = cs.s.fairbatching

    def one_step() -> Any:
        batch = cs.step()
        clock.advance_ms(12.0)
        running = cs.s.running_batch
        _check_rows(batch)
        _check_rows(running)
        if batch is not None and not batch.forward_mode.is_decode():
            assert {id(r) for r in batch.reqs}.isdisjoint(id(r) for r in running.reqs)
        if not overlap:
            # Parked / waiting decode rows: KV holds everything but the last sampled token.
            for i, req in enumerate(running.reqs):
                if not req.finished():
                    assert int(running.seq_lens_cpu[i]) == req.seqlen - 1
            if running.reqs:
                _check_kv_slots(cs, running)
        if batch is not None and batch.forward_mode.is_mixed():
            stats["mixed_steps"] += 1
            plan = hook.last_plan if hook is not None else None
            n_dec = len(batch.decoding_reqs or [])
            if plan is not None and not overlap:
                # The adder admitted exactly the prefill tokens the policy chose.
                assert batch.extend_num_tokens - n_dec == plan.prefill_token_budget
            if running.reqs:
                stats["parked_steps"] += 1
                stats["max_parked"] = max(stats["max_parked"], len(running.reqs))
        return batch

    for _ in range(10):
        one_step()
    reqs.append(cs.add_request(100, 40, custom_params=TIGHT))
    reqs += [cs.add_request(2000, 5) for _ in range(6)]
    for _ in range(400):
        if one_step() is None and not cs.s.waiting_queue and not cs.s.running_batch.reqs:
            break
    finish_and_check(cs, reqs, KV_TOKENS)
    return stats


@pytest.mark.parametrize("overlap", [False, True], ids=["normal", "overlap"])
def test_park_mix_merge_cycle(tmp_path: Path, overlap: bool, tree_cache: str) -> None:
    clock = FakeClock()
    cs = CpuScheduler(
        tmp_path / "m",
        tree_cache=tree_cache,
        fairbatching=LOOSE,
        clock=clock,
        kv_tokens=KV_TOKENS,
        chunked_prefill_size=2048,
        enable_overlap=overlap,
    )
    stats = _run_scenario(cs, clock, overlap=overlap)
    assert stats["parked_steps"] >= 3 and stats["max_parked"] >= 50
    assert cs.s.fairbatching.num_fallbacks == 0


def test_stock_mixed_chunk_same_scenario(tmp_path: Path, tree_cache: str) -> None:
    """The harness itself: stock mixed-chunk SGLang on the same queue never parks."""
    clock = FakeClock()
    cs = CpuScheduler(
        tmp_path / "m",
        tree_cache=tree_cache,
        fairbatching=None,
        clock=clock,
        kv_tokens=KV_TOKENS,
        chunked_prefill_size=2048,
    )
    stats = _run_scenario(cs, clock, overlap=False)
    assert stats["parked_steps"] == 0 and stats["mixed_steps"] > 0


def test_raising_policy_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tree_cache: str
) -> None:
    clock = FakeClock()
    cs = CpuScheduler(
        tmp_path / "m",
        tree_cache=tree_cache,
        fairbatching=LOOSE,
        clock=clock,
        kv_tokens=KV_TOKENS,
        chunked_prefill_size=2048,
    )

    def boom(snapshot: Any) -> Any:
        raise RuntimeError("policy bug")

    monkeypatch.setattr(type(cs.s.fairbatching.policy), "decide", lambda self, snap: boom(snap))
    stats = _run_scenario(cs, clock, overlap=False)
    assert cs.s.fairbatching.num_fallbacks > 0
    assert stats["parked_steps"] == 0  # stock mixed chunks: nothing parked


def test_penalized_batch_is_never_split(tmp_path: Path, tree_cache: str) -> None:
    """A penalizer's state is batch-level (its rows' history): no row of such a batch may be
    parked, whatever its slack."""
    clock = FakeClock()
    cs = CpuScheduler(
        tmp_path / "m",
        tree_cache=tree_cache,
        fairbatching=LOOSE,
        clock=clock,
        kv_tokens=KV_TOKENS,
        chunked_prefill_size=2048,
    )
    pinned = [cs.add_request(150, 60, repetition_penalty=1.1) for _ in range(2)]
    for _ in range(40):
        cs.add_request(150, 60)
    for _ in range(6):
        cs.step()
        clock.advance_ms(12.0)
    cs.add_request(100, 20, custom_params=TIGHT)
    for _ in range(3):
        cs.add_request(2000, 4)
    mixed = 0
    for _ in range(200):
        batch = cs.step()
        clock.advance_ms(12.0)
        if batch is not None and batch.forward_mode.is_mixed():
            mixed += 1
            if not all(r.finished() for r in pinned):
                assert not cs.s.running_batch.reqs
        if batch is None and not cs.s.waiting_queue:
            break
    assert mixed > 0
    assert all(r.finished() for r in pinned)


def test_row_can_park_rules(tmp_path: Path) -> None:
    from fairbatching_sglang.sglang_adapter.snapshot import row_can_park

    cs = CpuScheduler(tmp_path / "m", fairbatching=LOOSE, kv_tokens=KV_TOKENS)
    assert row_can_park(cs.add_request(10, 5))
    assert not row_can_park(cs.add_request(10, 5, repetition_penalty=1.2))
    assert not row_can_park(cs.add_request(10, 5, frequency_penalty=0.5))
    logprob = cs.add_request(10, 5)
    logprob.return_logprob = True
    assert not row_can_park(logprob)

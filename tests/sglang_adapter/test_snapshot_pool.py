"""The adapter's fast snapshot path (per-request column pool, cached running rows, unchecked
core rows) against a per-request reference built with the validating constructors."""

from __future__ import annotations

import copy
import gc
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from conftest import FakeClock  # noqa: E402
from cpu_harness import CpuScheduler  # noqa: E402
from sglang.srt.managers.schedule_batch import FINISH_ABORT  # noqa: E402

from fairbatching_sglang.core.slo import SloTargets  # noqa: E402
from fairbatching_sglang.core.snapshot import (  # noqa: E402
    DecodeRequest,
    DecodeRows,
    PrefillRequest,
    PrefillRows,
    SchedulerSnapshot,
)
from fairbatching_sglang.sglang_adapter import hook as hook_module  # noqa: E402
from fairbatching_sglang.sglang_adapter.batch_ops import reorder_waiting_queue  # noqa: E402
from fairbatching_sglang.sglang_adapter.req_state import ReqStatePool, ReqTiming  # noqa: E402
from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings  # noqa: E402
from fairbatching_sglang.sglang_adapter.snapshot import (  # noqa: E402
    CLIP_MAX_NEW_TOKENS,
    SnapshotInputs,
)

TIGHT = {"fairbatching_tpot_slo_ms": 14.0, "fairbatching_ttft_slo_ms": 300.0}


def _reference(inp: SnapshotInputs) -> SchedulerSnapshot:
    """build_snapshot's meaning, one request at a time, through SchedulerSnapshot.build."""
    decodes = []
    running_offset = 0.0  # PrefillAdder.__init__: _get_running_request_total_token_offset
    for req in inp.running_reqs:
        st = req.fairbatching_state
        n_out = max(len(req.output_ids), st.num_scheduled_tokens)
        ratio = 1.0 if req.sampling_params.ignore_eos else inp.new_token_ratio
        left = req.sampling_params.max_new_tokens - len(req.output_ids)
        running_offset += min(left, CLIP_MAX_NEW_TOKENS) * ratio
        decodes.append(
            DecodeRequest(
                arrival_ms=st.arrival_ms,
                slo=SloTargets(st.ttft_slo_ms, st.tpot_slo_ms),
                num_output_tokens=n_out,
                kv_tokens=st.prompt_len + n_out,
                can_park=st.can_park and inp.batch_can_park,
                parked_steps=st.parked_steps,
                first_token_ms=None if math.isnan(st.first_token_ms) else st.first_token_ms,
            )
        )
    chunked = inp.chunked_req
    prefills = []
    for i, req in enumerate(([chunked] if chunked is not None else []) + inp.waiting_reqs):
        st = req.fairbatching_state
        out = len(req.output_ids)
        cached = req.prefix_len
        if i == 0 and chunked is not None:
            cached = max(cached, chunked.extend_end or 0)
        prefills.append(
            PrefillRequest(
                arrival_ms=st.arrival_ms,
                slo=SloTargets(st.ttft_slo_ms, st.tpot_slo_ms),
                num_remaining_tokens=max(st.prompt_len + out - cached, 1),
                num_cached_tokens=cached,
                # _commit_prefill_admission: the whole clipped output, plus the page overhead.
                kv_reserve_tokens=min(st.max_new_tokens, CLIP_MAX_NEW_TOKENS)
                + inp.req_token_overhead,
                is_continuing=i == 0 and chunked is not None,
            )
        )
    # The adder admits while total_tokens < remaining_total (strict), and charges each running
    # row's decode token against the same budget.
    kv_admission = math.ceil(inp.kv_free_tokens - running_offset) - 1 - len(inp.running_reqs)
    return SchedulerSnapshot.build(
        inp.now_ms,
        decodes,
        prefills,
        max_num_batched_tokens=inp.max_num_batched_tokens,
        max_prefill_tokens=inp.max_prefill_tokens,
        kv_free_tokens=max(0, inp.kv_free_tokens),
        max_new_prefills=inp.max_new_prefills,
        kv_admission_tokens=max(0, kv_admission),
    )


def _assert_same(fast: SchedulerSnapshot, ref: SchedulerSnapshot) -> None:
    for name in ("now_ms", "max_num_batched_tokens", "max_prefill_tokens", "kv_free_tokens"):
        assert getattr(fast, name) == getattr(ref, name), name
    assert fast.max_new_prefills == ref.max_new_prefills
    assert fast.kv_admission_tokens == ref.kv_admission_tokens
    for part in ("decodes", "prefills"):
        a, b = getattr(fast, part), getattr(ref, part)
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
            assert x.dtype == y.dtype, (part, name)
            np.testing.assert_array_equal(x, y, err_msg=f"{part}.{name}")


@pytest.mark.parametrize("overlap", [False, True], ids=["normal", "overlap"])
def test_fast_snapshot_matches_per_request_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool, tree_cache: str
) -> None:
    """Every step of a run with parking, churn (arrivals, finishes), per-request SLOs, rows
    with and without ignore_eos (their reserves differ), an output cap above the adder's clip
    and an abort."""
    clock = FakeClock()
    cs = CpuScheduler(
        tmp_path / "m",
        fairbatching=FairBatchingSettings(ttft_slo_ms=800.0, tpot_slo_ms=30.0),
        clock=clock,
        kv_tokens=400_000,
        chunked_prefill_size=2048,
        enable_overlap=overlap,
        tree_cache=tree_cache,
    )
    seen: list[int] = []
    build = hook_module.build_snapshot

    def checked(inp: SnapshotInputs, default: SloTargets, cache: Any = None) -> SchedulerSnapshot:
        snap = build(inp, default, cache)
        _assert_same(snap, _reference(inp))
        seen.append(snap.decodes.num_reqs)
        return snap

    monkeypatch.setattr(hook_module, "build_snapshot", checked)
    parked_steps = 0
    for j in range(48):
        cs.add_request(200, 40, ignore_eos=j % 3 != 0)
    long_one = cs.add_request(120, CLIP_MAX_NEW_TOKENS + 500)
    for i in range(160):
        if i == 30:
            long_one.to_finish = FINISH_ABORT()  # what Scheduler.abort_request sets
        if i == 8:
            cs.add_request(100, 30, custom_params=TIGHT)
            for _ in range(5):
                cs.add_request(2000, 4)
        if i % 23 == 3:
            for _ in range(4):
                cs.add_request(300 + i, 10 + i % 7)
        if i % 2 == 0:  # a steady stream, so most steps plan a prefill
            cs.add_request(150 + 7 * (i % 11), 20 + i % 13, ignore_eos=i % 4 == 0)
        cs.step()
        clock.advance_ms(12.0)
        plan = cs.s.fairbatching.last_plan
        parked_steps += plan is not None and bool(plan.parked_rows)
    assert cs.s.fairbatching.num_fallbacks == 0
    assert len(seen) > 80 and max(seen) >= 40 and parked_steps >= 3
    assert cs.s.fairbatching.num_steps > 0
    assert long_one.finished() and len(long_one.output_ids) < CLIP_MAX_NEW_TOKENS


def test_trusted_rows_equal_validated_rows() -> None:
    rng = np.random.default_rng(7)
    n, m = 37, 11
    dec_cols = {
        "arrival_ms": rng.uniform(0, 1e4, n),
        "ttft_slo_ms": rng.uniform(100, 2000, n),
        "tpot_slo_ms": rng.uniform(10, 100, n),
        "num_output_tokens": rng.integers(0, 500, n),
        "kv_tokens": rng.integers(1, 5000, n),
        "can_park": rng.random(n) < 0.5,
        "parked_steps": rng.integers(0, 4, n),
        "first_token_ms": np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 1e4, n)),
    }
    pre_cols = {
        "arrival_ms": rng.uniform(0, 1e4, m),
        "ttft_slo_ms": rng.uniform(100, 2000, m),
        "num_remaining_tokens": rng.integers(1, 3000, m),
        "num_cached_tokens": rng.integers(0, 3000, m),
        "kv_reserve_tokens": rng.integers(0, 300, m),
        "is_continuing": np.arange(m) == 0,
    }
    for cls, cols in ((DecodeRows, dec_cols), (PrefillRows, pre_cols)):
        fast, checked = cls.trusted(**cols), cls(**cols)
        assert type(fast) is cls and fast.num_reqs == checked.num_reqs
        for name in cls.__dataclass_fields__:
            assert getattr(fast, name) is getattr(checked, name)
        with pytest.raises(AttributeError):
            fast.arrival_ms = cols["arrival_ms"]  # type: ignore[misc]  # still frozen


def test_pool_slots_are_reused_and_survive_growth() -> None:
    pool = ReqStatePool(capacity=4)
    slo = SloTargets(500.0, 20.0)
    states = [ReqTiming(pool, float(i), slo, prompt_len=10 + i, max_new_tokens=5) for i in range(4)]
    states[2].num_scheduled_tokens = 7
    states[2].parked_steps = 3
    assert pool.num_live == 4
    more = [ReqTiming(pool, 100.0 + i, slo) for i in range(10)]  # grows twice
    assert pool.capacity >= 14 and pool.num_live == 14
    st = states[2]
    assert (st.arrival_ms, st.prompt_len, st.max_new_tokens) == (2.0, 12, 5)
    assert (st.num_scheduled_tokens, st.parked_steps, st.can_park) == (7, 3, True)
    assert math.isnan(st.first_token_ms) and st.ttft_slo_ms == 500.0 and st.tpot_slo_ms == 20.0
    freed = st.slot
    del st, states[2]
    gc.collect()
    assert pool.num_live == 13
    fresh = ReqTiming(pool, 9.0, slo)
    assert fresh.slot == freed  # reused, with fresh counters
    assert (fresh.num_scheduled_tokens, fresh.parked_steps) == (0, 0)
    assert math.isnan(fresh.first_token_ms)
    fresh.num_scheduled_tokens = 4
    twin = copy.deepcopy(fresh)  # its own slot, the same values
    assert twin.slot != fresh.slot and twin.pool is pool
    assert (twin.arrival_ms, twin.num_scheduled_tokens) == (9.0, 4)
    with pytest.raises(TypeError):
        pickle.dumps(fresh)
    assert len({s.slot for s in [*states, *more, fresh, twin]}) == 15


def test_reorder_keeps_the_queue_object_when_already_in_order() -> None:
    queue = ["a", "b", "c", "d"]
    assert reorder_waiting_queue(queue, ()) is queue
    assert reorder_waiting_queue(queue, (0, 1)) is queue
    assert reorder_waiting_queue(queue, (2, 0)) == ["c", "a", "b", "d"]
    assert reorder_waiting_queue(queue, (1,)) == ["b", "a", "c", "d"]

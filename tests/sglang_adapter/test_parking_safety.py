"""Parking on real SGLang objects (CPU harness) where a split used to go wrong: penalized
requests arriving while rows are parked, aborts of parked rows, parked-step accounting,
batch_is_full, and the adder's KV reservation. Every scenario runs on both tree caches (the
`tree_cache` fixture: RadixCache and SGLang 0.5.23's default, UnifiedRadixCache) and, where the
loop matters, in the normal and the overlap loop."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from conftest import FakeClock  # noqa: E402
from cpu_harness import CpuScheduler, finish_and_check  # noqa: E402

from fairbatching_sglang.sglang_adapter import batch_ops  # noqa: E402
from fairbatching_sglang.sglang_adapter import hook as hook_module  # noqa: E402
from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings  # noqa: E402
from fairbatching_sglang.sglang_adapter.snapshot import CLIP_MAX_NEW_TOKENS  # noqa: E402

KV_TOKENS = 400_000
LOOSE = FairBatchingSettings(ttft_slo_ms=5000.0, tpot_slo_ms=200.0)
TIGHT = {"fairbatching_tpot_slo_ms": 14.0, "fairbatching_ttft_slo_ms": 300.0}
TOKEN = 7  # what the harness samples for every row
PENALTIES: tuple[dict[str, Any], ...] = (
    {"frequency_penalty": 0.5},
    {"presence_penalty": 0.5},
    {"repetition_penalty": 1.2},
    {"min_new_tokens": 3},
    {"frequency_penalty": 0.3, "presence_penalty": 0.2, "repetition_penalty": 1.1},
)

loops = pytest.mark.parametrize("overlap", [False, True], ids=["normal", "overlap"])


def _scheduler(tmp_path: Path, clock: FakeClock, tree_cache: str, **kwargs: Any) -> CpuScheduler:
    kwargs.setdefault("kv_tokens", KV_TOKENS)
    kwargs.setdefault("chunked_prefill_size", 2048)
    return CpuScheduler(
        tmp_path / "m", fairbatching=LOOSE, clock=clock, tree_cache=tree_cache, **kwargs
    )


def _start_parking(cs: CpuScheduler, clock: FakeClock) -> list[Any]:
    """Loose decodes in steady state, then a tight request and long prompts: the policy parks."""
    reqs = [cs.add_request(200, 60) for _ in range(64)]
    for _ in range(10):
        cs.step()
        clock.advance_ms(12.0)
    reqs.append(cs.add_request(100, 40, custom_params=TIGHT))
    reqs += [cs.add_request(2000, 5) for _ in range(6)]
    return reqs


def _decode_rows(batch: Any) -> list[Any]:
    """The rows of a formed batch that decode this step."""
    if batch.forward_mode.is_decode():
        return batch.reqs
    return (batch.decoding_reqs or []) if batch.forward_mode.is_mixed() else []


def _check_sampling_state(batch: Any, *, exact_counts: bool) -> None:
    """The batch's sampling state describes its own rows, row for row."""
    if batch is None or not batch.reqs:
        return
    n = len(batch.reqs)
    info = batch.sampling_info
    assert len(info.temperatures) == n
    orch = info.penalizer_orchestrator
    assert orch.batch is batch  # bound to this batch, not to a half dropped earlier
    if not orch.is_required:
        return
    for pen in orch.penalizers.values():
        if pen.is_prepared():
            for value in vars(pen).values():
                if isinstance(value, torch.Tensor):
                    assert value.shape[0] == n, type(pen).__name__
    freq = next(
        (p for p in orch.penalizers.values() if type(p).__name__ == "BatchedFrequencyPenalizer"),
        None,
    )
    if freq is None or not freq.is_prepared() or not exact_counts:
        return
    # Row i carries request i's penalty and counts: every output token the decode inputs fed
    # (all TOKEN), none for a prefill row or a request without the penalty. Called after the
    # normal loop committed this batch: the token it sampled is not fed yet.
    decoding = {id(r) for r in _decode_rows(batch)}
    cum = freq.cumulated_frequency_penalties
    for i, req in enumerate(batch.reqs):
        f = req.sampling_params.frequency_penalty
        fed = len(req.output_ids) - 1 if id(req) in decoding else 0
        assert math.isclose(float(cum[i, TOKEN]), f * fed, abs_tol=1e-4), (i, f, fed)
        assert math.isclose(float(cum[i].abs().sum()), abs(f) * fed, abs_tol=1e-4)


def _finish(cs: CpuScheduler, reqs: list[Any]) -> None:
    finish_and_check(cs, reqs, KV_TOKENS)


# --- a. penalized requests admitted while rows are parked -------------------------------------
@loops
@pytest.mark.parametrize("kept_short_of_kv", [False, True], ids=["mixed", "kept-short-of-kv"])
def test_penalized_requests_arriving_while_rows_are_parked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overlap: bool,
    tree_cache: str,
    kept_short_of_kv: bool,
) -> None:
    """The real-server crash: requests with frequency / presence / repetition penalties or
    min_new_tokens admitted while rows are parked (they join the kept half through
    mix_with_running, then the parked half through merge_batch). Waves keep coming each time
    parking resumes; both halves' sampling state must stay aligned with their rows. Variant:
    every third split, the kept rows fail check_decode_mem, so the halves merge back at once
    (scheduler.py:4433-4437) and the prefill runs alone."""
    from sglang.srt.managers.schedule_batch import ScheduleBatch

    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache, enable_overlap=overlap)
    hook = cs.s.fairbatching
    merged_back = {"armed": False, "splits": 0, "n": 0}
    if kept_short_of_kv:
        split_running = hook.split_running
        check_decode_mem = ScheduleBatch.check_decode_mem

        def splitting(running_batch: Any) -> Any:
            kept, parked = split_running(running_batch)
            if parked is not None:
                merged_back["splits"] += 1
                merged_back["armed"] = merged_back["splits"] % 3 == 0
            return kept, parked

        def short_of_kv(self: Any, *args: Any, **kwargs: Any) -> bool:
            if merged_back["armed"]:  # the mixed block's check right after a split
                merged_back["armed"] = False
                merged_back["n"] += 1
                return False
            return check_decode_mem(self, *args, **kwargs)

        monkeypatch.setattr(hook, "split_running", splitting)
        monkeypatch.setattr(ScheduleBatch, "check_decode_mem", short_of_kv)
    reqs = _start_parking(cs, clock)
    penalized: list[Any] = []
    waves_while_parked = 0
    for _ in range(800):
        batch = cs.step()
        clock.advance_ms(12.0)
        running = cs.s.running_batch
        _check_sampling_state(batch, exact_counts=not overlap)
        _check_sampling_state(running, exact_counts=False)
        parked_now = batch is not None and batch.forward_mode.is_mixed() and bool(running.reqs)
        # A new wave each time parking resumes after the last one finished.
        if (
            parked_now
            and waves_while_parked < len(PENALTIES)
            and all(r.finished() for r in penalized)
        ):
            kind = PENALTIES[waves_while_parked]
            wave = [cs.add_request(60 + 10 * j, 6 + j, **kind) for j in range(6)]
            penalized += wave
            reqs += wave
            waves_while_parked += 1
        elif (
            waves_while_parked < len(PENALTIES)
            and all(r.finished() for r in penalized)
            and not cs.s.waiting_queue
        ):
            # The wave is done (no parking while it ran): work of the kind that parks again.
            reqs += [cs.add_request(200, 60) for _ in range(24)]
            reqs.append(cs.add_request(100, 40, custom_params=TIGHT))
            reqs += [cs.add_request(2000, 5) for _ in range(6)]
        if batch is None and not cs.s.waiting_queue and not running.reqs:
            break
    assert waves_while_parked == len(PENALTIES)
    assert merged_back["n"] >= (3 if kept_short_of_kv else 0)
    _finish(cs, reqs)
    assert hook.num_fallbacks == 0  # the split never met a penalized batch (batch_can_park)


def test_split_gives_the_parked_half_its_own_sampling_state(
    tmp_path: Path, tree_cache: str
) -> None:
    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache)
    for _ in range(12):
        cs.add_request(100, 30)
    for _ in range(3):
        cs.step()
    batch = cs.s.running_batch
    shared = batch.sampling_info.penalizer_orchestrator
    rows = list(batch.reqs)
    kept, parked = batch_ops.split_parked(batch, frozenset(rows[::3]))
    assert kept is batch and parked.reqs == rows[::3]
    assert kept.sampling_info.penalizer_orchestrator is shared and shared.batch is kept
    own = parked.sampling_info.penalizer_orchestrator
    assert own is not shared and own.batch is parked and not own.is_required
    assert set(own.penalizers) == set(shared.penalizers)
    assert len(parked.sampling_info.temperatures) == len(parked.reqs)
    assert len(kept.sampling_info.temperatures) == len(kept.reqs)
    assert parked.batch_is_full is False


def test_split_refuses_a_penalized_batch_unchanged(tmp_path: Path, tree_cache: str) -> None:
    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache)
    for j in range(8):
        cs.add_request(100, 30, frequency_penalty=0.5 if j == 0 else 0.0)
    for _ in range(3):
        cs.step()
    batch = cs.s.running_batch
    rows = list(batch.reqs)
    with pytest.raises(ValueError):
        batch_ops.split_parked(batch, frozenset(rows[1:3]))
    assert batch.reqs == rows and len(batch.sampling_info.temperatures) == len(rows)


# --- b. batch_is_full and the adder's KV reservation ------------------------------------------
@loops
def test_parked_batch_does_not_keep_batch_is_full(
    tmp_path: Path, overlap: bool, tree_cache: str
) -> None:
    """The adder sets running_batch.batch_is_full when it runs out of KV (NO_TOKEN,
    scheduler.py:4300). Stock mixed-chunk drops it after the mixed step (the next running batch
    is the mixed batch, flag False), so admission is retried next step; the parked batch, which
    becomes the next running batch, must drop it too or prefill stalls until a request ends."""
    from sglang.srt.managers.schedule_policy import AddReqResult, PrefillAdder

    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache, enable_overlap=overlap)
    no_token = {"on": False, "hits": 0}

    class ShortOfKv(PrefillAdder):
        """Runs out of KV after one admission while `no_token["on"]` (a real NO_TOKEN)."""

        def add_one_req(self, req: Any, *args: Any, **kwargs: Any) -> Any:
            if no_token["on"] and self.can_run_list:
                no_token["hits"] += 1
                return AddReqResult.NO_TOKEN
            return super().add_one_req(req, *args, **kwargs)

    cs.s.get_prefill_adder_class = lambda: ShortOfKv
    hook = cs.s.fairbatching
    plan_prefill = hook.plan_prefill
    consulted = {"n": 0}

    def counting_plan_prefill(*args: Any) -> bool:
        consulted["n"] += 1
        return plan_prefill(*args)

    hook.plan_prefill = counting_plan_prefill
    reqs = _start_parking(cs, clock)
    reqs += [cs.add_request(40, 200) for _ in range(3)]
    parked_and_full = 0
    retry_expected = False
    for _ in range(600):
        no_token["on"] = not no_token["on"]  # every other step
        hits, calls = no_token["hits"], consulted["n"]
        batch = cs.step()
        clock.advance_ms(12.0)
        if retry_expected:  # the step after: admission was tried again (stock does)
            assert consulted["n"] > calls
        running = cs.s.running_batch
        parked_now = batch is not None and batch.forward_mode.is_mixed() and bool(running.reqs)
        retry_expected = parked_now and no_token["hits"] > hits and bool(cs.s.waiting_queue)
        if parked_now:  # `running` is the parked batch, next step's running batch
            assert running.batch_is_full is False
            parked_and_full += no_token["hits"] > hits
        if len(reqs) < 200 and len(cs.s.waiting_queue) < 4:
            reqs += [cs.add_request(300, 30) for _ in range(4)]
        if batch is None and not cs.s.waiting_queue and not running.reqs:
            break
    assert parked_and_full >= 3
    _finish(cs, reqs)


@loops
def test_snapshot_kv_room_is_the_adders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool, tree_cache: str
) -> None:
    """Per step, on real adders: the snapshot's kv_admission_tokens is the adder's KV room (the
    parked rows' decode token is given back by apply_adder_budgets), kv_free_tokens the free +
    evictable KV; each queued request's reserve is what the adder commits for
    it (whole clipped max_new_tokens, no new_token_ratio, plus the page overhead). Running rows
    with and without ignore_eos, and one above the output clip."""
    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache, enable_overlap=overlap)
    hook = cs.s.fairbatching
    cs.s.new_token_ratio_tracker.current = 0.37  # well away from 1.0
    snaps: list[Any] = []
    build = hook_module.build_snapshot

    def recording(inp: Any, default: Any, cache: Any) -> Any:
        snap = build(inp, default, cache)
        cands = [inp.chunked_req] if inp.chunked_req is not None else []
        snaps.append((snap, list(inp.running_reqs), cands + list(inp.waiting_reqs)))
        return snap

    monkeypatch.setattr(hook_module, "build_snapshot", recording)
    checked = 0
    apply = hook.apply_adder

    def check_adder(adder: Any, scheduler: Any) -> None:
        nonlocal checked
        snap, running, candidates = snaps[-1]
        plan = hook.current_plan
        assert adder.running_batch.reqs == running
        # Built with every running row charged one decode token (num_mixed_decode_tokens): the
        # snapshot's admission room is exactly that (the core charges decodes nothing there).
        room = math.ceil(adder.rem_total_tokens) - 1
        assert snap.kv_admission_tokens == max(0, room)
        # The free KV that decodes occupy: free + evictable, no reservation taken off.
        free = scheduler.token_to_kv_pool_allocator.create_prefill_budget(scheduler.tree_cache)
        assert snap.kv_free_tokens == int(free.remaining_total)
        apply(adder, scheduler)
        if plan is not None:
            after = math.ceil(adder.rem_total_tokens) - 1
            assert after == room + len(plan.parked_rows)  # the parked rows' token given back
        reserve = snap.prefills.kv_reserve_tokens
        assert len(reserve) == len(candidates)
        for i, req in enumerate(candidates):  # the continuing chunk first, if any
            want = min(req.sampling_params.max_new_tokens, CLIP_MAX_NEW_TOKENS)
            assert reserve[i] == want + adder.per_req_token_overhead
        checked += 1

    monkeypatch.setattr(hook, "apply_adder", check_adder)
    reqs = [cs.add_request(200, 60, ignore_eos=j % 2 == 0) for j in range(40)]
    reqs.append(cs.add_request(100, CLIP_MAX_NEW_TOKENS + 300))
    for i in range(120):
        if i % 3 == 0:
            reqs.append(cs.add_request(150 + i, 20 + i % 9, ignore_eos=i % 2 == 0))
        if i == 12:
            reqs.append(cs.add_request(100, 40, custom_params=TIGHT))
            reqs += [cs.add_request(2000, 5) for _ in range(4)]
        cs.step()
        clock.advance_ms(12.0)
    assert checked > 30
    assert hook.num_fallbacks == 0


def test_reserve_rules_per_row(tmp_path: Path) -> None:
    """Running rows: min(max_new - len(output_ids), CLIP) * ratio, ratio 1.0 with ignore_eos
    (PrefillAdder._get_running_request_total_token_offset); the same on a real adder."""
    from sglang.srt.managers.schedule_policy import PrefillAdder

    from fairbatching_sglang.sglang_adapter.snapshot import (
        SnapshotCache,
        output_lens,
        running_reserve,
    )

    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, "radix")
    specs = [(60, True), (60, False), (CLIP_MAX_NEW_TOKENS + 900, True), (90, False)]
    reqs = [cs.add_request(50, n, ignore_eos=ign) for n, ign in specs]
    for _ in range(4):
        cs.step()
    batch = cs.s.running_batch
    assert batch.reqs == reqs
    ratio = 0.25
    cache = SnapshotCache(cs.s.fairbatching._pool)
    cache.update(batch.reqs, LOOSE.default_slo, 0.0)
    got = running_reserve(cache, output_lens(batch.reqs), ratio)
    want = sum(
        min(n - len(r.output_ids), CLIP_MAX_NEW_TOKENS) * (1.0 if ign else ratio)
        for r, (n, ign) in zip(reqs, specs, strict=True)
    )
    assert got == pytest.approx(want)
    adder = PrefillAdder(
        1, cs.s.tree_cache, cs.s.token_to_kv_pool_allocator, batch, ratio, 16384, 2048, 0
    )
    free = cs.s.token_to_kv_pool_allocator.available_size() + cs.s.tree_cache.evictable_size()
    assert free - adder.rem_total_tokens == pytest.approx(got)


# --- c. aborts and parked-step accounting -----------------------------------------------------
@loops
def test_aborted_parked_request_is_released(tmp_path: Path, overlap: bool, tree_cache: str) -> None:
    """Scheduler.abort_request only sets `to_finish` on a running request; it completes (and
    its KV is freed) when the row runs once more. A parked row being aborted must therefore
    run at once and never be parked again."""
    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache, enable_overlap=overlap)
    reqs = _start_parking(cs, clock)
    aborted: list[Any] = []
    steps_to_finish: list[int] = []
    pending: dict[int, int] = {}
    for step in range(800):
        batch = cs.step()
        clock.advance_ms(12.0)
        running = cs.s.running_batch
        parked_now = batch is not None and batch.forward_mode.is_mixed() and bool(running.reqs)
        if parked_now:  # `running` is the parked batch
            assert not any(r is a for r in running.reqs for a in aborted), "aborted row parked"
        for key, since in list(pending.items()):
            req = next(r for r in aborted if id(r) == key)
            if req.finished():
                steps_to_finish.append(step - since)
                del pending[key]
        if parked_now and len(aborted) < 4:
            victim = running.reqs[len(running.reqs) // 2]  # a parked row
            cs.abort(victim)
            assert victim.to_finish is not None
            aborted.append(victim)
            pending[id(victim)] = step
        if batch is None and not cs.s.waiting_queue and not running.reqs:
            break
    assert len(aborted) == 4 and not pending
    # Runs in the next step; its result is processed then (normal) or a step later (overlap).
    assert max(steps_to_finish) <= (2 if overlap else 1)
    cs.drain()
    cs.step()
    for req in aborted:
        assert req.finished() and req.finished_reason.to_json()["type"] == "abort"
        assert len(req.output_ids) <= req.sampling_params.max_new_tokens
    others = [r for r in reqs if all(r is not a for a in aborted)]
    assert all(r.finished() for r in others)
    assert [len(r.output_ids) for r in others] == [r.sampling_params.max_new_tokens for r in others]
    cache = cs.s.tree_cache
    assert cache.protected_size() == 0
    assert cs.s.token_to_kv_pool_allocator.available_size() + cache.evictable_size() == KV_TOKENS


@loops
def test_parked_steps_count_only_rows_that_sat_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool, tree_cache: str
) -> None:
    """parked_steps: consecutive steps a row sat out because the policy parked it. A row that
    ran this step counts 0, whatever the plan said: also when the split fails (every row runs)
    or a planned row was filtered; a row split off counts one more each step it sits out."""
    clock = FakeClock()
    cs = _scheduler(tmp_path, clock, tree_cache, enable_overlap=overlap)
    hook = cs.s.fairbatching
    pool = hook._pool
    real_split = batch_ops.split_parked
    fail = {"on": False}

    def flaky_split(batch: Any, parked: frozenset[Any]) -> Any:
        if fail["on"]:
            raise RuntimeError("split bug")
        return real_split(batch, parked)

    monkeypatch.setattr(hook_module, "split_parked", flaky_split)
    reqs = _start_parking(cs, clock)
    before: dict[int, int] = {}
    parked_seen = failed_with_plan = 0
    for step in range(600):
        fail["on"] = step % 5 == 4
        batch = cs.step()
        clock.advance_ms(12.0)
        if batch is None:
            if not cs.s.waiting_queue and not cs.s.running_batch.reqs:
                break
            continue
        plan = hook.last_plan
        ran = _decode_rows(batch)
        for req in ran:
            assert pool.parked_steps[req.fairbatching_state.slot] == 0
        running = cs.s.running_batch
        if batch.forward_mode.is_mixed() and running.reqs and not fail["on"]:
            for req in running.reqs:  # the parked batch
                st = req.fairbatching_state
                assert pool.parked_steps[st.slot] == before.get(id(req), 0) + 1
                parked_seen += 1
        if fail["on"] and plan is not None and plan.parked_rows:
            failed_with_plan += 1
        before = {id(r): int(pool.parked_steps[r.fairbatching_state.slot]) for r in running.reqs}
    assert parked_seen >= 50 and failed_with_plan >= 1
    assert hook.num_fallbacks >= failed_with_plan
    _finish(cs, reqs)

"""The router's pure decisions (no I/O): budget accounting, FIFO queue, health, fallbacks."""

from __future__ import annotations

import pytest

from fairbatching_sglang.router.request_tokens import request_prefill_tokens
from fairbatching_sglang.router.state import AdmissionState, budget_from_loads, parse_loads_body


def loads(*budgets: int | None) -> dict:
    return {
        "loads": [
            {"dp_rank": r, "fairbatching_prefill_admission_tokens": b}
            for r, b in enumerate(budgets)
        ]
    }


def polled(*budgets: int | None, now: float = 0.0, **kw) -> AdmissionState:
    st = AdmissionState([f"http://w{i}" for i in range(len(budgets))], **kw)
    for i, b in enumerate(budgets):
        st.on_poll_ok(i, loads(b), sent_at=now)
    return st


def test_budget_from_loads() -> None:
    assert budget_from_loads(loads(100, 250)) == 350  # DP ranks add up
    assert budget_from_loads(loads(None)) is None  # stock SGLang / estimate failed
    assert budget_from_loads(loads(None, 7)) == 7
    assert budget_from_loads({"loads": []}) is None
    with pytest.raises(ValueError):
        budget_from_loads({"error": "nope"})


def test_largest_fitting_budget_and_since_poll_accounting() -> None:
    st = polled(3000, 2500)
    # Each dispatch is charged to its worker until the next poll: picks water-fill.
    assert [st.pick(1000, now=1.0) for _ in range(5)] == [0, 1, 0, 1, 0]
    assert [w.effective_budget for w in st.workers] == [0, 500]
    assert st.pick(600, now=1.0) is None  # nobody has 600 left
    assert st.pick(500, now=1.0) == 1
    assert [w.in_flight for w in st.workers] == [3, 3]


def test_poll_resets_tally_except_unsettled_dispatches() -> None:
    st = polled(2000, 0, settle_s=0.05)
    assert st.pick(1500, now=10.0) == 0
    assert st.pick(400, now=10.98) == 0
    # Poll sent at 11.0: the dispatch at 10.98 may not be visible yet and stays charged.
    st.on_poll_ok(0, loads(2000 - 1500), sent_at=11.0)
    assert st.workers[0].consumed_tokens == 400 and st.workers[0].effective_budget == 100
    st.on_poll_ok(0, loads(100), sent_at=12.0)
    assert st.workers[0].consumed_tokens == 0 and st.workers[0].effective_budget == 100


def test_fifo_queue_drains_on_poll_head_first() -> None:
    st = polled(0, 0, max_admission_tokens=100_000)
    assert st.pick(10, now=0.0) is None
    st.enqueue("big", 5000)
    st.enqueue("small", 10)
    # A new request may not overtake the queue even if it would fit somewhere.
    st.on_poll_ok(1, loads(100), sent_at=1.0)
    assert st.pick(10, now=1.0) is None
    assert st.drain(now=1.0) == []  # head (5000) does not fit: strict FIFO, small waits too
    st.on_poll_ok(0, loads(6000), sent_at=2.0)
    assert st.drain(now=2.0) == [("big", 0), ("small", 0)]
    assert not st.queue and st.num_queued == 2


def test_retry_goes_to_front_and_dead_tickets_are_dropped() -> None:
    st = polled(0)
    st.enqueue("a", 10)
    st.enqueue("gone", 10)
    st.enqueue("retry", 10, front=True)
    st.on_poll_ok(0, loads(1000), sent_at=1.0)
    assert st.drain(now=1.0, alive=lambda t: t != "gone") == [("retry", 0), ("a", 0)]
    assert st.remove("a") is False


def test_oversize_prompt_waits_for_an_idle_replica() -> None:
    st = polled(8000, 3000)  # 8000 = the largest budget seen (an idle replica)
    assert st.pick(20000, now=0.0) == 0  # capped at 8000: fits only the idle one
    assert st.pick(20000, now=0.0) is None
    explicit = polled(8000, 3000, max_admission_tokens=2000)
    assert explicit.pick(20000, now=0.0) == 0
    # The dispatch is charged its full size: worker 0 is now far below zero.
    assert explicit.pick(20000, now=0.0) == 1
    assert explicit.pick(20000, now=0.0) is None


def test_unhealthy_workers_leave_routing_until_a_poll_succeeds() -> None:
    st = polled(5000, 1000)
    st.on_poll_failed(0, "ConnectError")
    assert st.pick(10, now=0.0) == 1
    st.on_dispatch_failed(1, "refused")
    assert st.workers[1].in_flight == 0 and st.pick(10, now=0.0) is None
    st.on_poll_ok(0, loads(5000), sent_at=1.0)
    assert st.pick(10, now=1.0) == 0
    s = st.stats()
    assert s["workers"][1]["last_error"] == "refused" and not s["workers"][1]["healthy"]


def test_workers_without_a_budget() -> None:
    st = polled(None, 500)
    assert st.pick(100, now=0.0) == 1  # the one that publishes a budget
    assert st.pick(1000, now=0.0) is None  # ...and only it, while it does
    dark = polled(None, None)
    assert [dark.pick(10**6, now=0.0) for _ in range(3)] == [0, 1, 0]  # least in-flight
    assert dark.num_fallback_picks == 3


def test_bad_payload_marks_worker_down() -> None:
    st = polled(100)
    with pytest.raises(ValueError):
        st.on_poll_ok(0, {"detail": "x"}, sent_at=1.0)
    assert not st.workers[0].healthy and st.workers[0].num_poll_failures == 1


def test_request_prefill_tokens() -> None:
    assert request_prefill_tokens({"input_ids": list(range(1234))}) == 1234
    assert request_prefill_tokens({"input_ids": [[1, 2], [3, 4, 5]]}) == 5
    assert request_prefill_tokens({"text": "x" * 400}) == 100
    assert request_prefill_tokens({"text": "x" * 400}, chars_per_token=2) == 200
    assert request_prefill_tokens({"prompt": [1, 2, 3]}) == 3
    msgs = [{"role": "user", "content": "a" * 40}, {"content": [{"type": "text", "text": "b" * 8}]}]
    assert request_prefill_tokens({"messages": msgs}) == 12
    assert request_prefill_tokens({}) == 1 and request_prefill_tokens([1]) == 1


def test_budget_must_be_a_finite_integer() -> None:
    for bad in (float("inf"), float("nan"), True, "5000", 1.5):
        with pytest.raises(ValueError):
            budget_from_loads(loads(bad))  # type: ignore[arg-type]
    assert budget_from_loads(loads(2.0e3)) == 2000  # type: ignore[arg-type]
    st = polled(100)
    with pytest.raises(ValueError):
        st.on_poll_ok(0, loads(float("inf")), sent_at=1.0)  # type: ignore[arg-type]
    assert not st.workers[0].healthy and "finite" in (st.workers[0].last_error or "")
    with pytest.raises(ValueError):
        parse_loads_body(b'{"loads": [{"fairbatching_prefill_admission_tokens": Infinity}]}')

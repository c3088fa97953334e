from __future__ import annotations

from fairbatching_sglang.sim.event_queue import EventKind, EventQueue


def test_order_is_time_then_kind_then_insertion() -> None:
    q = EventQueue()
    q.push(5.0, EventKind.SCHEDULE, "wake")
    q.push(5.0, EventKind.ARRIVAL, "a1")
    q.push(1.0, EventKind.ARRIVAL, "early")
    q.push(5.0, EventKind.STEP_END, "step")
    q.push(5.0, EventKind.ARRIVAL, "a2")
    assert q.peek_time_ms() == 1.0
    got = [q.pop().payload for _ in range(len(q))]
    # At one instant: a step ends first, then arrivals in the order they were queued, then an
    # idle engine wakes up (so it sees every arrival of that instant).
    assert got == ["early", "step", "a1", "a2", "wake"]
    assert q.peek_time_ms() == float("inf")

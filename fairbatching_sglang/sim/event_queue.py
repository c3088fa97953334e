"""Event queue with an explicit ordering key: (time_ms, priority, sequence number).

Ties at the same virtual time are broken by priority (a step ending is handled before a request
arriving at that instant, so the arrival is seen by the next schedule, as on a real engine), then
by insertion order, so a run is deterministic whatever the heap does with equal keys.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class EventKind(IntEnum):
    STEP_END = 0
    ARRIVAL = 1
    SCHEDULE = 2  # an idle engine wakes after every arrival of that instant is queued
    POLL = 3  # cluster: the router refreshes its load snapshot (after everything else at t)


@dataclass(frozen=True, order=True)
class Event:
    time_ms: float
    kind: EventKind
    seq: int
    payload: Any = field(compare=False, default=None)


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = itertools.count()

    def push(self, time_ms: float, kind: EventKind, payload: Any = None) -> Event:
        event = Event(time_ms, kind, next(self._seq), payload)
        heapq.heappush(self._heap, event)
        return event

    def pop(self) -> Event:
        return heapq.heappop(self._heap)

    def peek_time_ms(self) -> float:
        return self._heap[0].time_ms if self._heap else float("inf")

    def __len__(self) -> int:
        return len(self._heap)

"""The router's decisions, without I/O or clock (time comes in as an argument).

Per worker it keeps the prefill admission budget of the last successful `/v1/loads` poll and
the prompt tokens dispatched to it since: the effective budget is their difference (the worker's
own estimate cannot yet see those requests). A poll resets the tally, except for dispatches made
less than `settle_s` before the poll was sent (they may not have reached the scheduler yet).

Choice (`core.routing.choose_by_admission_budget`): the healthy worker with the largest effective
budget among those that can take the prompt. None fits -> the request waits in a FIFO queue at the
router; every poll drains the queue head-first while the head fits (strict FIFO: a small request
never overtakes a waiting large one, so large prompts cannot starve).

Workers whose poll fails (refused, timeout, non-200, bad JSON) or whose connection is refused at
dispatch leave routing until a poll succeeds again. A worker that answers but publishes no budget
(`fairbatching_prefill_admission_tokens` null: stock SGLang, or the estimate failed) is not routed
to while others publish one; when no healthy worker publishes one, requests go to the healthy
worker with the fewest in-flight requests (counted in `num_fallback_picks`).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fairbatching_sglang.core.routing import choose_by_admission_budget, choose_least

BUDGET_FIELD = "fairbatching_prefill_admission_tokens"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_loads_body(content: bytes) -> Any:
    """A /v1/loads body as strict JSON: `Infinity`, `-Infinity` and `NaN` (which Python's json
    accepts) are refused, so a budget can never be a float that int() chokes on."""
    return json.loads(content, parse_constant=_reject_constant)


def _budget(value: Any) -> int:
    # bool is an int in Python, and a budget of `true` is no budget.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{BUDGET_FIELD} is not a number")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{BUDGET_FIELD} is not a finite integer")
    return int(value)


def budget_from_loads(payload: Any) -> int | None:
    """Sum of the admission budget over the DP ranks of a `/v1/loads` answer; None when no rank
    reports one. Raises ValueError on a payload that is not a /v1/loads answer."""
    if not isinstance(payload, dict) or not isinstance(payload.get("loads"), list):
        raise ValueError("not a /v1/loads answer (no 'loads' list)")
    values = [
        _budget(rank[BUDGET_FIELD])
        for rank in payload["loads"]
        if isinstance(rank, dict) and rank.get(BUDGET_FIELD) is not None
    ]
    return sum(values) if values else None


@dataclass
class WorkerView:
    url: str
    healthy: bool = False
    budget: int | None = None
    pending: list[tuple[float, int]] = field(default_factory=list)  # (dispatch time, tokens)
    in_flight: int = 0
    num_dispatched: int = 0
    num_polls: int = 0
    num_poll_failures: int = 0
    num_dispatch_failures: int = 0
    last_error: str | None = None
    last_loads: dict[str, Any] | None = None

    @property
    def consumed_tokens(self) -> int:
        return sum(t for _, t in self.pending)

    @property
    def effective_budget(self) -> int | None:
        return None if self.budget is None else self.budget - self.consumed_tokens


@dataclass
class _Waiter:
    ticket: Any
    tokens: int


class AdmissionState:
    def __init__(
        self,
        urls: list[str] | tuple[str, ...],
        *,
        settle_s: float = 0.05,
        max_admission_tokens: int | None = None,
    ) -> None:
        self.workers = [WorkerView(u) for u in urls]
        self.settle_s = settle_s
        self.max_admission_tokens = max_admission_tokens
        self.max_budget_seen = 0
        self.queue: deque[_Waiter] = deque()
        self.num_fallback_picks = 0
        self.num_queued = 0  # requests that had to wait (ever)

    # -- choice ---------------------------------------------------------------------------------
    def _cap(self) -> int | None:
        if self.max_admission_tokens is not None:
            return self.max_admission_tokens
        return self.max_budget_seen or None

    def choose(self, tokens: int) -> int | None:
        """Worker index for a request of `tokens` prompt tokens, or None (no room / no worker)."""
        healthy = [i for i, w in enumerate(self.workers) if w.healthy]
        reporting = [i for i in healthy if self.workers[i].budget is not None]
        if reporting:
            budgets = [self.workers[i].effective_budget for i in reporting]
            k = choose_by_admission_budget(budgets, tokens, max_admission_tokens=self._cap())
            return None if k is None else reporting[k]
        if healthy:
            self.num_fallback_picks += 1
            return healthy[choose_least([self.workers[i].in_flight for i in healthy])]
        return None

    def _assign(self, i: int, tokens: int, now: float) -> None:
        w = self.workers[i]
        w.pending.append((now, tokens))
        w.in_flight += 1
        w.num_dispatched += 1

    def pick(self, tokens: int, now: float) -> int | None:
        """Route a new request now if it may (nobody waiting ahead of it and a worker has room);
        None: the caller enqueues it."""
        if self.queue:
            return None
        i = self.choose(tokens)
        if i is not None:
            self._assign(i, tokens, now)
        return i

    # -- queue ----------------------------------------------------------------------------------
    def enqueue(self, ticket: Any, tokens: int, *, front: bool = False) -> None:
        """front: a request re-routed after its worker failed keeps its place at the head."""
        waiter = _Waiter(ticket, tokens)
        if front:
            self.queue.appendleft(waiter)
        else:
            self.queue.append(waiter)
            self.num_queued += 1

    def remove(self, ticket: Any) -> bool:
        for waiter in self.queue:
            if waiter.ticket is ticket:
                self.queue.remove(waiter)
                return True
        return False

    def drain(
        self, now: float, alive: Callable[[Any], bool] = lambda ticket: True
    ) -> list[tuple[Any, int]]:
        """Assign waiting requests head-first while the head fits; returns (ticket, worker).
        Tickets for which alive() is False (their waiter gave up) are dropped unassigned."""
        out: list[tuple[Any, int]] = []
        while self.queue:
            head = self.queue[0]
            if not alive(head.ticket):
                self.queue.popleft()
                continue
            i = self.choose(head.tokens)
            if i is None:
                break
            self.queue.popleft()
            self._assign(i, head.tokens, now)
            out.append((head.ticket, i))
        return out

    # -- events ---------------------------------------------------------------------------------
    def on_poll_ok(self, i: int, payload: Any, sent_at: float) -> None:
        """A successful /v1/loads answer for worker i, whose request was sent at `sent_at`.
        Raises ValueError (after marking the worker down) on a payload that is not one."""
        w = self.workers[i]
        try:
            budget = budget_from_loads(payload)
        except (ValueError, TypeError, OverflowError) as exc:
            self.on_poll_failed(i, f"poll: bad /v1/loads answer: {exc}")
            raise ValueError(str(exc)) from exc
        w.num_polls += 1
        w.healthy = True
        w.budget = budget
        w.last_loads = payload
        w.last_error = None
        cutoff = sent_at - self.settle_s
        w.pending = [(t, n) for t, n in w.pending if t >= cutoff]
        if budget is not None:
            self.max_budget_seen = max(self.max_budget_seen, budget)

    def on_poll_failed(self, i: int, error: str) -> None:
        w = self.workers[i]
        w.num_poll_failures += 1
        w.healthy = False
        w.budget = None
        w.last_error = error

    def on_dispatch_failed(self, i: int, error: str) -> None:
        """The worker refused the connection: out of routing until a poll succeeds again."""
        w = self.workers[i]
        w.num_dispatch_failures += 1
        w.healthy = False
        w.budget = None
        w.last_error = error
        self.on_finished(i)

    def on_finished(self, i: int) -> None:
        w = self.workers[i]
        w.in_flight = max(0, w.in_flight - 1)

    # -- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "queue_length": len(self.queue),
            "queued_tokens": sum(w.tokens for w in self.queue),
            "num_queued_total": self.num_queued,
            "num_fallback_picks": self.num_fallback_picks,
            "max_admission_tokens": self._cap(),
            "workers": [
                {
                    "worker": i,  # index in --worker-url order; URLs are not published
                    "healthy": w.healthy,
                    "budget": w.budget,
                    "consumed_tokens": w.consumed_tokens,
                    "effective_budget": w.effective_budget,
                    "in_flight": w.in_flight,
                    "num_dispatched": w.num_dispatched,
                    "num_polls": w.num_polls,
                    "num_poll_failures": w.num_poll_failures,
                    "num_dispatch_failures": w.num_dispatch_failures,
                    "last_error": w.last_error,
                }
                for i, w in enumerate(self.workers)
            ],
        }

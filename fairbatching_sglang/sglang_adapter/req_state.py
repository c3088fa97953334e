"""Per-request timing state kept by the adapter, attached to SGLang's Req object.

Why not SGLang's own fields: `last_decode_finish_time` is not updated for decode rows of mixed
batches, and under the overlap scheduler `len(req.output_ids)` lags one step for rows whose batch
is still in flight. The adapter counts the tokens it has *scheduled* instead, which is exact in
both loops (one token per decode row per step; speculative decoding is refused).

Layout: the values live in hook-owned numpy columns (`ReqStatePool`), one slot per live request;
the `ReqTiming` on the Req (`req.fairbatching_state`) holds only its slot. A step then reads and
updates hundreds of requests with one gather / scatter per column instead of one attribute access
per request and field. The slot goes back to the pool when the ReqTiming is freed, i.e. with the
request (the Req is its only long-lived owner), so nothing here can leak.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fairbatching_sglang.core.slo import SloTargets

TTFT_KEY = "fairbatching_ttft_slo_ms"
TPOT_KEY = "fairbatching_tpot_slo_ms"
STATE_ATTR = "fairbatching_state"

# (name, dtype): seven constants for a request's lifetime, then the three counters.
_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("arrival_ms", np.float64),
    ("ttft_slo_ms", np.float64),
    ("tpot_slo_ms", np.float64),
    ("prompt_len", np.int64),
    ("max_new_tokens", np.int64),
    ("can_park", np.bool_),
    # SGLang reserves a running ignore_eos row's whole remaining output (ratio 1.0).
    ("ignore_eos", np.bool_),
    ("num_scheduled_tokens", np.int64),
    ("parked_steps", np.int64),
    # Expected end of the step that produces the first token (NaN until it is scheduled).
    ("first_token_ms", np.float64),
)


class ReqStatePool:
    """Per-request columns indexed by slot; a slot is owned by one live ReqTiming.

    Index with an int64 array of slots (`pool.num_scheduled_tokens[slots]`) to gather a column
    for many requests; scatter the same way. Capacity doubles when full (the columns are then
    new arrays), so keep slots, not the column arrays, across the creation of requests.
    """

    __slots__ = (
        "_free",
        "arrival_ms",
        "can_park",
        "capacity",
        "first_token_ms",
        "ignore_eos",
        "max_new_tokens",
        "num_scheduled_tokens",
        "parked_steps",
        "prompt_len",
        "tpot_slo_ms",
        "ttft_slo_ms",
    )

    arrival_ms: np.ndarray
    ttft_slo_ms: np.ndarray
    tpot_slo_ms: np.ndarray
    prompt_len: np.ndarray
    max_new_tokens: np.ndarray
    can_park: np.ndarray
    ignore_eos: np.ndarray
    num_scheduled_tokens: np.ndarray
    parked_steps: np.ndarray
    first_token_ms: np.ndarray

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = 0
        self._free: list[int] = []
        for name, dtype in _COLUMNS:
            setattr(self, name, np.empty(0, dtype=dtype))
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for name, dtype in _COLUMNS:
            col = np.empty(capacity, dtype=dtype)
            col[:old] = getattr(self, name)
            setattr(self, name, col)
        # Pop order: lowest slot first (keeps the live slots dense).
        self._free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity

    def alloc(self) -> int:
        if not self._free:
            self._grow(max(2 * self.capacity, 64))
        slot = self._free.pop()
        # The constant columns are the caller's to write (ReqTiming does).
        self.num_scheduled_tokens[slot] = 0
        self.parked_steps[slot] = 0
        self.first_token_ms[slot] = math.nan
        return slot

    def release(self, slot: int) -> None:
        self._free.append(slot)

    @property
    def num_live(self) -> int:
        return self.capacity - len(self._free)


def _column_property(name: str, cast: Callable[[Any], Any], writable: bool) -> property:
    def get(self: ReqTiming) -> Any:
        return cast(getattr(self.pool, name)[self.slot])

    def set_(self: ReqTiming, value: Any) -> None:
        getattr(self.pool, name)[self.slot] = value

    return property(get, set_ if writable else None, doc=f"this request's {name} (pool column)")


class ReqTiming:
    """One request's slot in the pool; the attributes read and write the pool's columns."""

    __slots__ = ("pool", "slot")

    def __init__(
        self,
        pool: ReqStatePool,
        arrival_ms: float,
        slo: SloTargets,
        prompt_len: int = 0,
        max_new_tokens: int = 0,
        can_park: bool = True,
        ignore_eos: bool = False,
    ) -> None:
        slot = pool.alloc()
        self.pool = pool
        self.slot = slot
        pool.arrival_ms[slot] = arrival_ms
        pool.ttft_slo_ms[slot] = slo.ttft_slo_ms
        pool.tpot_slo_ms[slot] = slo.tpot_slo_ms
        pool.prompt_len[slot] = prompt_len
        pool.max_new_tokens[slot] = max_new_tokens
        pool.can_park[slot] = can_park
        pool.ignore_eos[slot] = ignore_eos

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.release(self.slot)

    def __copy__(self) -> ReqTiming:
        """A new slot with the same values (a shared slot would be freed twice)."""
        pool, slot = self.pool, self.slot
        twin = ReqTiming(
            pool,
            self.arrival_ms,
            SloTargets(self.ttft_slo_ms, self.tpot_slo_ms),
            prompt_len=self.prompt_len,
            max_new_tokens=self.max_new_tokens,
            can_park=self.can_park,
            ignore_eos=self.ignore_eos,
        )
        for name in ("num_scheduled_tokens", "parked_steps", "first_token_ms"):
            getattr(pool, name)[twin.slot] = getattr(pool, name)[slot]
        return twin

    def __deepcopy__(self, memo: dict[int, Any]) -> ReqTiming:
        return self.__copy__()  # the pool is the hook's, shared on purpose

    def __reduce__(self) -> Any:
        # A slot means nothing in another process.
        raise TypeError("ReqTiming lives in its hook's pool and cannot be pickled")

    arrival_ms = _column_property("arrival_ms", float, False)
    ttft_slo_ms = _column_property("ttft_slo_ms", float, False)
    tpot_slo_ms = _column_property("tpot_slo_ms", float, False)
    prompt_len = _column_property("prompt_len", int, False)
    max_new_tokens = _column_property("max_new_tokens", int, False)
    can_park = _column_property("can_park", bool, False)
    ignore_eos = _column_property("ignore_eos", bool, False)
    num_scheduled_tokens = _column_property("num_scheduled_tokens", int, True)
    parked_steps = _column_property("parked_steps", int, True)
    first_token_ms = _column_property("first_token_ms", float, True)


def resolve_slo(custom_params: Mapping[str, Any] | None, default: SloTargets) -> SloTargets:
    """Per-request SLOs from sampling params' custom_params; bad values fall back to default.

    A bad value must not fail the request inside the scheduler (the server must never die for
    the policy), so it is ignored rather than raised.
    """
    if not custom_params:
        return default
    ttft = _positive(custom_params.get(TTFT_KEY))
    tpot = _positive(custom_params.get(TPOT_KEY))
    if ttft is None and tpot is None:
        return default
    return SloTargets(
        ttft if ttft is not None else default.ttft_slo_ms,
        tpot if tpot is not None else default.tpot_slo_ms,
    )


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def timing_of(
    req: Any,
    pool: ReqStatePool,
    default: SloTargets,
    fallback_arrival_ms: float,
    can_park: Callable[[Any], bool] | None = None,
) -> ReqTiming:
    """The request's state, created (with a slot in `pool`) on first sight.

    Arrival is SGLang's `time_stats.scheduler_recv_time` (perf_counter seconds, the clock the
    hook also reads); a request without it (0.0) arrives at first sight.
    """
    state = getattr(req, STATE_ATTR, None)
    if state is None:
        recv_s = float(getattr(getattr(req, "time_stats", None), "scheduler_recv_time", 0.0) or 0.0)
        arrival = recv_s * 1000.0 if recv_s > 0 else fallback_arrival_ms
        sp = req.sampling_params
        slo = resolve_slo(getattr(sp, "custom_params", None), default)
        state = ReqTiming(
            pool,
            arrival,
            slo,
            prompt_len=len(req.origin_input_ids),
            max_new_tokens=int(sp.max_new_tokens or 0),
            can_park=can_park(req) if can_park is not None else True,
            ignore_eos=bool(sp.ignore_eos),
        )
        setattr(req, STATE_ATTR, state)
    return state

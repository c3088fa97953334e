"""Per-request timing state kept by the adapter, attached to SGLang's Req object.

Why not SGLang's own fields: `last_decode_finish_time` is not updated for decode rows of mixed
batches, and under the overlap scheduler `len(req.output_ids)` lags one step for rows whose batch
is still in flight. The adapter counts the tokens it has *scheduled* instead, which is exact in
both loops (one token per decode row per step; speculative decoding is refused).

The state lives on the Req (`req.fairbatching_state`): it is freed with the request, so nothing
here can leak, and lookups cost one attribute read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from fairbatching_sglang.core.slo import SloTargets

TTFT_KEY = "fairbatching_ttft_slo_ms"
TPOT_KEY = "fairbatching_tpot_slo_ms"
_ATTR = "fairbatching_state"


class ReqTiming:
    """Mutable per-request counters (slots: hundreds are read every step)."""

    __slots__ = (
        "arrival_ms",
        "can_park",
        "first_token_ms",
        "max_new_tokens",
        "num_scheduled_tokens",
        "parked_steps",
        "prompt_len",
        "tpot_slo_ms",
        "ttft_slo_ms",
    )

    def __init__(
        self,
        arrival_ms: float,
        slo: SloTargets,
        prompt_len: int = 0,
        max_new_tokens: int = 0,
        can_park: bool = True,
    ) -> None:
        self.arrival_ms = arrival_ms
        # Constant per request, cached so the per-step snapshot reads one object per row.
        self.prompt_len = prompt_len
        self.max_new_tokens = max_new_tokens
        self.can_park = can_park
        self.ttft_slo_ms = slo.ttft_slo_ms
        self.tpot_slo_ms = slo.tpot_slo_ms
        self.num_scheduled_tokens = 0
        self.parked_steps = 0
        # Expected end of the step that produces the first token (NaN until it is scheduled).
        self.first_token_ms = math.nan


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
    default: SloTargets,
    fallback_arrival_ms: float,
    can_park: Callable[[Any], bool] | None = None,
) -> ReqTiming:
    """The request's state, created on first sight.

    Arrival is SGLang's `time_stats.scheduler_recv_time` (perf_counter seconds, the clock the
    hook also reads); a request without it (0.0) arrives at first sight.
    """
    state = getattr(req, _ATTR, None)
    if state is None:
        recv_s = float(getattr(getattr(req, "time_stats", None), "scheduler_recv_time", 0.0) or 0.0)
        arrival = recv_s * 1000.0 if recv_s > 0 else fallback_arrival_ms
        sp = req.sampling_params
        slo = resolve_slo(getattr(sp, "custom_params", None), default)
        state = ReqTiming(
            arrival,
            slo,
            prompt_len=len(req.origin_input_ids),
            max_new_tokens=int(sp.max_new_tokens or 0),
            can_park=can_park(req) if can_park is not None else True,
        )
        setattr(req, _ATTR, state)
    return state

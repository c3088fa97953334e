"""Load estimate an instance publishes for a router: how much more prefill it can take in time.

prefill admission budget: prompt tokens the instance can still accept and prefill within the
TTFT SLO, after the time that running decodes must get (to keep their TPOT pace) and after the
prefill tokens already queued. Model (a choice; the paper gives no formula):

- Over the horizon H = ttft_slo_ms, steps run at the decode pace, one every tpot_slo_ms, each
  carrying every running decode (the mandatory work) plus a prefill chunk that fills the rest of
  the step's time: c = the largest chunk with T(B decodes, S KV tokens, chunk c) <= tpot_slo_ms,
  capped by max_prefill_tokens.
- With no decodes the better of full chunks back to back and TPOT-paced chunks (above), so the
  capacity never increases with the decode count (a router comparing instances needs that).
- capacity = number of steps in H * c; budget = max(0, capacity - queued prefill tokens).
- Decode KV growth over the horizon and prefix-cache hits are ignored: the decode terms are
  priced at the current KV sum, and queued tokens are counted uncached (conservative).

max_running_requests_under_slo: the largest decode batch whose decode-only step (at the current
mean KV length per request) still fits in one TPOT, i.e. how many requests the instance can keep
on pace. It fills SGLang's `max_running_requests_under_SLO`, from which `utilization` follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fairbatching_sglang.core.cost_model import HingeCostModel

_MAX_REQS_SEARCH = 1 << 20


@dataclass(frozen=True)
class LoadEstimate:
    prefill_admission_tokens: int
    prefill_capacity_tokens: int
    queued_prefill_tokens: int
    max_running_requests_under_slo: int
    decode_step_ms: float


def estimate_load(
    cost_model: HingeCostModel,
    *,
    num_decodes: int,
    decode_kv_tokens: int,
    queued_prefill_tokens: int,
    ttft_slo_ms: float,
    tpot_slo_ms: float,
    max_prefill_tokens: int,
    default_kv_tokens_per_req: int = 1024,
) -> LoadEstimate:
    """See the module docstring. All token counts >= 0, SLOs > 0."""
    if num_decodes < 0 or decode_kv_tokens < 0 or queued_prefill_tokens < 0:
        raise ValueError("token and request counts must be >= 0")
    if not (ttft_slo_ms > 0 and tpot_slo_ms > 0):
        raise ValueError("SLOs must be > 0")
    if max_prefill_tokens < 1:
        raise ValueError("max_prefill_tokens must be >= 1")

    decode_ms = cost_model.predict_raw_ms(
        num_decodes, float(decode_kv_tokens), 0.0, num_decode_reqs=num_decodes
    )
    capacity = prefill_capacity_tokens(
        cost_model,
        num_decodes=num_decodes,
        decode_kv_tokens=decode_kv_tokens,
        ttft_slo_ms=ttft_slo_ms,
        tpot_slo_ms=tpot_slo_ms,
        max_prefill_tokens=max_prefill_tokens,
    )

    kv_per_req = decode_kv_tokens / num_decodes if num_decodes else default_kv_tokens_per_req
    return LoadEstimate(
        prefill_admission_tokens=max(0, capacity - queued_prefill_tokens),
        prefill_capacity_tokens=capacity,
        queued_prefill_tokens=queued_prefill_tokens,
        max_running_requests_under_slo=_max_reqs_on_pace(cost_model, kv_per_req, tpot_slo_ms),
        decode_step_ms=decode_ms,
    )


def prefill_capacity_tokens(
    cost_model: HingeCostModel,
    *,
    num_decodes: int,
    decode_kv_tokens: float,
    ttft_slo_ms: float,
    tpot_slo_ms: float,
    max_prefill_tokens: int,
) -> int:
    """Prefill tokens the instance can process within one TTFT horizon next to its running
    decodes (the module docstring's capacity, before queued prefills are subtracted). The
    router's hot path: no validation, no requests-on-pace search."""
    if num_decodes:
        chunk = cost_model.max_chunk_tokens_raw(
            tpot_slo_ms,
            num_decodes,
            float(decode_kv_tokens),
            0.0,
            0,
            max_prefill_tokens,
            num_decode_reqs=num_decodes,
        )
        num_steps = math.floor(ttft_slo_ms / tpot_slo_ms)
        return num_steps * chunk
    chunk = max_prefill_tokens
    step_ms = cost_model.predict_raw_ms(chunk, 0.0, chunk * chunk / 2.0)
    num_steps = math.floor(ttft_slo_ms / step_ms) if step_ms > 0 else 0
    if num_steps == 0:
        # One full chunk does not fit in H: take the largest single chunk that does.
        chunk = cost_model.max_chunk_tokens_raw(ttft_slo_ms, 0, 0.0, 0.0, 0, chunk)
        num_steps = 1
    # An idle instance may also run TPOT-paced chunks (smaller chunks pay less attention work);
    # taking the better of the two keeps the capacity non-increasing in the decode count, so an
    # idle instance never looks busier than one with a single decode.
    paced_chunk = cost_model.max_chunk_tokens_raw(tpot_slo_ms, 0, 0.0, 0.0, 0, max_prefill_tokens)
    paced = math.floor(ttft_slo_ms / tpot_slo_ms) * paced_chunk
    return max(num_steps * chunk, paced)


def idle_admission_tokens(
    cost_model: HingeCostModel, *, ttft_slo_ms: float, tpot_slo_ms: float, max_prefill_tokens: int
) -> int:
    """The admission budget of an idle instance (nothing decoding, nothing queued): the most any
    instance can ever offer, used to cap an oversize request's need (core.routing)."""
    return prefill_capacity_tokens(
        cost_model,
        num_decodes=0,
        decode_kv_tokens=0.0,
        ttft_slo_ms=ttft_slo_ms,
        tpot_slo_ms=tpot_slo_ms,
        max_prefill_tokens=max_prefill_tokens,
    )


def _max_reqs_on_pace(cost_model: HingeCostModel, kv_per_req: float, tpot_slo_ms: float) -> int:
    """Largest B with T(B decodes, B * kv_per_req KV) <= tpot (T increases with B)."""

    def fits(b: int) -> bool:
        return cost_model.predict_raw_ms(b, b * kv_per_req, 0.0, num_decode_reqs=b) <= tpot_slo_ms

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi < _MAX_REQS_SEARCH and fits(hi):
        lo, hi = hi, hi * 2
    if hi >= _MAX_REQS_SEARCH and fits(hi):
        return hi
    while hi - lo > 1:  # invariant: fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo

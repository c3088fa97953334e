"""SGLang 0.5.23's PrefillAdder, as far as admission and chunking go (fcfs queue order).

Continue the chunked request first, then add waiting requests in order while the running-request
limit, rem_total_tokens (free KV minus reservations; a new request needs its prompt plus its
clipped max_new_tokens), rem_input_tokens and rem_chunk_tokens allow; a request larger than what is
left of rem_chunk_tokens is truncated and becomes the chunked request, which ends the batch.
"""

from __future__ import annotations

from fairbatching_sglang.sim.request import SimRequest
from fairbatching_sglang.sim.state import InstanceState


def sglang_prefill_chunks(
    state: InstanceState, num_mixed_decode_tokens: int
) -> tuple[tuple[SimRequest, int], ...]:
    cfg = state.config
    rem_chunk = cfg.chunked_prefill_size - num_mixed_decode_tokens
    rem_input = cfg.max_prefill_tokens - num_mixed_decode_tokens
    rem_total = state.admission_room_tokens()
    chunks: list[tuple[SimRequest, int]] = []

    if state.chunked is not None:
        req = state.chunked
        c = min(req.remaining_prefill, rem_chunk)
        if c > 0:
            chunks.append((req, c))
            rem_chunk -= c
            rem_input -= c
            rem_total -= c
        if c < req.remaining_prefill:
            return tuple(chunks)

    num_running = len(state.running) + len(chunks)
    for req in state.waiting:
        if num_running >= cfg.max_running_requests or rem_chunk <= 0:
            break
        state.start_prefill(req)
        need = req.remaining_prefill
        if need + state.new_request_reserve(req) > rem_total:
            break  # NO_TOKEN: SGLang stops scanning the queue here
        if need <= rem_chunk:
            if need > rem_input and chunks:
                break
            chunks.append((req, need))
            rem_chunk -= need
            rem_input -= need
            rem_total -= need + state.new_request_reserve(req)
            num_running += 1
        else:
            chunks.append((req, rem_chunk))
            break
    return tuple(chunks)

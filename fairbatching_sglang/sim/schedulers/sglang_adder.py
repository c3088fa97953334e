"""SGLang 0.5.23's PrefillAdder, as far as admission and chunking go (fcfs queue order).

Continue the chunked request first, then add waiting requests in order while the running-request
limit, rem_total_tokens (free KV minus reservations; a new request needs its prompt plus its
clipped max_new_tokens), rem_input_tokens and rem_chunk_tokens allow; a request larger than what is
left of rem_chunk_tokens is truncated and becomes the chunked request, which ends the batch.

References are to the installed sglang 0.5.23 (`sglang/srt/...`). Mixed decode rows start both
the chunk and the total budget at one token each (mem_cache/prefill_budget.py:68-74, called with
running_bs under --enable-mixed-chunk, managers/scheduler.py:4182). A cache hit the request pins
(prefix hit, or a retracted request's prompt) leaves the evictable pool when locked
(managers/schedule_policy.py:1429-1431), so it counts against rem_total_tokens here too
(InstanceState.new_request_reserve).
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
    rem_total = state.admission_room_tokens() - num_mixed_decode_tokens
    # Physical KV left for this step's prefill; SGLang would evict or fail past it.
    kv_room = state.kv_free_tokens
    chunks: list[tuple[SimRequest, int]] = []

    if state.chunked is not None:
        req = state.chunked
        # available_chunk_tokens (mem_cache/prefill_budget.py:142-145): capped by
        # rem_total_tokens while positive, else a full chunk so the request makes progress.
        avail = int(rem_total)
        c = min(req.remaining_prefill, rem_chunk, avail if avail > 0 else rem_chunk)
        c = min(c, kv_room - req.pending_cached_tokens)
        if c > 0:
            chunks.append((req, c))
            rem_chunk -= c
            rem_input -= c
            rem_total -= c
            kv_room -= c + req.pending_cached_tokens
        if c < req.remaining_prefill:
            return tuple(chunks)
        # Its last chunk reserves its output, clipped max_new_tokens as SGLang counts it
        # (managers/schedule_policy.py:1207-1218).
        rem_total -= min(req.output_tokens, cfg.clip_max_new_tokens)

    num_running = len(state.running) + len(chunks)
    for req in state.waiting:
        if num_running >= state.max_running_requests or rem_chunk <= 0:
            break
        state.start_prefill(req)
        need = req.remaining_prefill
        reserve = state.new_request_reserve(req)  # includes the cache hit it pins
        if need + reserve > rem_total:
            break  # NO_TOKEN: SGLang stops scanning the queue here
        if need <= rem_chunk:
            if need > rem_input and chunks:
                break
            chunks.append((req, need))
            rem_chunk -= need
            rem_input -= need
            rem_total -= need + reserve
            num_running += 1
        else:
            chunks.append((req, rem_chunk))
            break
    return tuple(chunks)

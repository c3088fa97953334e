"""A ScheduleBatch's shape in the cost model's units (P, B, S, Q), as the device prices it.

Extend / mixed batches: the first rows are prefill chunks (c = extend_lens[i] new tokens on
k = prefix_lens[i] cached ones); in a mixed batch the last len(decoding_reqs) rows are the
decode rows `mix_with_running` appended (schedule_batch.py, 0.5.23). A decode row's KV is its
sequence length after `prepare_for_decode` (the token being generated included), the same
S the adapter's accounting uses (hook._account: prompt + scheduled tokens + 1).
"""

from __future__ import annotations

from typing import Any

from fairbatching_sglang.core.cost_model import StepShape, chunk_attn_work


def _seq_lens(batch: Any) -> list[int]:
    lens = batch.seq_lens_cpu
    if lens is not None:
        return [int(x) for x in lens.tolist()]
    return [int(r.seqlen) for r in batch.reqs]


def shape_of(batch: Any) -> StepShape:
    mode = batch.forward_mode
    n = len(batch.reqs)
    if mode.is_decode():
        return StepShape(0, n, sum(_seq_lens(batch)), 0.0)
    if not mode.is_extend():  # idle / prebuilt: no device work
        return StepShape()
    num_decode = len(batch.decoding_reqs or ()) if mode.is_mixed() else 0
    num_prefill_rows = n - num_decode
    extend_lens = batch.extend_lens or []
    prefix_lens = batch.prefix_lens or []
    tokens = 0
    work = 0.0
    for i in range(num_prefill_rows):
        c = int(extend_lens[i]) if i < len(extend_lens) else 0
        k = int(prefix_lens[i]) if i < len(prefix_lens) else 0
        tokens += c
        work += chunk_attn_work(c, k)
    decode_kv = sum(_seq_lens(batch)[num_prefill_rows:]) if num_decode else 0
    return StepShape(tokens, num_decode, decode_kv, work, num_prefill_chunks=num_prefill_rows)

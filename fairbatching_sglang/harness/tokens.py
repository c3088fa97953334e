"""Deterministic prompt token ids of an exact length.

Ids are drawn from [low, high), a range that holds ordinary tokens in Llama-3 and Qwen vocabularies
(special ids sit at the top of both), so no request ends early or hits a control token. Without
hash_ids every request gets its own seeded stream (practically no shared prefixes, so the radix
cache does not flatter any arm). With Mooncake hash_ids, block k of a request is generated from
hash_ids[k] alone: requests sharing a hash block share those 512 tokens exactly, which reproduces
the trace's prefix reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenConfig:
    seed: int = 0
    low: int = 1000
    high: int = 30000
    block_tokens: int = 512


def _stream(cfg: TokenConfig, key: int, salt: int, n: int) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64([cfg.seed, salt, int(key)]))
    return rng.integers(cfg.low, cfg.high, size=n, dtype=np.int64)


def prompt_ids(
    cfg: TokenConfig, rid: int, num_tokens: int, hash_ids: Sequence[int] | None = None
) -> list[int]:
    """Exactly num_tokens ids for request rid (prefix blocks from hash_ids when given)."""
    if num_tokens <= 0:
        raise ValueError(f"num_tokens must be > 0, got {num_tokens}")
    parts: list[np.ndarray] = []
    have = 0
    for h in hash_ids or ():
        if have >= num_tokens:
            break
        take = min(cfg.block_tokens, num_tokens - have)
        parts.append(_stream(cfg, h, 1, cfg.block_tokens)[:take])
        have += take
    if have < num_tokens:
        # Tail past the listed blocks is the request's own (salt 0: never equals a hash block).
        parts.append(_stream(cfg, rid, 0, num_tokens - have))
    return np.concatenate(parts).tolist()

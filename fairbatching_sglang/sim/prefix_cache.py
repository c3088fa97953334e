"""Prefix-cache hits from Mooncake-style hash_ids: an LRU set of cached blocks.

Approximation: hits only save prefill compute; a running request still counts its whole sequence
in KV (shared radix blocks are not de-duplicated), and the cache holds as many blocks as the KV
pool has tokens (evictable space is free space).
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    def __init__(self, capacity_blocks: int, block_tokens: int) -> None:
        self.capacity_blocks = max(0, capacity_blocks)
        self.block_tokens = block_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def match_tokens(self, hash_ids: tuple[int, ...] | None, input_tokens: int) -> int:
        """Cached prefix length in tokens (leading blocks present), leaving one token to compute."""
        if not hash_ids:
            return 0
        n = 0
        for h in hash_ids:
            if h not in self._blocks:
                break
            self._blocks.move_to_end(h)
            n += 1
        return min(n * self.block_tokens, max(0, input_tokens - 1))

    def insert(self, hash_ids: tuple[int, ...] | None) -> None:
        if not hash_ids or not self.capacity_blocks:
            return
        for h in hash_ids:
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)

"""The simulated instance's state that schedulers read: queues, KV pool, SGLang's reservation."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fairbatching_sglang.core import HingeCostModel
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.prefix_cache import PrefixCache
from fairbatching_sglang.sim.request import SimRequest


@dataclass(eq=False)
class InstanceState:
    config: SimConfig
    cost_model: HingeCostModel
    kv_capacity_tokens: int
    waiting: deque[SimRequest] = field(default_factory=deque)
    running: list[SimRequest] = field(default_factory=list)  # decoding (have their first token)
    chunked: SimRequest | None = None  # the one request with a prefill in progress
    kv_used_tokens: int = 0
    new_token_ratio: float = 0.0
    prefix_cache: PrefixCache | None = None
    num_retractions: int = 0

    def __post_init__(self) -> None:
        self.new_token_ratio = self.config.init_new_token_ratio

    @property
    def kv_free_tokens(self) -> int:
        return self.kv_capacity_tokens - self.kv_used_tokens

    def reserved_decode_tokens(self) -> float:
        """SGLang's reservation of running requests' future tokens (new_token_ratio x rest)."""
        clip = self.config.clip_max_new_tokens
        ratio = self.new_token_ratio
        return sum(min(r.remaining_output, clip) for r in self.running) * ratio

    def admission_room_tokens(self) -> float:
        """SGLang's rem_total_tokens: free KV minus the running requests' reservation."""
        return self.kv_free_tokens - self.reserved_decode_tokens()

    def new_request_reserve(self, req: SimRequest) -> int:
        return min(req.remaining_output, self.config.clip_max_new_tokens)

    def start_prefill(self, req: SimRequest) -> None:
        """Match the prefix cache once when a request is first considered; the hit's KV is
        charged when its first chunk actually runs (see Simulator._apply_chunk)."""
        if req.prefix_matched:
            return
        req.prefix_matched = True
        if self.prefix_cache is not None and req.num_retractions == 0:
            hit = self.prefix_cache.match_tokens(req.hash_ids, req.input_tokens)
            req.cached_tokens = hit
            req.prefilled = hit

    def retract(self, req: SimRequest) -> None:
        """Requeue a running request and free its KV; it re-prefills input + output on resume."""
        self.running.remove(req)
        self.kv_used_tokens -= req.kv_tokens
        req.kv_tokens = 0
        req.prefilled = 0
        req.prefill_target = req.input_tokens + req.num_output
        req.prefix_matched = False
        req.parked_steps = 0
        req.num_retractions += 1
        self.num_retractions += 1
        self.waiting.appendleft(req)

    def retract_for_decode(self) -> list[SimRequest]:
        """SGLang's retract_decode: drop the requests with the fewest output tokens (longest
        input first among equals) until the remaining decodes fit one step of KV."""
        retracted: list[SimRequest] = []
        if self.kv_free_tokens >= len(self.running) or len(self.running) <= 1:
            return retracted
        order = sorted(self.running, key=lambda r: (r.num_output, -r.input_tokens), reverse=True)
        while len(order) > 1 and self.kv_free_tokens < len(order):
            victim = order.pop()
            self.retract(victim)
            retracted.append(victim)
        if retracted:
            # SGLang re-estimates the ratio from the survivors' progress.
            decoded = sum(r.num_output for r in self.running)
            total = sum(min(r.output_tokens, self.config.clip_max_new_tokens) for r in self.running)
            if total:
                self.new_token_ratio = min(1.0, (decoded + 20 * len(self.running)) / total)
        return retracted

    def decay_new_token_ratio(self, num_steps: int = 1) -> None:
        self.new_token_ratio = max(
            self.new_token_ratio - num_steps * self.config.new_token_ratio_decay,
            self.config.min_new_token_ratio,
        )

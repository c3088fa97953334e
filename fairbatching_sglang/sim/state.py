"""The simulated instance's state that schedulers read: queues, KV pool, SGLang's reservation.

SGLang references are to the installed sglang 0.5.23 (`sglang/srt/...`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from fairbatching_sglang.core import HingeCostModel
from fairbatching_sglang.sim.config import SimConfig, resolve_max_running_requests
from fairbatching_sglang.sim.prefix_cache import PrefixCache
from fairbatching_sglang.sim.request import SimRequest

# SGLANG_RETRACT_DECODE_STEPS (environ.py:649): decode steps the ratio re-estimate after a
# retraction credits every surviving request with.
RETRACT_DECODE_STEPS = 20


@dataclass(eq=False)
class InstanceState:
    """max_running_requests: the instance's running-request limit; 0 resolves it from the
    config and this instance's KV capacity (SGLang's rule when the config leaves it None)."""

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
    max_running_requests: int = 0

    def __post_init__(self) -> None:
        self.new_token_ratio = self.config.init_new_token_ratio
        if self.max_running_requests < 1:
            self.max_running_requests = resolve_max_running_requests(
                self.config, kv_capacity_tokens=self.kv_capacity_tokens
            )
        if self.config.max_running_requests != self.max_running_requests:
            # Schedulers that read config.max_running_requests see the resolved limit too.
            self.config = dataclasses.replace(
                self.config, max_running_requests=self.max_running_requests
            )

    @property
    def kv_free_tokens(self) -> int:
        return self.kv_capacity_tokens - self.kv_used_tokens

    def reserved_decode_tokens(self) -> float:
        """SGLang's reservation of running requests' future tokens: the clipped remaining output
        times new_token_ratio, or times 1.0 for ignore_eos requests
        (managers/schedule_policy.py:673-680, 785-793)."""
        clip = self.config.clip_max_new_tokens
        ratio = 1.0 if self.config.ignore_eos else self.new_token_ratio
        return sum(min(r.remaining_output, clip) for r in self.running) * ratio

    def admission_room_tokens(self) -> float:
        """SGLang's rem_total_tokens: free KV minus the running requests' reservation."""
        return self.kv_free_tokens - self.reserved_decode_tokens()

    def new_request_reserve(self, req: SimRequest) -> int:
        """KV a new request takes at admission beyond its prefill tokens: its clipped
        max_new_tokens (managers/schedule_policy.py:1407-1410) plus the cache hit it pins (a
        prefix hit, or a retracted request's prompt), which locking removes from SGLang's
        evictable pool (:1429-1431) and the simulator charges with the first chunk."""
        clipped = min(req.remaining_output, self.config.clip_max_new_tokens)
        return req.pending_cached_tokens + clipped

    @staticmethod
    def chunk_kv_tokens(chunks: Iterable[tuple[SimRequest, int]]) -> int:
        """KV a step's prefill chunks take: their new tokens plus any cache hit they pin."""
        return sum(c + req.pending_cached_tokens for req, c in chunks)

    def decodes_fit(self, extra_kv_tokens: int = 0) -> bool:
        """SGLang's check_decode_mem (managers/schedule_batch.py:3432-3449, page size 1): one
        free KV slot per running request, after `extra_kv_tokens` taken by this step's prefill."""
        return self.kv_free_tokens - extra_kv_tokens >= len(self.running)

    def start_prefill(self, req: SimRequest) -> None:
        """Match the prefix cache once when a request is first considered; the hit's KV is
        charged when its first chunk actually runs (see Simulator._finish_step)."""
        if req.prefix_matched:
            return
        req.prefix_matched = True
        if self.prefix_cache is not None:
            hit = self.prefix_cache.match_tokens(req.hash_ids, req.input_tokens)
            req.cached_tokens = hit
            req.prefilled = hit

    def retract(self, req: SimRequest, *, requeue_front: bool = False) -> None:
        """Retract a running request: SGLang's release_req + _add_request_to_queue(req,
        is_retracted=True) (managers/schedule_batch.py:2360-2395; managers/scheduler.py:
        3490-3504, waiting_queue.append at :3503: the back of the queue).

        Its KV is freed without inserting the output into the radix tree, but the prompt was
        inserted at prefill and only KV past cache_protected_len is freed
        (mem_cache/common.py:432-433), so with the radix cache on it resumes with its prompt as
        a prefix hit, charged to KV when its first chunk runs, and prefills only its output
        tokens. Best case assumed: the prompt is not evicted meanwhile (release_req evicts up
        to remaining * 20 unlocked tree tokens, schedule_batch.py:2391-2392, and later
        admissions may evict more). requeue_front: vLLM's preemption (the Sarathi baseline)
        prepends to its waiting queue instead."""
        self.running.remove(req)
        self.kv_used_tokens -= req.kv_tokens
        req.kv_tokens = 0
        req.prefill_target = req.input_tokens + req.num_output
        req.prefilled = req.input_tokens if self.config.enable_prefix_cache else 0
        req.prefix_matched = True  # the resume hit is the prompt itself, set just above
        req.parked_steps = 0
        req.num_retractions += 1
        self.num_retractions += 1
        if requeue_front:
            self.waiting.appendleft(req)
        else:
            self.waiting.append(req)

    def retract_for_decode(self) -> list[SimRequest]:
        """SGLang's retract_decode before a decode-only step (managers/scheduler.py:4503-4567,
        schedule_batch.py:3451-3539): retract in _get_decode_retraction_order (most output
        tokens kept first; fewest output, then longest input, retracted first; :3542-3580),
        always keeping one request, until the rest fit one decode step; then re-estimate the
        ratio from the survivors
        (scheduler_components/new_token_ratio_tracker.py:41-49)."""
        retracted: list[SimRequest] = []
        if self.decodes_fit() or len(self.running) <= 1:
            return retracted
        order = sorted(self.running, key=lambda r: (r.num_output, -r.input_tokens), reverse=True)
        while len(order) > 1 and self.kv_free_tokens < len(order):
            victim = order.pop()
            self.retract(victim)
            retracted.append(victim)
        if retracted:
            self.new_token_ratio = self.ratio_after_retract()
        return retracted

    def ratio_after_retract(self) -> float:
        """NewTokenRatioTracker.estimate_new_token_ratio_after_retract: (decoded + 20 x n) /
        (sum of unclipped max_new_tokens + 1), at most 1.0."""
        decoded = sum(r.num_output for r in self.running)
        max_new = sum(r.output_tokens for r in self.running)
        return min(1.0, (decoded + RETRACT_DECODE_STEPS * len(self.running)) / (max_new + 1))

    def decay_new_token_ratio(self, num_steps: int = 1) -> None:
        self.new_token_ratio = max(
            self.new_token_ratio - num_steps * self.config.new_token_ratio_decay,
            self.config.min_new_token_ratio,
        )

    def reset_new_token_ratio(self) -> None:
        """NewTokenRatioTracker.reset, which SGLang's on_idle runs once the scheduler is fully
        idle (managers/scheduler.py:5268 on_idle, reset at :5345)."""
        self.new_token_ratio = self.config.init_new_token_ratio

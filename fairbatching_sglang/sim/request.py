"""A request's mutable state inside the simulator (the engine's own bookkeeping, not the core's)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class SimRequest:
    rid: int
    arrival_ms: float
    input_tokens: int
    output_tokens: int
    ttft_slo_ms: float
    tpot_slo_ms: float
    hash_ids: tuple[int, ...] | None = None
    # Prompt tokens to have in KV before the next token can be sampled: the input, plus the
    # output so far after a retraction (SGLang prefills input + output on resume, the input
    # mostly as a radix-cache hit: see InstanceState.retract).
    prefill_target: int = 0
    # Tokens of prefill_target already computed; while kv_tokens is 0 these are a cache hit
    # (prefix cache or a retracted request's prompt) whose KV is charged when the first chunk runs.
    prefilled: int = 0
    cached_tokens: int = 0
    num_output: int = 0
    kv_tokens: int = 0
    prefix_matched: bool = False
    parked_steps: int = 0
    total_parked_steps: int = 0
    num_retractions: int = 0
    first_token_ms: float = -1.0
    finish_ms: float = -1.0
    token_times_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.prefill_target == 0:
            self.prefill_target = self.input_tokens

    @property
    def remaining_prefill(self) -> int:
        return self.prefill_target - self.prefilled

    @property
    def pending_cached_tokens(self) -> int:
        """Cached tokens this request pins (and so takes from free KV) when its first chunk
        runs; 0 once it holds KV."""
        return self.prefilled if self.kv_tokens == 0 else 0

    @property
    def remaining_output(self) -> int:
        return self.output_tokens - self.num_output

    @property
    def is_done(self) -> bool:
        return self.num_output >= self.output_tokens

"""Engine settings of a simulated instance (SGLang server arguments and a few sim knobs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimConfig:
    """chunked_prefill_size / max_prefill_tokens / max_running_requests: SGLang's flags (defaults
    are SGLang's for an 80 GB GPU). sarathi_token_budget: vLLM's max_num_batched_tokens for the
    decode-first baseline. step_overhead_ms: CPU, launch and sampling time per step on top of the
    kernel-level cost model. kv_capacity_tokens: None takes the profile's. new_token_ratio_*:
    SGLang's reservation of future decode tokens (init 0.7, floor 0.098, decays over 600 steps).
    prefix_block_tokens: tokens per Mooncake hash id; enable_prefix_cache turns hits on.
    overlap_schedule: model SGLang's default overlap loop, where the next batch is formed while
    the current one runs, so a request arriving during a step is admitted one step later than
    in the normal loop (`--disable-overlap-schedule`); off keeps the earlier simulator.
    """

    chunked_prefill_size: int = 8192
    max_prefill_tokens: int = 16384
    max_running_requests: int = 1024
    sarathi_token_budget: int = 2048
    step_overhead_ms: float = 0.5
    kv_capacity_tokens: int | None = None
    init_new_token_ratio: float = 0.7
    min_new_token_ratio: float = 0.098
    new_token_ratio_decay_steps: int = 600
    clip_max_new_tokens: int = 4096
    enable_prefix_cache: bool = True
    prefix_block_tokens: int = 512
    fast_forward: bool = True
    overlap_schedule: bool = False

    def __post_init__(self) -> None:
        for name in ("chunked_prefill_size", "max_prefill_tokens", "max_running_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.sarathi_token_budget < 1:
            raise ValueError("sarathi_token_budget must be >= 1")
        if self.step_overhead_ms < 0:
            raise ValueError("step_overhead_ms must be >= 0")
        if self.kv_capacity_tokens is not None and self.kv_capacity_tokens < 1:
            raise ValueError("kv_capacity_tokens must be >= 1 when set")

    @property
    def new_token_ratio_decay(self) -> float:
        return (self.init_new_token_ratio - self.min_new_token_ratio) / max(
            1, self.new_token_ratio_decay_steps
        )

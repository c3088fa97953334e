"""Engine settings of a simulated instance (SGLang server arguments and a few sim knobs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fairbatching_sglang.profiles import DEFAULT_CONTEXT_LEN

if TYPE_CHECKING:
    from fairbatching_sglang.profiles import CostProfile


@dataclass(frozen=True)
class SimConfig:
    """chunked_prefill_size / max_prefill_tokens / max_running_requests: SGLang's flags (defaults
    are SGLang's for an 80 GB GPU). max_running_requests None = SGLang's own rule from the KV
    capacity and context length (sglang_max_running_requests); context_len: the model's context
    length for that rule, None = the run profile's (bound by the runners, see
    bind_profile_limits). sarathi_token_budget: vLLM's max_num_batched_tokens for the
    decode-first baseline. step_overhead_ms: CPU, launch and sampling time per step on top of the
    kernel-level cost model. kv_capacity_tokens: None takes the profile's. new_token_ratio_*:
    SGLang's reservation of future decode tokens (init 0.7, floor 0.098, decays over 600 steps).
    ignore_eos: the harness replays traces with ignore_eos so output lengths match the trace;
    SGLang then reserves a running request's whole remaining output (ratio 1.0) instead of
    new_token_ratio of it (managers/schedule_policy.py:785-793), and the ratio only matters when
    this is off. prefix_block_tokens: tokens per Mooncake hash id; enable_prefix_cache turns
    hits on (and SGLang's radix cache, which keeps a retracted request's prompt).
    overlap_schedule: model SGLang's default overlap loop, where the next batch is formed while
    the current one runs, so a request arriving during a step is admitted one step later than
    in the normal loop (`--disable-overlap-schedule`); off keeps the earlier simulator.
    """

    chunked_prefill_size: int = 8192
    max_prefill_tokens: int = 16384
    max_running_requests: int | None = None
    context_len: int | None = None
    sarathi_token_budget: int = 2048
    step_overhead_ms: float = 0.5
    kv_capacity_tokens: int | None = None
    init_new_token_ratio: float = 0.7
    min_new_token_ratio: float = 0.098
    new_token_ratio_decay_steps: int = 600
    clip_max_new_tokens: int = 4096
    ignore_eos: bool = True
    enable_prefix_cache: bool = True
    prefix_block_tokens: int = 512
    fast_forward: bool = True
    overlap_schedule: bool = False

    def __post_init__(self) -> None:
        for name in ("chunked_prefill_size", "max_prefill_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("max_running_requests", "context_len", "kv_capacity_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when set")
        if self.sarathi_token_budget < 1:
            raise ValueError("sarathi_token_budget must be >= 1")
        if self.step_overhead_ms < 0:
            raise ValueError("step_overhead_ms must be >= 0")

    @property
    def new_token_ratio_decay(self) -> float:
        return (self.init_new_token_ratio - self.min_new_token_ratio) / max(
            1, self.new_token_ratio_decay_steps
        )


def sglang_max_running_requests(token_capacity: int, context_len: int) -> int:
    """SGLang's max_num_reqs when --max-running-requests is not given
    (mem_cache/kv_cache_configurator.py:3119-3134 resolve_max_num_reqs, one DP worker, no
    mamba state): 512 requests per context length of KV, clamped to [2048, 4096], at most
    half the KV tokens."""
    estimated = int(token_capacity / context_len * 512)
    estimated = max(min(estimated, 4096), 2048)
    return min(estimated, token_capacity // 2)


def resolve_max_running_requests(
    sim_config: SimConfig,
    profile: CostProfile | None = None,
    *,
    kv_capacity_tokens: int | None = None,
) -> int:
    """The running-request limit an instance enforces. A given limit is still capped at half
    the KV tokens, as SGLang caps a requested one (kv_cache_configurator.py:3127-3129).
    kv_capacity_tokens: the instance's final capacity (else the config's, else the profile's)."""
    capacity = kv_capacity_tokens or sim_config.kv_capacity_tokens
    if capacity is None:
        if profile is None:
            raise ValueError("resolve_max_running_requests needs a KV capacity or a profile")
        capacity = profile.kv_capacity_tokens
    if sim_config.max_running_requests is not None:
        return max(1, min(sim_config.max_running_requests, capacity // 2))
    context_len = sim_config.context_len
    if context_len is None:
        context_len = profile.context_len if profile is not None else DEFAULT_CONTEXT_LEN
    return sglang_max_running_requests(capacity, context_len)


def bind_profile_limits(sim_config: SimConfig, profiles: Sequence[CostProfile]) -> SimConfig:
    """Bind the run's profile(s) to the config: fill context_len and, when every profile gives
    the same limit, max_running_requests itself (so run.json records the number). Replicas of
    different KV capacity keep None and each instance resolves its own (InstanceState)."""
    if sim_config.max_running_requests is not None or not profiles:
        return sim_config
    cfg = sim_config
    if cfg.context_len is None:
        lengths = {p.context_len for p in profiles}
        if len(lengths) > 1:
            raise ValueError(
                f"profiles with different context lengths {sorted(lengths)}: set "
                "max_running_requests or context_len explicitly"
            )
        cfg = dataclasses.replace(cfg, context_len=lengths.pop())
    limits = {resolve_max_running_requests(cfg, p) for p in profiles}
    if len(limits) == 1:
        cfg = dataclasses.replace(cfg, max_running_requests=limits.pop())
    return cfg

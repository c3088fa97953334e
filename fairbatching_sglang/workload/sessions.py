"""Agent-style sessions with shared prefixes: the prompts a tool-using agent sends.

A session starts (Poisson, `session_rate_rps`) with one of `num_system_prompts` shared system
prompts, then runs turns: each turn re-sends the whole context so far (system prompt, every
earlier turn's new content and answer) plus new content (a tool result or user message), and
the next turn follows its answer's arrival after a think/tool time. The context is one growing
token stream per session, so in Mooncake's convention (one hash id per 512-token block, the id
naming the block's content and everything before it) a block that was full in an earlier turn
keeps its id, the system prompt's blocks are shared by every session using it, and the last,
partial block is new each turn. The simulator's prefix cache then hits on all of those.

Turn timing ignores the serving latency (the next turn's arrival is the previous one's plus a
think time): a replay is open-loop, and at other rates the trace is scaled like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fairbatching_sglang.workload.lengths import LengthDist
from fairbatching_sglang.workload.table import RequestTable

BLOCK_TOKENS = 512  # Mooncake's hash-id block (SimConfig.prefix_block_tokens)


@dataclass(frozen=True)
class SessionSpec:
    name: str
    session_rate_rps: float  # session starts per second
    mean_turns: float  # geometric number of turns per session (>= 1)
    think_s: float  # mean gap between a turn and the next (exponential)
    system_prompt_tokens: int
    num_system_prompts: int
    new_tokens: LengthDist  # content a turn adds (tool result / user message)
    output_lengths: LengthDist
    max_context: int = 32768  # a session ends before its context would exceed this

    def __post_init__(self) -> None:
        if not self.session_rate_rps > 0 or not self.mean_turns >= 1 or not self.think_s > 0:
            raise ValueError("session_rate_rps > 0, mean_turns >= 1 and think_s > 0 required")
        if self.num_system_prompts < 1 or self.system_prompt_tokens < 1:
            raise ValueError("num_system_prompts and system_prompt_tokens must be >= 1")

    def with_rate(self, rate_rps: float) -> SessionSpec:
        """The same sessions at another mean request rate (turns per session unchanged)."""
        return replace(self, session_rate_rps=rate_rps / self.mean_turns)

    @property
    def rate_rps(self) -> float:
        return self.session_rate_rps * self.mean_turns


def _block_ids(stream_tokens: int, session_base: int, sys_base: int, sys_tokens: int,
               unique: int) -> list[int]:  # fmt: skip
    """Hash ids of a context of `stream_tokens`: shared system blocks, the session's stable
    blocks, and a unique id for a trailing partial block."""
    full = stream_tokens // BLOCK_TOKENS
    sys_full = sys_tokens // BLOCK_TOKENS
    ids = [sys_base + j if j < sys_full else session_base + j for j in range(full)]
    if stream_tokens % BLOCK_TOKENS:
        ids.append(unique)
    return ids


def generate_sessions(spec: SessionSpec, duration_s: float, *, seed: int = 0) -> RequestTable:
    """Requests of the sessions starting in [0, duration_s) whose turns arrive before it."""
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    rng = np.random.default_rng(seed)
    starts = np.cumsum(rng.exponential(1.0 / spec.session_rate_rps, 1 + int(
        3 * spec.session_rate_rps * duration_s + 10)))  # fmt: skip
    starts = starts[starts < duration_s]
    p_end = 1.0 / spec.mean_turns
    # Id spaces: system prompts first, then 2^20 ids per session, then unique partial blocks.
    sys_stride = math.ceil(spec.system_prompt_tokens / BLOCK_TOKENS) + 1
    session_id_base = spec.num_system_prompts * sys_stride
    unique = session_id_base + (len(starts) + 1) * (1 << 20)
    arrival: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    hashes: list[list[int]] = []
    for s, t in enumerate(starts):
        sys_idx = int(rng.integers(spec.num_system_prompts))
        context = spec.system_prompt_tokens
        session_base = session_id_base + s * (1 << 20)
        while t < duration_s:
            new = int(spec.new_tokens.sample(rng, 1)[0])
            out = int(spec.output_lengths.sample(rng, 1)[0])
            prompt = context + new
            if prompt + out > spec.max_context:
                break
            arrival.append(float(t))
            inputs.append(prompt)
            outputs.append(out)
            hashes.append(_block_ids(prompt, session_base, sys_idx * sys_stride,
                                     spec.system_prompt_tokens, unique))  # fmt: skip
            unique += 1
            context = prompt + out
            if rng.random() < p_end:
                break
            t += rng.exponential(spec.think_s)
    order = np.argsort(np.asarray(arrival), kind="stable")
    return RequestTable.from_arrays(
        np.round(np.asarray(arrival)[order], 6),
        np.asarray(inputs, dtype=np.int64)[order],
        np.asarray(outputs, dtype=np.int64)[order],
        hash_ids=[hashes[i] for i in order],
        source=f"synthetic:{spec.name}",
        format="synthetic",
        transformations=(
            f"generate_sessions spec={spec.name} session_rate_rps={spec.session_rate_rps:g} "
            f"mean_turns={spec.mean_turns:g} duration_s={duration_s:g} seed={seed}",
        ),
    )

"""Step prices from aiconfigurator-core's measured SGLang kernel tables, random step sampling,
and the KV-capacity estimate recorded in each profile.

aiconfigurator-core (NVIDIA, Apache-2.0, the `calibrate` extra) is imported only inside
`EnginePricer.compile`; everything else here needs numpy only, so tests can exercise the step
sampler and the KV arithmetic without it.

How a step is priced (all from the engine's per-op tables, `EngineHandle.evaluate_*_ops`):

- every non-attention op of the model (embedding, norms, QKV/O/FFN GEMMs, activation, TP
  all-reduces) at x = P + B tokens: SGLang runs prefill and decode rows through one forward;
- the logits GEMM at x = (number of prefill chunks + B) rows (one sampled row per request);
- context attention for a prefill chunk of c new tokens on k cached: batch 1, s = c,
  prefix = k; several chunks in one step (new short prompts batched together) run as one ragged
  attention call in SGLang, priced as batch n at the mean c and mean k;
- decode attention for B requests at s = S / B (the engine's decode-attention table is indexed
  by a uniform KV length; a batch with varied lengths is priced at their mean).

For a pure prefill this equals `predict_prefill_latency(1, k + c, k)`, and for a pure decode
batch `decode_step_latency(B, s - 2, 2)` (checked in tests/profiles/test_engine.py when the
package is installed). Kernel sums leave out CPU, launch and sampling overhead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fairbatching_sglang.core.cost_model import chunk_attn_work

AICONFIGURATOR_VERSION = "0.12.0"
SGLANG_KERNEL_VERSION = "0.5.14"

# Total memory as CUDA reports it (torch.cuda.get_device_properties(0).total_memory), MiB:
# H100 SXM 80GB HBM3 reports 81559 MiB, H200 SXM 141GB HBM3e reports 143771 MiB.
GPU_MEMORY_MIB = {"h100_sxm": 81559, "h200_sxm": 143771}

# SGLang's default chunked_prefill_size for GPUs with 60-160 GiB (H100, H200).
DEFAULT_CHUNKED_PREFILL_SIZE = 8192

# Short model names for the profiles -> aiconfigurator model ids.
MODEL_IDS = {
    "llama3.1-8b": "meta-llama/Meta-Llama-3.1-8B",
    "llama3.1-70b": "meta-llama/Meta-Llama-3.1-70B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-32b": "Qwen/Qwen3-32B",
}


# --------------------------------------------------------------------------- KV capacity
def sglang_default_mem_fraction_static(
    gpu_memory_mib: float,
    tp_size: int,
    chunked_prefill_size: int = DEFAULT_CHUNKED_PREFILL_SIZE,
) -> float:
    """SGLang 0.5.23's default mem_fraction_static (`arg_groups/memory_hook.py`,
    `_handle_gpu_memory_settings`) for a plain (non-disaggregated, non-DP-attention, non-MLA,
    non-VLM) server on a GPU with 60-160 GiB, prefill CUDA graphs off:

        reserved_mib = 512 + max(chunked_prefill_size, 2048) * 1.5 + tp * pp / 8 * 1024
                       + decode_cuda_graph_max_bs * 2        (max_bs 256 if tp < 4 else 512)
        reserved_mib = max(reserved_mib, 10 * 1024)          (GPUs over 60 GiB)
        mem_fraction_static = round((gpu_mib - reserved_mib) / gpu_mib, 3)
    """
    max_bs = 256 if tp_size < 4 else 512
    reserved = 512 + max(chunked_prefill_size, 2048) * 1.5 + tp_size / 8 * 1024 + max_bs * 2
    if gpu_memory_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_memory_mib - reserved) / gpu_memory_mib, 3)


def dense_param_count(config: dict[str, Any]) -> int:
    """Parameters of a dense Llama/Qwen3-style decoder from its HF config.json."""
    h = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim") or h // heads)
    inter = int(config["intermediate_size"])
    vocab = int(config["vocab_size"])
    attn = h * heads * head_dim + 2 * h * kv_heads * head_dim + heads * head_dim * h
    mlp = 3 * h * inter
    norms = 2 * h + (2 * head_dim if config.get("model_type") == "qwen3" else 0)
    embed = vocab * h * (1 if config.get("tie_word_embeddings") else 2)
    return layers * (attn + mlp + norms) + embed + h


def kv_bytes_per_token_per_gpu(config: dict[str, Any], tp_size: int, dtype_bytes: int = 2) -> int:
    """layers x max(1, kv_heads / TP) x head_dim x 2 (K and V) x dtype bytes."""
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    kv_per_gpu = max(1, kv_heads // tp_size)
    return int(config["num_hidden_layers"]) * kv_per_gpu * head_dim * 2 * dtype_bytes


@dataclass(frozen=True)
class KvCapacity:
    kv_capacity_tokens: int
    gpu_memory_mib: float
    mem_fraction_static: float
    weights_gib_per_gpu: float
    kv_bytes_per_token_per_gpu: int
    note: str


def estimate_kv_capacity(
    config: dict[str, Any],
    gpu: str,
    tp_size: int,
    *,
    gpu_memory_mib: float | None = None,
    mem_fraction_static: float | None = None,
    dtype_bytes: int = 2,
) -> KvCapacity:
    """(GPU memory x mem_fraction_static - weights per GPU) / KV bytes per token per GPU."""
    mem_mib = float(gpu_memory_mib if gpu_memory_mib is not None else GPU_MEMORY_MIB[gpu])
    frac = (
        mem_fraction_static
        if mem_fraction_static is not None
        else sglang_default_mem_fraction_static(mem_mib, tp_size)
    )
    weights = dense_param_count(config) * dtype_bytes / tp_size
    per_token = kv_bytes_per_token_per_gpu(config, tp_size, dtype_bytes)
    pool = mem_mib * 2**20 * frac - weights
    tokens = int(pool // per_token)
    if tokens <= 0:
        raise ValueError(f"weights do not fit on {gpu} at TP{tp_size}")
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    note = (
        f"({mem_mib:.0f} MiB {gpu} x mem_fraction_static {frac} (SGLang 0.5.23 default for this "
        f"GPU size and TP{tp_size}) - {weights / 2**30:.2f} GiB weights per GPU "
        f"({dense_param_count(config) / 1e9:.2f}B params x {dtype_bytes} B / TP{tp_size})) / "
        f"{per_token} B KV per token per GPU ({config['num_hidden_layers']} layers x "
        f"{max(1, kv_heads // tp_size)} KV heads x {head_dim} x 2 x {dtype_bytes} B)"
    )
    return KvCapacity(tokens, mem_mib, frac, weights / 2**30, per_token, note)


# --------------------------------------------------------------------------- step sampling
@dataclass(frozen=True)
class SampledStep:
    chunks: tuple[tuple[int, int], ...]  # (new tokens c, cached tokens k) per prefill chunk
    num_decode_reqs: int
    decode_kv_tokens: int

    @property
    def num_prefill_tokens(self) -> int:
        return sum(c for c, _ in self.chunks)

    @property
    def prefill_attn_work(self) -> float:
        return sum(chunk_attn_work(c, k) for c, k in self.chunks)


def _log_uniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return round(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_steps(
    num_steps: int,
    seed: int,
    *,
    max_prefill_tokens: int = DEFAULT_CHUNKED_PREFILL_SIZE,
    max_decode_reqs: int = 512,
    max_context_tokens: int = 32768,
    kv_capacity_tokens: int | None = None,
) -> list[SampledStep]:
    """Random steps: ~30% prefill-only (chunks on cached prefixes), ~30% decode-only (varied
    KV lengths), ~40% mixed (a chunk or a few short prompts plus decodes). Sizes are
    log-uniform so small steps around the GEMM knee are well covered. Deterministic in seed."""
    rng = np.random.default_rng(seed)
    steps: list[SampledStep] = []
    cap = kv_capacity_tokens or 10**9
    while len(steps) < num_steps:
        kind = rng.choice(3, p=(0.3, 0.3, 0.4))
        chunks: list[tuple[int, int]] = []
        num_decode = 0
        kv_sum = 0
        if kind in (0, 2):
            budget = _log_uniform_int(rng, 1, max_prefill_tokens)
            if rng.random() < 0.75 or budget < 8:
                chunks.append((budget, _cached_prefix(rng, max_context_tokens)))
            else:  # a few new short prompts sharing the budget
                n = int(rng.integers(2, 5))
                for part in np.array_split(np.arange(budget), n):
                    if len(part):
                        chunks.append((len(part), _cached_prefix(rng, 4096, p_zero=0.7)))
        if kind in (1, 2):
            num_decode = _log_uniform_int(rng, 1, max_decode_reqs)
            mean_kv = _log_uniform_int(rng, 16, max_context_tokens)
            lengths = np.maximum(1, rng.lognormal(math.log(mean_kv), 0.5, size=num_decode))
            kv_sum = int(lengths.sum())
        if kv_sum + sum(c + k for c, k in chunks) > cap:
            continue
        steps.append(SampledStep(tuple(chunks), num_decode, kv_sum))
    return steps


def _cached_prefix(rng: np.random.Generator, hi: int, p_zero: float = 0.4) -> int:
    return 0 if rng.random() < p_zero else _log_uniform_int(rng, 1, hi)


# --------------------------------------------------------------------------- engine
class EnginePricer:
    """Prices steps with a compiled aiconfigurator-core engine (see module docstring)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        names = _op_names(handle.evaluate_context_ops)
        gen_names = _op_names(handle.evaluate_generation_ops)
        self._attn = [i for i, n in enumerate(names) if "attention" in n]
        self._logits = [i for i, n in enumerate(names) if "logits" in n]
        self._other = [i for i in range(len(names)) if i not in (*self._attn, *self._logits)]
        self._gen_attn = [i for i, n in enumerate(gen_names) if "attention" in n]
        if len(self._attn) != 1 or len(self._gen_attn) != 1 or len(self._logits) != 1:
            raise RuntimeError(
                f"unexpected op list (need one attention and one logits op): {names}"
            )

    @classmethod
    def compile(
        cls,
        model: str,
        system: str,
        tp_size: int = 1,
        backend_version: str = SGLANG_KERNEL_VERSION,
    ) -> EnginePricer:
        import logging

        from aiconfigurator_core.sdk.engine import EngineHandle

        logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
        handle = EngineHandle.compile(
            model, system, "sglang", backend_version=backend_version, tp_size=tp_size
        )
        return cls(handle)

    def price(self, step: SampledStep) -> float:
        """Engine price of one step in ms."""
        h = self.handle
        n_tokens = step.num_prefill_tokens + step.num_decode_reqs
        if n_tokens <= 0:
            return 0.0
        total = _sum(h.evaluate_context_ops(self._other, batch_size=1, s=n_tokens, x=n_tokens))
        rows = len(step.chunks) + step.num_decode_reqs
        total += _sum(h.evaluate_context_ops(self._logits, batch_size=1, s=rows, x=rows))
        if len(step.chunks) == 1:
            c, k = step.chunks[0]
            total += _sum(h.evaluate_context_ops(self._attn, batch_size=1, s=c, prefix=k))
        elif step.chunks:  # one batched (ragged) attention call, priced at the mean shape
            n = len(step.chunks)
            c_mean = max(1, round(step.num_prefill_tokens / n))
            k_mean = round(sum(k for _, k in step.chunks) / n)
            total += _sum(h.evaluate_context_ops(self._attn, batch_size=n, s=c_mean, prefix=k_mean))
        if step.num_decode_reqs:
            s = max(1, round(step.decode_kv_tokens / step.num_decode_reqs))
            total += _sum(
                h.evaluate_generation_ops(self._gen_attn, batch_size=step.num_decode_reqs, s=s)
            )
        return total

    def prefill_latency(self, isl: int, prefix: int = 0) -> float:
        return float(self.handle.predict_prefill_latency(1, isl, prefix))

    def decode_latency(self, num_reqs: int, kv_len: int) -> float:
        # The engine prices decode attention at s = isl + osl // 2 + 1.
        return float(self.handle.decode_step_latency(num_reqs, kv_len - 2, 2))


def _op_names(evaluate: Any) -> list[str]:
    names: list[str] = []
    for i in range(256):
        try:
            names.append(evaluate([i], batch_size=1, s=16)[0][0])
        except (ValueError, RuntimeError, IndexError):
            break
    return names


def _sum(ops: Sequence[tuple[str, float, float, str]]) -> float:
    return float(sum(op[1] for op in ops))


REFERENCE_STEPS = {
    "prefill_1x2048": SampledStep(((2048, 0),), 0, 0),
    "decode_64_at_kv_1024": SampledStep((), 64, 64 * 1024),
    "chunk_512_plus_64_decodes": SampledStep(((512, 0),), 64, 64 * 1024),
}
"""Reference steps recorded in each profile (the last: a 512-token chunk on an empty cache plus
64 decodes at KV 1024)."""

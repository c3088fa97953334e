"""Step prices from aiconfigurator-core's measured SGLang kernel tables, random step sampling,
and the KV-capacity estimate recorded in each profile.

aiconfigurator-core (NVIDIA, Apache-2.0, the `calibrate` extra) is imported only inside
`EnginePricer.compile` and `require_engine`; everything else here needs numpy only, so tests can
exercise the step sampler, the KV arithmetic and the price cache without it.
`EngineStepPrices` memoises the parts of step prices (and keeps them on disk) for the `engine`
device model (device_model.EngineDevice).

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

import atexit
import importlib.metadata
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


# Sampler ranges (issue #13): chunks up to 16k tokens on up to 64k cached, up to 1024 decode
# rows. The fits before it sampled 8k / 32k / 512 and under-priced what lay beyond.
MAX_SAMPLED_PREFILL_TOKENS = 16384
MAX_SAMPLED_CONTEXT_TOKENS = 65536
MAX_SAMPLED_DECODE_REQS = 1024
# "Many short decodes": 256-1024 rows of < 128 KV tokens each (a burst of new requests entering
# decode), the steps the per-decode-request cost c2 exists for.
MANY_DECODES_MIN_REQS = 256
SHORT_KV_MAX_TOKENS = 127
# "Long-prefix chunks": 2k-16k new tokens on 16k-64k cached (long prompts, multi-turn reuse).
LONG_CHUNK_MIN_TOKENS = 2048
LONG_PREFIX_MIN_TOKENS = 16384


def sample_steps(
    num_steps: int,
    seed: int,
    *,
    max_prefill_tokens: int = MAX_SAMPLED_PREFILL_TOKENS,
    max_decode_reqs: int = MAX_SAMPLED_DECODE_REQS,
    max_context_tokens: int = MAX_SAMPLED_CONTEXT_TOKENS,
    kv_capacity_tokens: int | None = None,
    p_many_short_decodes: float = 0.15,
    p_long_prefix_chunk: float = 0.15,
) -> list[SampledStep]:
    """Random steps: ~30% prefill-only (chunks on cached prefixes), ~30% decode-only (varied
    KV lengths), ~40% mixed (a chunk or a few short prompts plus decodes). Sizes are
    log-uniform so small steps around the GEMM knee are well covered; on top of that a share
    of the decode parts are many short decodes (`p_many_short_decodes`) and a share of the
    prefill parts are long chunks on long cached prefixes (`p_long_prefix_chunk`), which
    log-uniform draws reach only rarely. Deterministic in seed."""
    rng = np.random.default_rng(seed)
    steps: list[SampledStep] = []
    cap = kv_capacity_tokens or 10**9
    many_lo = min(MANY_DECODES_MIN_REQS, max_decode_reqs)
    long_chunk_lo = min(LONG_CHUNK_MIN_TOKENS, max_prefill_tokens)
    long_prefix_lo = min(LONG_PREFIX_MIN_TOKENS, max_context_tokens)
    while len(steps) < num_steps:
        kind = rng.choice(3, p=(0.3, 0.3, 0.4))
        chunks: list[tuple[int, int]] = []
        num_decode = 0
        kv_sum = 0
        if kind in (0, 2):
            if rng.random() < p_long_prefix_chunk:
                chunks.append(
                    (
                        _log_uniform_int(rng, long_chunk_lo, max_prefill_tokens),
                        int(rng.integers(long_prefix_lo, max_context_tokens + 1)),
                    )
                )
            else:
                budget = _log_uniform_int(rng, 1, max_prefill_tokens)
                if rng.random() < 0.75 or budget < 8:
                    chunks.append((budget, _cached_prefix(rng, max_context_tokens)))
                else:  # a few new short prompts sharing the budget
                    n = int(rng.integers(2, 5))
                    for part in np.array_split(np.arange(budget), n):
                        if len(part):
                            chunks.append((len(part), _cached_prefix(rng, 4096, p_zero=0.7)))
        if kind in (1, 2):
            if rng.random() < p_many_short_decodes:
                num_decode = int(rng.integers(many_lo, max_decode_reqs + 1))
                mean_kv = _log_uniform_int(rng, 8, SHORT_KV_MAX_TOKENS)
                lengths = np.clip(
                    rng.lognormal(math.log(mean_kv), 0.5, size=num_decode), 1, SHORT_KV_MAX_TOKENS
                )
            else:
                num_decode = _log_uniform_int(rng, 1, max_decode_reqs)
                mean_kv = _log_uniform_int(rng, 16, max_context_tokens)
                lengths = np.maximum(1, rng.lognormal(math.log(mean_kv), 0.5, size=num_decode))
            kv_sum = int(lengths.sum())
        if kv_sum + sum(c + k for c, k in chunks) > cap:
            continue
        steps.append(SampledStep(tuple(chunks), num_decode, kv_sum))
    return steps


def step_regimes(steps: Sequence[SampledStep]) -> dict[str, np.ndarray]:
    """Boolean masks over `steps` for the error tables: by type (prefill only, decode only,
    mixed) and the two shapes the fits used to miss (many short decodes, long-prefix chunks)."""
    p = np.array([s.num_prefill_tokens for s in steps])
    b = np.array([s.num_decode_reqs for s in steps])
    kv = np.array([s.decode_kv_tokens for s in steps])
    long_chunk = np.array(
        [
            any(c >= LONG_CHUNK_MIN_TOKENS and k >= LONG_PREFIX_MIN_TOKENS for c, k in s.chunks)
            for s in steps
        ],
        dtype=bool,
    )
    return {
        "prefill_only": (p > 0) & (b == 0),
        "decode_only": (p == 0) & (b > 0),
        "mixed": (p > 0) & (b > 0),
        "many_short_decodes": (b >= MANY_DECODES_MIN_REQS)
        & (kv <= SHORT_KV_MAX_TOKENS * np.maximum(b, 1)),
        "long_prefix_chunk": long_chunk,
    }


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
        """Engine price of one step in ms: the sum of the parts below (module docstring)."""
        n_tokens = step.num_prefill_tokens + step.num_decode_reqs
        if n_tokens <= 0:
            return 0.0
        total = self.other_ops_ms(n_tokens)
        total += self.logits_ms(len(step.chunks) + step.num_decode_reqs)
        if len(step.chunks) == 1:
            c, k = step.chunks[0]
            total += self.context_attention_ms(1, c, k)
        elif step.chunks:  # one batched (ragged) attention call, priced at the mean shape
            n = len(step.chunks)
            c_mean = max(1, round(step.num_prefill_tokens / n))
            k_mean = round(sum(k for _, k in step.chunks) / n)
            total += self.context_attention_ms(n, c_mean, k_mean)
        if step.num_decode_reqs:
            s = max(1, round(step.decode_kv_tokens / step.num_decode_reqs))
            total += self.decode_attention_ms(step.num_decode_reqs, s)
        return total

    # The parts of a step's price (each one engine call; EngineStepPrices memoises them).
    def other_ops_ms(self, num_tokens: int) -> float:
        """Every op but attention and logits, at x = P + B tokens."""
        return _sum(
            self.handle.evaluate_context_ops(self._other, batch_size=1, s=num_tokens, x=num_tokens)
        )

    def logits_ms(self, num_rows: int) -> float:
        """The logits GEMM at (prefill chunks + B) rows."""
        return _sum(
            self.handle.evaluate_context_ops(self._logits, batch_size=1, s=num_rows, x=num_rows)
        )

    def context_attention_ms(self, num_chunks: int, chunk_tokens: int, cached_tokens: int) -> float:
        """Context attention of num_chunks chunks of chunk_tokens new on cached_tokens each."""
        return _sum(
            self.handle.evaluate_context_ops(
                self._attn, batch_size=num_chunks, s=chunk_tokens, prefix=cached_tokens
            )
        )

    def decode_attention_ms(self, num_reqs: int, kv_len: int) -> float:
        """Decode attention of num_reqs requests at a KV length of kv_len each."""
        return _sum(
            self.handle.evaluate_generation_ops(self._gen_attn, batch_size=num_reqs, s=kv_len)
        )

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


# --------------------------------------------------------------------------- cached step prices
QUANT_SCHEME = 1
"""Version of EngineStepPrices' keys (part names, quantisation); part of the disk cache's name,
so a change of scheme never reads prices stored under another."""

EXACT_BELOW = 512
SIGNIFICANT_BITS = 9


def quantise(x: int) -> int:
    """x exactly below EXACT_BELOW, else rounded to SIGNIFICANT_BITS significant bits (a
    relative step of at most 1/256, so a price moves by at most ~0.2% of its attention part):
    the KV lengths and prefixes of a long run then fall on a few thousand cache keys instead of
    one per step."""
    if x < EXACT_BELOW:
        return x
    step = 1 << (x.bit_length() - SIGNIFICANT_BITS)
    return ((x + step // 2) // step) * step


def cache_dir() -> Path:
    """$FAIRBATCHING_CACHE_DIR, else $XDG_CACHE_HOME/fairbatching, else ~/.cache/fairbatching."""
    if env := os.environ.get("FAIRBATCHING_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fairbatching"


def aiconfigurator_version() -> str:
    """The installed aiconfigurator-core's version ("" when it is not installed)."""
    try:
        return importlib.metadata.version("aiconfigurator-core")
    except importlib.metadata.PackageNotFoundError:
        return ""


class EngineUnavailableError(RuntimeError):
    """aiconfigurator-core (the `calibrate` extra) is not installed or does not import."""


def require_engine() -> None:
    """Raise EngineUnavailableError unless aiconfigurator-core's engine imports."""
    try:
        import aiconfigurator_core.sdk.engine  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(
            "aiconfigurator-core is not installed (needed to price steps with NVIDIA's engine); "
            f"install the optional `calibrate` extra: pip install -e '.[calibrate]' "
            f"(or pip install aiconfigurator-core=={AICONFIGURATOR_VERSION}); import error: {exc}"
        ) from exc


_Part = dict[tuple[int, ...], float]
_PART_NAMES = ("other", "logits", "context_attention", "decode_attention")


class EngineStepPrices:
    """Engine kernel prices of StepShape-like steps for one (model, GPU, TP), memoised per part.

    A step's price is the sum of four parts (EnginePricer), each priced once per key: other ops
    at P + B tokens and logits at chunks + B rows (exact), context attention at (chunks, mean
    chunk, mean prefix) and decode attention at (B, mean KV) (chunk, prefix and KV `quantise`d).
    A simulation of 1e5-1e6 steps then calls the engine a few thousand times. The engine is
    compiled on the first miss (a warm disk cache may never need it). The disk cache (a JSON
    file under cache_dir(), named by model, GPU, TP, kernel version, aiconfigurator-core version
    and QUANT_SCHEME) is read when the table is made and merged back on `save()`, at
    interpreter exit and every `autosave_every` new prices.
    """

    def __init__(
        self,
        model: str,
        system: str,
        tp_size: int,
        backend_version: str = SGLANG_KERNEL_VERSION,
        *,
        disk_cache: bool = True,
        pricer: EnginePricer | None = None,
        autosave_every: int = 20_000,
    ) -> None:
        self.model, self.system, self.tp_size = model, system, tp_size
        self.backend_version = backend_version
        self._pricer = pricer
        self._parts: dict[str, _Part] = {name: {} for name in _PART_NAMES}
        self.num_misses = 0
        self.num_lookups = 0
        self._unsaved = 0
        self.autosave_every = autosave_every
        self.path: Path | None = None
        if disk_cache:
            version = aiconfigurator_version() or AICONFIGURATOR_VERSION
            stem = f"{system}_{model.replace('/', '--')}_tp{tp_size}_sglang{backend_version}"
            self.path = cache_dir() / "engine-prices" / f"{stem}_aic{version}_q{QUANT_SCHEME}.json"
            self._parts = _read_parts(self.path)

    # ------------------------------------------------------------------ engine
    @property
    def pricer(self) -> EnginePricer:
        if self._pricer is None:
            require_engine()
            self._pricer = EnginePricer.compile(
                self.model, self.system, self.tp_size, self.backend_version
            )
        return self._pricer

    @property
    def num_cached(self) -> int:
        return sum(len(p) for p in self._parts.values())

    def _part(self, name: str, key: tuple[int, ...]) -> float:
        self.num_lookups += 1
        part = self._parts[name]
        value = part.get(key)
        if value is None:
            p = self.pricer
            if name == "other":
                value = p.other_ops_ms(key[0])
            elif name == "logits":
                value = p.logits_ms(key[0])
            elif name == "context_attention":
                value = p.context_attention_ms(*key)
            else:
                value = p.decode_attention_ms(*key)
            part[key] = value
            self.num_misses += 1
            self._unsaved += 1
            if self.path is not None and self._unsaved >= self.autosave_every:
                self.save()
        return value

    # ------------------------------------------------------------------ prices
    def step_ms(
        self,
        num_prefill_tokens: int,
        num_decode_reqs: int,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        num_prefill_chunks: int = 0,
    ) -> float:
        """Kernel ms of a step given as the cost model's terms (P, B, S, Q) plus the number of
        prefill chunks. The chunks' mean shape is recovered from P and Q: c = P / chunks and
        k = Q / P - c / 2 (exact for one chunk, since Q = c * (k + c / 2)).

        num_prefill_chunks = 0 (not known): one chunk when Q >= P^2 / 2 (a chunk on a cached
        prefix has Q >= c^2 / 2), else round(P^2 / (2Q)) chunks, which is exact for equal new
        prompts with nothing cached (n of them have Q = P^2 / (2n)); pricing such a step as one
        P-token chunk would charge its attention 3-13% more on the whole step."""
        p, b = int(num_prefill_tokens), int(num_decode_reqs)
        if p + b <= 0:
            return 0.0
        if p <= 0:
            chunks = 0
        elif num_prefill_chunks > 0:
            chunks = int(num_prefill_chunks)
        elif prefill_attn_work > 0:
            chunks = max(1, min(p, round(p * p / (2.0 * prefill_attn_work))))
        else:
            chunks = 1
        total = self._part("other", (p + b,))
        total += self._part("logits", (chunks + b,))
        if p > 0:
            c = max(1, round(p / chunks))
            k = max(0, round(prefill_attn_work / p - c / 2.0))
            total += self._part("context_attention", (chunks, quantise(c), quantise(k)))
        if b > 0:
            kv = max(1, round(decode_kv_tokens / b))
            total += self._part("decode_attention", (b, quantise(kv)))
        return total

    def decode_block_ms(self, num_decode_reqs: int, decode_kv_tokens: float, k: int) -> np.ndarray:
        """Kernel ms of k consecutive decode-only steps of B requests; step j reads
        decode_kv_tokens + j * B KV tokens (so its mean KV grows by one per step)."""
        b = int(num_decode_reqs)
        if b <= 0 or k <= 0:
            return np.zeros(max(k, 0))
        fixed = self._part("other", (b,)) + self._part("logits", (b,))
        out = np.empty(k)
        for j in range(k):  # cached lookups: ~1 us a step
            kv = max(1, round((decode_kv_tokens + j * b) / b))
            out[j] = fixed + self._part("decode_attention", (b, quantise(kv)))
        return out

    # ------------------------------------------------------------------ disk cache
    def save(self) -> None:
        """Merge the prices priced here into the disk cache (atomic replace; other processes'
        entries written meanwhile are kept)."""
        if self.path is None or self._unsaved == 0:
            return
        on_disk = _read_parts(self.path)
        merged = {name: {**on_disk[name], **self._parts[name]} for name in _PART_NAMES}
        doc = {
            "model": self.model,
            "system": self.system,
            "tp_size": self.tp_size,
            "backend_version": self.backend_version,
            "aiconfigurator_core": aiconfigurator_version(),
            "quant_scheme": QUANT_SCHEME,
            "parts": {
                name: [[*key, value] for key, value in sorted(part.items())]
                for name, part in merged.items()
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            return  # an unwritable cache directory costs speed next time, nothing else
        self._parts = merged
        self._unsaved = 0


def _read_parts(path: Path) -> dict[str, _Part]:
    parts: dict[str, _Part] = {name: {} for name in _PART_NAMES}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name in _PART_NAMES:
            for row in data["parts"].get(name, []):
                parts[name][tuple(int(v) for v in row[:-1])] = float(row[-1])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        # A damaged cache is only a cache: start empty; save() rewrites it.
        parts = {name: {} for name in _PART_NAMES}
    return parts


_SHARED: dict[tuple[str, str, int, str, bool], EngineStepPrices] = {}


def shared_step_prices(
    model: str,
    system: str,
    tp_size: int,
    backend_version: str = SGLANG_KERNEL_VERSION,
    *,
    disk_cache: bool = True,
) -> EngineStepPrices:
    """One EngineStepPrices per (model, GPU, TP, kernel version) and process: the runs of a
    sweep share the compiled engine and the memo (prices are deterministic; noise is the
    device's). Saved to disk at interpreter exit."""
    key = (model, system, tp_size, backend_version, disk_cache)
    if key not in _SHARED:
        _SHARED[key] = EngineStepPrices(
            model, system, tp_size, backend_version, disk_cache=disk_cache
        )
    return _SHARED[key]


@atexit.register
def _save_shared() -> None:
    for prices in _SHARED.values():
        prices.save()

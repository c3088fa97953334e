"""A real (patched) SGLang Scheduler driven on CPU, without a model.

The Scheduler instance is created with `Scheduler.__new__` and given only what batch formation
reads: real ReqToTokenPool, TokenToKVPoolAllocator (over a dummy KV buffer), RadixCache,
SchedulePolicy, NewTokenRatioTracker; inert stand-ins for grammar, LoRA, DP attention, metrics.
`get_next_batch_to_run` - and through it `_get_new_batch_prefill_raw`, PrefillAdder,
ScheduleBatch.prepare_for_extend / mix_with_running / filter_batch / merge_batch and the
FairBatching hook lines - then run exactly as in the server. `run_batch` stands in for the GPU:
it commits one token per finished row the way SGLang's result processor does (KV release or
checkpoint into the radix cache, chunk counters).

Used by tests/sglang_adapter and scripts/bench_hook.py.
"""

from __future__ import annotations

import json
import os
import types
from array import array
from collections import deque
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from sglang.srt import runtime_context
from sglang.srt.configs.model_config import ModelConfig
from sglang.srt.disaggregation.utils import DisaggregationMode
from sglang.srt.managers.schedule_batch import Req, ScheduleBatch
from sglang.srt.managers.schedule_policy import SchedulePolicy
from sglang.srt.managers.scheduler import Scheduler
from sglang.srt.managers.scheduler_components.new_token_ratio_tracker import (
    NewTokenRatioTracker,
)
from sglang.srt.mem_cache.allocator.token import TokenToKVPoolAllocator
from sglang.srt.mem_cache.cache_init_params import CacheInitParams
from sglang.srt.mem_cache.common import checkpoint_kv_cache, release_kv_cache
from sglang.srt.mem_cache.memory_pool import KVCache, ReqToTokenPool
from sglang.srt.mem_cache.radix_cache import RadixCache
from sglang.srt.sampling.sampling_params import SamplingParams
from sglang.srt.server_args import ServerArgs
from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

from fairbatching_sglang.sglang_adapter.hook import FairBatchingHook
from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


class _DummyKVCache(KVCache):
    """KV buffer stand-in: the allocator only needs sizes; no attention runs here."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.page_size = 1
        self.dtype = self.store_dtype = torch.float32
        self.device = "cpu"
        self.layer_num = self.start_layer = self.end_layer = 0
        self.mem_usage = 0
        self.cpu_offloading_chunk_size = 8192
        self.layer_transfer_counter = None
        self.enable_custom_mem_pool = False
        self.custom_mem_pool = None

    def _none(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("dummy KV cache holds no tensors")

    get_key_buffer = get_value_buffer = get_kv_buffer = set_kv_buffer = _none


_DummyKVCache.__abstractmethods__ = frozenset()


class _Inert:
    """Any attribute, any call: returns a neutral value (grammar, LoRA, DP attention, ...)."""

    def __getattr__(self, name: str) -> Any:
        return _Inert()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return args[0] if args else None

    def __bool__(self) -> bool:
        return False


def publish_config(model_dir: Path, **overrides: Any) -> ServerArgs:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(TINY_LLAMA))
    args = ServerArgs(
        model_path=str(model_dir), device="cpu", skip_tokenizer_init=True, **overrides
    )
    runtime_context.publish(args, role="scheduler")
    return args


TREE_CACHES = ("radix", "unified")
# What a Req reads from its tokenizer on the paths driven here (EOS ids for min_new_tokens).
_TOKENIZER = types.SimpleNamespace(eos_token_id=2, additional_stop_token_ids=None)


def _make_tree_cache(
    kind: str, args: ServerArgs, model_config: ModelConfig, r2t: Any, alloc: Any
) -> Any:
    params = CacheInitParams(
        disable=False, req_to_token_pool=r2t, token_to_kv_pool_allocator=alloc, page_size=1
    )
    if kind == "radix":
        return RadixCache(params)
    if kind != "unified":
        raise ValueError(f"tree_cache must be one of {TREE_CACHES}, not {kind!r}")
    from sglang.srt.mem_cache.registry import TreeCacheBuildContext, create_tree_cache
    from sglang.srt.mem_cache.unified_radix_cache import UnifiedRadixCache

    # SGLang's own selection chain (mem_cache/kv_cache_builder.py -> registry.create_tree_cache
    # -> default_radix_cache_factory), so the test sees the class a default server builds.
    cache = create_tree_cache(
        TreeCacheBuildContext(
            server_args=args,
            params=params,
            is_hybrid_swa=False,
            is_hybrid_ssm=False,
            enable_hierarchical_cache=False,
            disable_radix_cache=False,
            tp_worker=None,
            model_config=model_config,
            tp_size=1,
            tp_rank=0,
            tp_group=None,
        )
    )
    assert isinstance(cache, UnifiedRadixCache), type(cache)
    return cache


class CpuScheduler:
    def __init__(
        self,
        model_dir: Path,
        *,
        fairbatching: FairBatchingSettings | None,
        chunked_prefill_size: int = 512,
        max_running_requests: int = 512,
        kv_tokens: int = 400_000,
        enable_overlap: bool = False,
        clock: Any = None,
        tree_cache: str = "radix",
    ) -> None:
        args = publish_config(
            model_dir,
            chunked_prefill_size=chunked_prefill_size,
            enable_mixed_chunk=fairbatching is None,
            enable_fairbatching=fairbatching is not None,
            pp_max_micro_batch_size=max_running_requests,
        )
        self.model_config = ModelConfig.from_server_args(args)
        r2t = ReqToTokenPool(
            size=max_running_requests,
            max_context_len=8192,
            device="cpu",
            enable_memory_saver=False,
        )
        alloc = TokenToKVPoolAllocator(
            size=kv_tokens,
            dtype=torch.float32,
            device="cpu",
            kvcache=_DummyKVCache(kv_tokens),
            need_sort=False,
        )
        cache = _make_tree_cache(tree_cache, args, self.model_config, r2t, alloc)
        s = Scheduler.__new__(Scheduler)
        self.s = s
        s.req_to_token_pool, s.token_to_kv_pool_allocator, s.tree_cache = r2t, alloc, cache
        s.model_config = self.model_config
        s.page_size = 1
        s.device = "cpu"
        s.chunked_prefill_size = chunked_prefill_size
        s.max_prefill_tokens = 16384
        s.is_mixed_chunk = True  # what the patched init_chunked_prefill sets for both cases
        s.chunked_req = None
        s._pending_chunked_abort_req = None
        s.max_running_requests = max_running_requests
        s.waiting_queue = []
        s.running_batch = ScheduleBatch(reqs=[], batch_is_full=False)
        s.last_batch = None
        s.enable_overlap = enable_overlap
        s.enable_skip_finishing_decode = enable_overlap
        s.result_queue = deque()
        s.spec_algorithm = SpeculativeAlgorithm.NONE
        s.policy = SchedulePolicy("fcfs", cache, False, False, False)
        s.new_token_ratio_tracker = NewTokenRatioTracker.from_config()
        s.processed_tokens_counter = None
        s.priority_scheduling_preemption_threshold = 0
        s.max_prefill_bs = 0
        s.enable_priority_preemption = s.enable_priority_scheduling = False
        s.is_hybrid_swa = False
        s.enable_lora = s.enable_hierarchical_cache = s.enable_hicache_storage = False
        s.enable_lmcache = s.enable_hisparse = s.enable_unified_cache_external_linker = False
        s.truncation_align_size = None
        s.dllm_config = None
        s.dynamic_chunk_sizer = None
        s.min_free_slots_delayer = None
        s.prefill_delayer = None
        s.require_mlp_sync = False
        s.hisparse_coordinator = None
        s.decode_offload_manager = None
        s.disaggregation_mode = DisaggregationMode.NULL
        s.forward_ct = 0
        s.scheduler_stage_metrics = None
        s._prefill_decode_interval_remaining = 0
        s.prefill_decode_interval = 0
        s.prefill_decode_interval_min_bs = 0
        for name in (
            "grammar_manager",
            "dp_attn_adapter",
            "ngram_embedding_manager",
            "load_inquirer",
            "metrics_reporter",
            "beam_coordinator",
            "future_map",
        ):
            setattr(s, name, _Inert())
        s.grammar_manager = types.SimpleNamespace(
            has_waiting_grammars=lambda: False, abort_requests=lambda recv_req: None
        )
        s.mm_receiver = None
        s.enable_continuous_input_polling = False
        s.send_abort_output = lambda *args, **kwargs: None  # no tokenizer manager to tell
        s.beam_coordinator = types.SimpleNamespace(pending_member_rows=lambda batch: 0)
        s.dp_attn_adapter = types.SimpleNamespace(
            maybe_prepare_mlp_sync_batch=lambda b, need_sync=False: b,
            maybe_convert_decode_to_extend=lambda b: b,
        )
        s.ngram_embedding_manager = types.SimpleNamespace(
            prepare_for_forward=lambda b, chunked_req=None: b
        )
        s.load_inquirer = types.SimpleNamespace(_get_num_pending_tokens=lambda chunk_deduct=0: 0)
        s.tp_worker = types.SimpleNamespace(
            model_runner=types.SimpleNamespace(attn_backend=object(), prefill_aware_swa=False)
        )
        s.fairbatching = None
        if fairbatching is not None:
            kwargs = {"clock": clock} if clock is not None else {}
            s.fairbatching = FairBatchingHook(
                fairbatching,
                chunked_prefill_size=chunked_prefill_size,
                max_prefill_tokens=s.max_prefill_tokens,
                enable_overlap=enable_overlap,
                **kwargs,
            )
        self.clock = clock
        self._rid = 0
        self._pending: deque[Any] = deque()  # overlap: the batch whose result is not processed

    # ------------------------------------------------------------------------------------------
    def add_request(
        self,
        num_input_tokens: int,
        max_new_tokens: int,
        custom_params: dict[str, Any] | None = None,
        **sampling: Any,
    ) -> Req:
        """A request in the waiting queue; `sampling` goes to SamplingParams (ignore_eos
        defaults to True; the emitted token is never EOS, so every request runs to its
        max_new_tokens either way)."""
        self._rid += 1
        sampling.setdefault("ignore_eos", True)
        sp = SamplingParams(max_new_tokens=max_new_tokens, custom_params=custom_params, **sampling)
        # Every request has the scheduler's tokenizer (req.tokenizer = self.tokenizer): the
        # min_new_tokens penalizer reads the EOS ids of all rows of its batch.
        sp.normalize(_TOKENIZER)
        base = 10 + (self._rid * 7919) % 900  # distinct prompts, no accidental prefix hits
        ids = array("q", ((base + i) % 990 + 5 for i in range(num_input_tokens)))
        req = Req(
            # Fixed width: Scheduler.abort_request matches rids by prefix.
            rid=f"r{self._rid:06d}",
            origin_input_text="",
            origin_input_ids=ids,
            sampling_params=sp,
        )
        req.tokenizer = _TOKENIZER
        if self.clock is not None:  # arrival on the same clock the hook reads
            req.time_stats.scheduler_recv_time = self.clock()
        req.init_next_round_input(self.s.tree_cache)  # match prefix once, as on arrival
        self.s.waiting_queue.append(req)
        return req

    def abort(self, req: Req) -> None:
        """SGLang's own abort path (Scheduler.abort_request): a queued request is dropped, a
        running one gets `to_finish` and finishes when its next result is processed."""
        from sglang.srt.managers.io_struct import AbortReq

        self.s.abort_request(AbortReq(rid=req.rid))

    def form_batch(self) -> ScheduleBatch | None:
        s = self.s
        plan = s.get_next_batch_to_run(running_batch=s.running_batch, last_batch=s.last_batch)
        s.running_batch = plan.running_batch
        return plan.batch_to_run

    def step(self) -> ScheduleBatch | None:
        """One loop iteration; under overlap the previous batch's result lands after the next
        batch is formed, as in event_loop_overlap."""
        s = self.s
        batch = self.form_batch()
        if batch is not None and batch.forward_mode.is_decode():
            pass  # prepare_for_decode already ran inside update_running_batch
        if s.enable_overlap:
            if batch is not None:
                self._pending.append(batch.copy())
                s.result_queue.append((batch.copy(), None))
            if len(self._pending) > (1 if batch is not None else 0):
                self.commit(self._pending.popleft())
                s.result_queue.popleft()
        elif batch is not None:
            self.commit(batch)
        s.last_batch = batch
        return batch

    def drain(self) -> None:
        while self._pending:
            self.commit(self._pending.popleft())
        self.s.result_queue.clear()

    def commit(self, batch: ScheduleBatch) -> None:
        """What SGLang's result processor does with one sampled token per row."""
        cache = self.s.tree_cache
        decoding = set(batch.decoding_reqs or [])
        for req in batch.reqs:
            if (req.finished() and req.inflight_middle_chunks <= 0) or req.is_retracted:
                continue
            if batch.forward_mode.is_decode() or req.inflight_middle_chunks <= 0:
                req.output_ids.append(7)
                req.update_finish_state()
                if req.finished():
                    release_kv_cache(req, cache, checkpoint=True)
                elif not batch.forward_mode.is_decode() and req not in decoding:
                    checkpoint_kv_cache(req, cache)
            else:
                req.inflight_middle_chunks -= 1

    def all_reqs(self) -> list[Req]:
        s = self.s
        reqs = list(s.running_batch.reqs)
        if s.last_batch is not None and not s.last_batch.forward_mode.is_decode():
            reqs += [r for r in s.last_batch.reqs if r not in reqs]
        return reqs


def finish_and_check(cs: CpuScheduler, reqs: list[Any], kv_tokens: int) -> None:
    """Drain, then: every request finished with exactly its max_new_tokens, nothing protected
    in the tree cache, every KV slot free or evictable (no leak)."""
    cs.drain()
    cs.step()  # merges and filters the last batch
    assert all(r.finished() for r in reqs)
    assert [len(r.output_ids) for r in reqs] == [r.sampling_params.max_new_tokens for r in reqs]
    cache = cs.s.tree_cache
    assert cache.protected_size() == 0
    assert cs.s.token_to_kv_pool_allocator.available_size() + cache.evictable_size() == kv_tokens

"""The emulated model worker: SGLang's TpModelWorker with no model, no weights and no KV tensors.

What stays real: the ReqToTokenPool and the TokenToKVPoolAllocator (the scheduler's memory
accounting, radix cache, retraction), every ScheduleBatch operation, the future map, result
processing. What is emulated: the forward pass. It returns deterministic token ids (a function
of each row's position, never a special id, so a request without ignore_eos runs to
max_new_tokens) and zero logprobs when a request asks for them, and it launches the batch on the
serial emulated device (device_clock.py), which decides when the scheduler may process it.

Modelled on SGLang's own MLX stub (`hardware_backend/mlx/model_runner_stub.py` and
`hardware_backend/mlx/tp_worker.py` in 0.5.23): the same overrides of `ModelRunner.initialize`,
`load_model`, `alloc_memory_pool`, `init_attention_backends`, `TpModelWorker._init_model_runner`,
`get_pad_input_ids_func` and `forward_batch_generation`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from sglang.srt.layers.logits_processor import LogitsProcessorOutput
from sglang.srt.managers.tp_worker import TpModelWorker
from sglang.srt.managers.utils import GenerationBatchResult
from sglang.srt.mem_cache.allocator import TokenToKVPoolAllocator
from sglang.srt.mem_cache.memory_pool import KVCache, ReqToTokenPool
from sglang.srt.model_executor.model_runner import ModelRunner
from sglang.srt.model_executor.model_runner_components.layer_setup import ModelLayerInfo
from sglang.srt.runtime_context import get_parallel, get_schedule

from fairbatching_sglang.emulator.batch_shape import shape_of
from fairbatching_sglang.emulator.device_clock import device_clock
from fairbatching_sglang.emulator.plugin import SAT_OUT_ATTR

logger = logging.getLogger(__name__)

# Fake output ids come from [low, low + span): ordinary tokens in Llama-3 / Qwen vocabularies
# and in the shipped tiny config (vocab 32000, eos 2), as the harness's prompt ids do.
FAKE_TOKEN_LOW = 1000
FAKE_TOKEN_SPAN = 29000


class NullKVCache(KVCache):
    """A KVCache that owns no buffers: TokenToKVPoolAllocator needs one to exist."""

    def __init__(self, size: int, dtype: torch.dtype) -> None:
        # KVCache.__init__ would set up memory savers and custom pools (CUDA paths).
        self.size = size
        self.page_size = 1
        self.dtype = dtype
        self.store_dtype = dtype
        self.device = "cpu"
        self.layer_num = 0
        self.start_layer = 0
        self.end_layer = 0
        self.mem_usage = 0
        self.cpu_offloading_chunk_size = 8192
        self.layer_transfer_counter = None
        self.enable_custom_mem_pool = False
        self.custom_mem_pool = None

    def get_key_buffer(self, layer_id: int) -> torch.Tensor:
        raise RuntimeError("emulated device: no KV buffers")

    def get_value_buffer(self, layer_id: int) -> torch.Tensor:
        raise RuntimeError("emulated device: no KV buffers")

    def get_kv_buffer(self, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise RuntimeError("emulated device: no KV buffers")

    def set_kv_buffer(self, layer: Any, loc: Any, cache_k: Any, cache_v: Any) -> None:
        raise RuntimeError("emulated device: no KV buffers")

    def get_kv_size_bytes(self) -> tuple[int, int]:
        return 0, 0


class _NoModel:
    """Stand-in for the model object ModelRunner code inspects."""

    from sglang.srt.configs.shared_experts import SharedExpertsConfig

    shared_experts_config = SharedExpertsConfig()

    @staticmethod
    def forward() -> None:
        pass


class EmulatedModelRunner(ModelRunner):
    """ModelRunner with the scheduler's bookkeeping pools only (no weights, no KV tensors)."""

    canary_manager = None
    prefill_aware_swa = False

    @property
    def logical_max_total_num_tokens(self) -> int:
        return self.max_total_num_tokens

    @property
    def preloaded_weights_bytes(self) -> int:
        return 0

    def load_model(self) -> None:
        self.model = _NoModel()
        self.sliding_window_size = None
        self.dtype = self.model_config.dtype
        self.weight_load_mem_usage = 0

    def initialize(self) -> None:
        from sglang.srt.utils.torch_memory_saver_adapter import TorchMemorySaverAdapter

        settings = device_clock().settings
        self.memory_saver_adapter = TorchMemorySaverAdapter.create(enable=False)
        self.sampler = None
        self.load_model()
        num_layers = max(
            self.model_config.num_hidden_layers, self.model_config.num_attention_layers
        )
        self.layer_info = ModelLayerInfo(
            start_layer=0, end_layer=num_layers, num_effective_layers=num_layers
        )
        self.kv_cache_dtype = self.dtype
        # --max-total-tokens when given, else the KV capacity of the emulated GPU's profile.
        requested = get_schedule().max_total_tokens
        self.max_total_num_tokens = int(requested or settings.kv_capacity_tokens)
        self.max_running_requests = self._max_running_requests()
        self.is_hybrid_swa = False
        self.req_to_token_pool = ReqToTokenPool(
            size=self.max_running_requests,
            max_context_len=self.model_config.context_len + 4,
            device="cpu",
            enable_memory_saver=False,
        )
        kv = NullKVCache(self.max_total_num_tokens, self.kv_cache_dtype)
        self.token_to_kv_pool = kv
        self.token_to_kv_pool_allocator = TokenToKVPoolAllocator(
            size=self.max_total_num_tokens,
            dtype=self.kv_cache_dtype,
            device="cpu",
            kvcache=kv,
            need_sort=False,
        )
        self.decode_cuda_graph_runner = None
        self.attn_backend = None
        self.init_ngram_embedding_manager()
        logger.info(
            "emulated device: pools max_total_num_tokens=%d max_running_requests=%d (%s)",
            self.max_total_num_tokens,
            self.max_running_requests,
            settings.describe(),
        )

    def _max_running_requests(self) -> int:
        # SGLang's rule without a flag: min(pool // 2, 4096) (model_runner_kv_cache_mixin), and
        # with one, the flag split over attention-DP ranks and capped by the pool.
        cap = self.max_total_num_tokens // 2
        requested = get_schedule().max_running_requests
        if requested is None:
            return max(1, min(cap, 4096))
        return max(1, min(requested // get_parallel().attn_dp_size, cap))

    def alloc_memory_pool(self, *args: Any, **kwargs: Any) -> None:
        pass

    def init_attention_backends(self) -> None:
        self.attn_backend = None


class EmulatedTpModelWorker(TpModelWorker):
    """TpModelWorker whose forward is the emulated device."""

    def _init_model_runner(self) -> None:
        self._model_runner = EmulatedModelRunner(
            model_config=self.model_config,
            mem_fraction_static=get_schedule().mem_fraction_static,
            gpu_id=self.gpu_id,
            nccl_port=self.nccl_port,
            server_args=self.server_args,
            is_draft_worker=self.is_draft_worker,
            req_to_token_pool=self.req_to_token_pool,
            token_to_kv_pool_allocator=self.token_to_kv_pool_allocator,
            memory_pool_config=self.memory_pool_config,
        )

    def get_pad_input_ids_func(self) -> None:
        return None

    def forward_batch_generation(
        self, batch: Any, forward_batch: Any = None, *args: Any, **kwargs: Any
    ) -> GenerationBatchResult:
        if batch is None:
            raise RuntimeError("emulated device: forward without a ScheduleBatch (spec/PP)")
        shape = shape_of(batch)
        step = device_clock().launch(shape, getattr(batch, SAT_OUT_ATTR, 0))
        seq_lens = batch.seq_lens_cpu
        if seq_lens is None:
            seq_lens = torch.tensor([r.seqlen for r in batch.reqs], dtype=torch.int64)
        next_ids = FAKE_TOKEN_LOW + (seq_lens.to(torch.int64) * 7919) % FAKE_TOKEN_SPAN
        result = GenerationBatchResult(
            logits_output=_logits_output(batch, next_ids),
            next_token_ids=next_ids,
            can_run_cuda_graph=False,
        )
        result.emulated_step = step  # read by the process_batch_result hook (plugin.py)
        return result


def _logits_output(batch: Any, next_ids: torch.Tensor) -> LogitsProcessorOutput:
    """Zero logprobs in the shapes the result processor consumes (`move_logprobs_to_cpu`,
    logprob_result_processor.py): next-token ones for every row and, in an extend batch, input
    ones for the prompt positions each row asked for (without them a request with
    logprob_start_len inside its prompt killed the scheduler)."""
    if not batch.return_logprob:
        return LogitsProcessorOutput(next_token_logits=None)
    n = len(batch.reqs)
    tops = [int(k or 0) for k in (batch.top_logprobs_nums or [0] * n)]
    tids = [list(t or ()) for t in (batch.token_ids_logprobs or [None] * n)]
    any_top = any(tops)
    any_tids = any(tids)
    top_val = [torch.zeros(k) for k in tops]
    top_idx = [torch.full((k,), int(next_ids[i])) for i, k in enumerate(tops)]
    tid_val = [torch.zeros(len(t)) for t in tids]
    out = LogitsProcessorOutput(
        next_token_logits=None,
        next_token_logprobs=torch.zeros(n),
        next_token_top_logprobs_val=top_val if any_top else None,
        next_token_top_logprobs_idx=top_idx if any_top else None,
        next_token_token_ids_logprobs_val=tid_val if any_tids else None,
        next_token_token_ids_logprobs_idx=tids if any_tids else None,
    )
    starts = batch.extend_logprob_start_lens
    if batch.forward_mode.is_extend() and starts is not None:
        # Row i reads extend_len - logprob start entries from the flat input array (the real
        # LogitsProcessor's extend_logprob_pruned_lens), per-row lists for top-k / token ids.
        counts = [max(0, int(e) - int(st)) for e, st in zip(batch.extend_lens, starts, strict=True)]
        out.input_token_logprobs = torch.zeros(sum(counts))
        if any_top:
            pairs = list(zip(tops, counts, strict=True))
            out.input_top_logprobs_val = [[[0.0] * k] * c for k, c in pairs]
            out.input_top_logprobs_idx = [[[FAKE_TOKEN_LOW] * k] * c for k, c in pairs]
        if any_tids:
            out.input_token_ids_logprobs_val = [
                [[0.0] * len(t)] * c for t, c in zip(tids, counts, strict=True)
            ]
            out.input_token_ids_logprobs_idx = [[t] * c for t, c in zip(tids, counts, strict=True)]
    return out

"""Pure FairBatching: deadlines, cost model, budget, batch formation, load estimate.

No sglang, torch, I/O or clock here: time comes in as an argument (now_ms), so the simulator and
the SGLang adapter drive exactly the same objects.
"""

from fairbatching_sglang.core.config import FairBatchingConfig
from fairbatching_sglang.core.cost_model import HingeCostModel, StepShape, chunk_attn_work
from fairbatching_sglang.core.deadline import next_token_slack_ms, token_deadline_ms, token_slack_ms
from fairbatching_sglang.core.decision import BatchDecision, PrefillChunk
from fairbatching_sglang.core.policy import FairBatchingPolicy, decode_slack_ms, prefill_order
from fairbatching_sglang.core.slo import DEFAULT_SLO, SloTable, SloTargets
from fairbatching_sglang.core.snapshot import (
    DecodeRequest,
    DecodeRows,
    PrefillRequest,
    PrefillRows,
    SchedulerSnapshot,
)

__all__ = [
    "DEFAULT_SLO",
    "BatchDecision",
    "DecodeRequest",
    "DecodeRows",
    "FairBatchingConfig",
    "FairBatchingPolicy",
    "HingeCostModel",
    "PrefillChunk",
    "PrefillRequest",
    "PrefillRows",
    "SchedulerSnapshot",
    "SloTable",
    "SloTargets",
    "StepShape",
    "chunk_attn_work",
    "decode_slack_ms",
    "next_token_slack_ms",
    "prefill_order",
    "token_deadline_ms",
    "token_slack_ms",
]

"""SGLang adapter: the only code in the project that imports sglang.

Modules (imported lazily by the patched scheduler, so importing this package stays cheap):
- settings: the --fairbatching-* flags as a frozen config, and their validation;
- req_state: per-request timing state the adapter keeps itself (SGLang's is stale for mixed rows);
- snapshot: Req / ScheduleBatch -> core SchedulerSnapshot;
- plan: core BatchDecision -> StepPlan (what the scheduler applies), encoded for TP agreement;
- batch_ops: StepPlan -> PrefillAdder budgets, waiting-queue order, parked-row split;
- telemetry: Prometheus metrics and the JSONL step log;
- hook: FairBatchingHook, the object the scheduler patch calls.
"""

from fairbatching_sglang.sglang_adapter.settings import (
    FairBatchingSettings,
    check_fairbatching_args,
)

__all__ = ["FairBatchingSettings", "check_fairbatching_args"]

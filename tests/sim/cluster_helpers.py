from __future__ import annotations

import pandas as pd

from fairbatching_sglang.core import FairBatchingConfig
from fairbatching_sglang.sim.cluster import ClusterSimulator, ClusterSummary, RouterConfig
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.records import MemorySink
from fairbatching_sglang.sim.schedulers import make_scheduler
from fairbatching_sglang.sim.workload_arrays import SimWorkload
from tests.sim.helpers import CM


def simulate_cluster(
    workload: SimWorkload,
    policy: str,
    router: str | RouterConfig,
    num_replicas: int,
    *,
    kv_capacity_tokens: int = 400_000,
    fb_config: FairBatchingConfig | None = None,
    **config: object,
) -> tuple[ClusterSummary, pd.DataFrame, pd.DataFrame]:
    cfg = SimConfig(**{"step_overhead_ms": 0.0, **config})  # type: ignore[arg-type]
    rcfg = router if isinstance(router, RouterConfig) else RouterConfig(router)
    sink = MemorySink()
    summary = ClusterSimulator(
        workload,
        [make_scheduler(policy, CM, fb_config) for _ in range(num_replicas)],
        CM,
        cfg,
        sink,
        kv_capacity_tokens,
        rcfg,
    ).run()
    return summary, pd.DataFrame(sink.requests), pd.DataFrame(sink.steps)

from __future__ import annotations

import numpy as np
import pandas as pd

from fairbatching_sglang.core import FairBatchingConfig, HingeCostModel
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.sim.config import SimConfig
from fairbatching_sglang.sim.engine import SimSummary, Simulator
from fairbatching_sglang.sim.records import MemorySink
from fairbatching_sglang.sim.schedulers import make_scheduler
from fairbatching_sglang.sim.workload_arrays import SimWorkload

CM: HingeCostModel = load_profile().cost_model


def random_workload(seed: int, n: int = 300, rate_per_s: float = 20.0) -> SimWorkload:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1000.0 / rate_per_s, n))
    inputs = rng.integers(1, 3000, n)
    outputs = rng.integers(1, 300, n)
    return SimWorkload.uniform_slo(arrivals, inputs, outputs, 1000.0, 50.0)


def simulate(
    workload: SimWorkload,
    policy: str,
    *,
    kv_capacity_tokens: int = 400_000,
    fb_config: FairBatchingConfig | None = None,
    **config: object,
) -> tuple[SimSummary, pd.DataFrame, pd.DataFrame]:
    cfg = SimConfig(**{"step_overhead_ms": 0.0, **config})  # type: ignore[arg-type]
    sink = MemorySink()
    summary = Simulator(
        workload, make_scheduler(policy, CM, fb_config), CM, cfg, sink, kv_capacity_tokens
    ).run()
    return summary, pd.DataFrame(sink.requests), pd.DataFrame(sink.steps)

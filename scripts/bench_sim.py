#!/usr/bin/env python3
"""Simulator speed and memory benchmark.

1. Replays the Azure 2023 conv trace (19,366 requests, ~1 h) at 1x under every policy and prints
   wall time and requests simulated per second. Target: <= 15 s per policy on a 2-core machine.
2. Replays the same trace compressed 4x (overload: queues grow) with records streamed to Parquet
   and samples the process RSS as the replay progresses. Target: memory stays flat (the RSS at
   the end is within a small margin of the RSS a quarter of the way in).

    python scripts/bench_sim.py [--trace PATH] [--policies a,b] [--scale 4]

Without ../shared/traces, a 1-hour synthetic conv-like trace from the project's generator is used.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.sim.runner import run_simulation
from fairbatching_sglang.sim.schedulers import POLICY_NAMES
from fairbatching_sglang.workload import RequestTable, load_trace

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2]
    / "shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
)
TARGET_S = 15.0


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def load(path: Path | None) -> RequestTable:
    if path is not None and path.exists():
        return load_trace(path)
    from fairbatching_sglang.workload import generate, get_preset

    print("shared trace not found: using a 1-hour synthetic conv trace (seed 0)")
    return generate(get_preset("conv"), 3600.0, seed=0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--policies", default=",".join(POLICY_NAMES))
    parser.add_argument("--scale", type=float, default=4.0)
    args = parser.parse_args()

    table = load(args.trace)
    profile = load_profile()
    slo = SloTable(SloTargets(1000.0, 50.0))
    print(f"python {platform.python_version()}, numpy {np.__version__}; trace {table.source}")
    print(f"{table.num_requests} requests over {table.span_s:.0f} s\n")
    print(f"{'policy':<16}{'wall_s':>8}{'req/s':>9}{'steps':>10}  target <= {TARGET_S:.0f} s")
    worst = 0.0
    for policy in args.policies.split(","):
        r = run_simulation(table, policy, profile, slo_table=slo, rate_scale=1.0)
        worst = max(worst, r.wall_s)
        print(
            f"{policy:<16}{r.wall_s:>8.2f}{table.num_requests / r.wall_s:>9.0f}"
            f"{r.engine.num_steps:>10}  {'met' if r.wall_s <= TARGET_S else 'MISSED'}"
        )

    print(f"\nmemory over a {args.scale:g}x-compressed replay (records streamed to Parquet):")
    print(f"{'policy':<16}{'rss@25%':>9}{'rss@50%':>9}{'rss@75%':>9}{'rss@end':>9}{'growth':>9}")
    for policy in args.policies.split(","):
        samples: dict[int, float] = {}

        def on_progress(done: int, total: int, samples: dict[int, float] = samples) -> None:
            quarter = min(4, int(4 * done / max(total, 1)))
            if quarter >= 1 and quarter not in samples:
                samples[quarter] = rss_mib()

        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_simulation(
                table,
                policy,
                profile,
                slo_table=slo,
                rate_scale=args.scale,
                out_dir=Path(tmp),
                progress=on_progress,
            )
            wall = time.perf_counter() - t0
        q = [samples.get(i, float("nan")) for i in (1, 2, 3, 4)]
        print(
            f"{policy:<16}"
            + "".join(f"{v:>8.0f}M" for v in q)
            + f"{q[3] - q[0]:>+8.0f}M  ({wall:.1f} s)"
        )
    print(f"\nslowest 1x replay: {worst:.2f} s (target <= {TARGET_S:.0f} s)")
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())

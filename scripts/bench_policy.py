#!/usr/bin/env python3
"""Micro-benchmark: FairBatching decision time per step.

Prints the median (and p90) time of FairBatchingPolicy.decide for snapshots of 64/256/1024
running decodes and 1000 waiting requests, a mix of decodes ahead of and behind their envelope.
Target: median <= 300 us at 256 running + 1000 waiting (a GPU step is ~10 ms; the scheduler must
stay within a few percent of it).

    python scripts/bench_policy.py [--repeats 2000] [--waiting 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from fairbatching_sglang.core import (
    DecodeRequest,
    FairBatchingPolicy,
    PrefillRequest,
    SchedulerSnapshot,
    SloTargets,
)
from fairbatching_sglang.profiles import load_profile

TARGET_US = 300.0
TARGET_RUNNING = 256


def make_snapshot(num_running: int, num_waiting: int, seed: int) -> SchedulerSnapshot:
    rng = np.random.default_rng(seed)
    slo = SloTargets(ttft_slo_ms=1000.0, tpot_slo_ms=50.0)
    now = 60_000.0
    decodes = []
    for _ in range(num_running):
        n_out = int(rng.integers(1, 600))
        # Spread around the envelope: some late, most ahead by up to a few seconds.
        slack = float(rng.normal(400.0, 600.0))
        arrival = now + slack - slo.ttft_slo_ms - n_out * slo.tpot_slo_ms
        decodes.append(
            DecodeRequest(
                arrival, slo, n_out, int(rng.integers(200, 8000)), bool(rng.random() > 0.05)
            )
        )
    prefills = [
        PrefillRequest(
            now - float(rng.uniform(0, 1500)),
            slo,
            int(rng.integers(16, 8000)),
            int(rng.integers(0, 2000)),
            int(rng.integers(0, 256)),
            is_continuing=(i == 0),
        )
        for i in range(num_waiting)
    ]
    return SchedulerSnapshot.build(
        now,
        decodes,
        prefills,
        max_num_batched_tokens=8192,
        max_prefill_tokens=8192,
        kv_free_tokens=300_000,
        max_new_prefills=64,
    )


def time_decisions(
    policy: FairBatchingPolicy, snap: SchedulerSnapshot, repeats: int
) -> list[float]:
    for _ in range(50):
        policy.decide(snap)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        policy.decide(snap)
        samples.append((time.perf_counter() - t0) * 1e6)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    policy = FairBatchingPolicy(load_profile().cost_model)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(
        f"{'running':>8} {'waiting':>8} {'median_us':>10} {'p90_us':>8} {'parked':>7} {'chunks':>7}"
    )
    verdict = 0
    for num_running in (64, 256, 1024):
        snap = make_snapshot(num_running, args.waiting, args.seed)
        samples = time_decisions(policy, snap, args.repeats)
        dec = policy.decide(snap)
        median = statistics.median(samples)
        p90 = float(np.percentile(samples, 90))
        print(
            f"{num_running:>8} {args.waiting:>8} {median:>10.1f} {p90:>8.1f} "
            f"{len(dec.parked_decode_indices):>7} {len(dec.prefill_chunks):>7}"
        )
        if num_running == TARGET_RUNNING:
            ok = median <= TARGET_US
            verdict = 0 if ok else 1
            target_line = (
                f"target: median <= {TARGET_US:.0f} us at {TARGET_RUNNING} running + "
                f"{args.waiting} waiting: {'met' if ok else 'MISSED'} ({median:.1f} us)"
            )
    print(target_line)
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())

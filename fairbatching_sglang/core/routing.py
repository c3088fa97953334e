"""Pure routing choices over per-replica load numbers (no I/O, no clock, no state).

Shared by the cluster simulator (`sim/cluster`) and the real router adapter: the caller gathers
the numbers (from simulated state or from `/v1/loads`), these functions only choose.

FairBatching's rule (`choose_by_admission_budget`): send a request to the replica with the
largest prefill admission budget (`core.load_estimate`) among those that can take its prompt;
when none can, return None and the caller queues the request at the router and retries later.

Oversize requests: a prompt larger than what even an idle replica can admit within the TTFT SLO
(`max_admission_tokens`, the budget `estimate_load` gives an empty replica) would never fit any
budget and would wait forever. Its need is therefore capped at `max_admission_tokens`: it goes
to a replica whose budget has reached that idle value (the replica is idle: nothing queued,
nothing decoding), the best one can do for it; it will miss its TTFT SLO anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def choose_by_admission_budget(
    admission_tokens: Sequence[int] | np.ndarray,
    request_prefill_tokens: int,
    *,
    max_admission_tokens: int | None = None,
) -> int | None:
    """Index of the replica with the largest budget among those with budget >= the request's
    prefill tokens (ties -> lowest index); None when no replica has room (queue at the router).

    max_admission_tokens: an idle replica's budget; a request larger than it needs only that
    much (see the module docstring). None: no cap (an oversize request waits for a replica whose
    budget covers it).
    """
    need = int(request_prefill_tokens)
    if max_admission_tokens is not None:
        need = min(need, int(max_admission_tokens))
    best: int | None = None
    best_budget = 0
    for i, b in enumerate(admission_tokens):
        b = int(b)
        if b >= need and (best is None or b > best_budget):
            best, best_budget = i, b
    return best


def choose_least(values: Sequence[float] | np.ndarray) -> int:
    """Index of the smallest value (ties -> lowest index): least outstanding requests, least
    load score. Raises on an empty sequence."""
    if len(values) == 0:
        raise ValueError("no replicas to choose from")
    best = 0
    best_v = values[0]
    for i in range(1, len(values)):
        if values[i] < best_v:
            best, best_v = i, values[i]
    return best


def power_of_two_pair(num_replicas: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two distinct replica indices drawn uniformly (SGLang router / smg: the second is the
    first plus 1 + a draw from the remaining n-1, mod n). One replica: (0, 0)."""
    if num_replicas < 1:
        raise ValueError("no replicas to choose from")
    if num_replicas == 1:
        return 0, 0
    i = int(rng.integers(num_replicas))
    j = (i + 1 + int(rng.integers(num_replicas - 1))) % num_replicas
    return i, j


def choose_power_of_two(loads: Sequence[float] | np.ndarray, rng: np.random.Generator) -> int:
    """Draw two replicas with `rng`, keep the one with the lower load (the first on a tie, as
    smg's `load1 <= load2`)."""
    i, j = power_of_two_pair(len(loads), rng)
    return i if loads[i] <= loads[j] else j


def least_load_score(
    queued_tokens: float,
    inflight_tokens: float,
    gen_throughput_tps: float,
    token_usage: float,
    *,
    kv_pressure_weight_s: float = 0.15,
    default_throughput_tps: float = 2000.0,
) -> float:
    """smg's `least_load` score in seconds (lower is better):
    (queued + in-flight-since-poll tokens) / throughput + weight * k / (1 - k), k = KV usage
    clamped to [0, 0.999]; a zero throughput falls back to `default_throughput_tps`."""
    tp = gen_throughput_tps if gen_throughput_tps > 0 else default_throughput_tps
    k = min(max(token_usage, 0.0), 0.999)
    return (queued_tokens + inflight_tokens) / tp + kv_pressure_weight_s * k / (1.0 - k)

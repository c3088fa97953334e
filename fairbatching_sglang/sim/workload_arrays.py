"""The simulator's input: one array per request attribute (arrival in ms, lengths, SLOs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SimWorkload:
    arrival_ms: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_slo_ms: np.ndarray
    tpot_slo_ms: np.ndarray
    hash_ids: Sequence[Sequence[int] | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.arrival_ms)
        for name in ("input_tokens", "output_tokens", "ttft_slo_ms", "tpot_slo_ms"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"workload column {name} has a different length than arrival_ms")
        if n and np.any(np.diff(self.arrival_ms) < 0):
            raise ValueError("workload arrivals must be sorted")
        if n and (self.input_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError("workload lengths must be >= 1 token")

    @property
    def num_requests(self) -> int:
        return len(self.arrival_ms)

    @classmethod
    def uniform_slo(
        cls,
        arrival_ms: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        ttft_slo_ms: float,
        tpot_slo_ms: float,
        hash_ids: Sequence[Sequence[int] | None] | None = None,
    ) -> SimWorkload:
        arrival = np.asarray(arrival_ms, dtype=np.float64)
        n = len(arrival)
        return cls(
            arrival_ms=arrival,
            input_tokens=np.asarray(input_tokens, dtype=np.int64),
            output_tokens=np.asarray(output_tokens, dtype=np.int64),
            ttft_slo_ms=np.full(n, float(ttft_slo_ms)),
            tpot_slo_ms=np.full(n, float(tpot_slo_ms)),
            hash_ids=hash_ids,
        )

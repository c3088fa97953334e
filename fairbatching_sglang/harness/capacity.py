"""Capacity search: the highest rate scale whose SLO attainment still meets a target.

Bracket by doubling (or halving) from a start rate, then bisect until hi/lo - 1 <= rel_tol or the
probe budget is spent. Attainment is assumed to fall with rate; real curves are noisy, so every
probe is recorded and the report plots them all. Probes are memoised by rate so the 90% and 99%
searches of one arm share runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CapacityConfig:
    start_rate: float = 1.0
    rel_tol: float = 0.02
    max_probes: int = 14  # per target, shared cache aside
    min_rate: float = 1.0 / 64
    max_rate: float = 256.0


@dataclass(frozen=True)
class CapacityResult:
    target: float
    capacity: float | None  # highest passing rate found; None: even min_rate fails
    upper: float | None  # lowest failing rate found; None: even max_rate passes
    num_probes: int


class ProbeCache:
    """rate -> attainment, in probe order, shared by the searches of one arm."""

    def __init__(self, evaluate: Callable[[float], float]) -> None:
        self.evaluate = evaluate
        self.probes: dict[float, float] = {}

    def __call__(self, rate: float) -> float:
        rate = round(rate, 6)  # bisection midpoints of the two searches can coincide
        if rate not in self.probes:
            self.probes[rate] = float(self.evaluate(rate))
        return self.probes[rate]


def find_capacity(
    attainment: Callable[[float], float], target: float, cfg: CapacityConfig | None = None
) -> CapacityResult:
    cfg = cfg or CapacityConfig()
    probes = 0

    def ok(rate: float) -> bool:
        nonlocal probes
        probes += 1
        return attainment(rate) >= target

    lo: float | None
    hi: float | None
    rate = cfg.start_rate
    if ok(rate):
        lo, hi = rate, None
        while probes < cfg.max_probes and lo * 2 <= cfg.max_rate:
            if ok(lo * 2):
                lo *= 2
            else:
                hi = lo * 2
                break
        if hi is None:
            return CapacityResult(target, lo, None, probes)
    else:
        lo, hi = None, rate
        while probes < cfg.max_probes and hi / 2 >= cfg.min_rate:
            if ok(hi / 2):
                lo = hi / 2
                break
            hi /= 2
        if lo is None:
            return CapacityResult(target, None, hi, probes)
    while probes < cfg.max_probes and hi / lo - 1.0 > cfg.rel_tol:
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return CapacityResult(target, lo, hi, probes)

"""Capacity search: the highest rate scale whose SLO attainment still meets a target.

Bracket by doubling (or halving) from a start rate, then bisect until hi/lo - 1 <= rel_tol or the
probe budget is spent. Attainment is assumed to fall with rate; real curves are noisy, so every
probe is recorded and the report plots them all. Probes are memoised by rate so the 90% and 99%
searches of one arm share runs, and every rate is keyed at RATE_DECIMALS so no two probes differ
only by rounding (a probe at 6.3125 is reused, never re-run at 6.312). A probe that is no
measurement (InvalidMeasurement, e.g. a CPU-starved emulated run) stops that target's search: the
result is then a lower bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RATE_DECIMALS = 6  # the one rounding of a probed rate (cache keys, detail rate, reports)


def rate_key(rate: float) -> float:
    """A probed rate as stored and compared: bisection midpoints of two searches, a detail rate
    taken from a capacity, and a resumed probe all land on the same key."""
    return round(float(rate), RATE_DECIMALS)


@dataclass(frozen=True)
class CapacityConfig:
    """min_rate / max_rate: the search's floor and ceiling (rate scales); a capacity below the
    floor is reported as None ("fails even at min_rate"), one above the ceiling as max_rate with
    no upper bound. Lower the floor for traces that are already far above a device's capacity."""

    start_rate: float = 1.0
    rel_tol: float = 0.02
    max_probes: int = 14  # per target, shared cache aside
    min_rate: float = 1.0 / 64
    max_rate: float = 256.0

    def __post_init__(self) -> None:
        # Field names match the CLI flags (--min-rate etc.), so the message names the flag.
        if not self.min_rate > 0:
            raise ValueError(f"min_rate must be > 0, got {self.min_rate:g}")
        if not self.max_rate >= self.min_rate:
            raise ValueError(
                f"max_rate ({self.max_rate:g}) must be >= min_rate ({self.min_rate:g})"
            )
        if not self.min_rate <= self.start_rate <= self.max_rate:
            raise ValueError(
                f"start_rate {self.start_rate:g} is outside [min_rate {self.min_rate:g}, "
                f"max_rate {self.max_rate:g}]"
            )
        if self.rel_tol < 0:
            raise ValueError(f"rel_tol must be >= 0, got {self.rel_tol:g}")
        if self.max_probes < 1:
            raise ValueError(f"max_probes must be >= 1, got {self.max_probes}")


class InvalidMeasurement(Exception):
    """A probe that ran but measured nothing usable (e.g. a CPU-starved emulated run)."""

    def __init__(self, rate: float, reason: str) -> None:
        super().__init__(f"x{rate:g}: {reason}")
        self.rate = rate
        self.reason = reason


@dataclass(frozen=True)
class CapacityResult:
    """capacity: highest passing rate found; None: even min_rate fails (or nothing valid ran).
    upper: lowest failing rate found; None: even max_rate passes.
    invalid_rate / invalid_reason: the search stopped at a probe that was no measurement. Then
    `capacity` is only a lower bound (the true knee may lie anywhere below `upper`, or above
    invalid_rate when upper is None): bisecting on, or treating the probe as a failure, would
    report this machine's limit as the policy's."""

    target: float
    capacity: float | None
    upper: float | None
    num_probes: int
    invalid_rate: float | None = None
    invalid_reason: str | None = None

    @property
    def bound(self) -> str:
        """ "found" (bracketed to rel_tol or the budget), "lower" or "unknown" (invalid probe)."""
        if self.invalid_rate is None:
            return "found"
        return "lower" if self.capacity is not None else "unknown"


class ProbeCache:
    """rate -> attainment, in probe order, shared by the searches of one arm. A probe that
    raised InvalidMeasurement is remembered too (and raises again): re-running it would cost a
    server start and most likely starve again."""

    def __init__(self, evaluate: Callable[[float], float]) -> None:
        self.evaluate = evaluate
        self.probes: dict[float, float] = {}
        self.invalid: dict[float, str] = {}

    def __call__(self, rate: float) -> float:
        rate = rate_key(rate)  # bisection midpoints of the two searches can coincide
        if rate in self.invalid:
            raise InvalidMeasurement(rate, self.invalid[rate])
        if rate not in self.probes:
            try:
                self.probes[rate] = float(self.evaluate(rate))
            except InvalidMeasurement as exc:
                self.invalid[rate] = exc.reason
                raise
        return self.probes[rate]


class _Search:
    """Bracket then bisect; lo / hi are kept on the object so an InvalidMeasurement mid-way
    still leaves the bracket found so far."""

    def __init__(self, attainment: Callable[[float], float], target: float) -> None:
        self.attainment = attainment
        self.target = target
        self.lo: float | None = None
        self.hi: float | None = None
        self.probes = 0

    def ok(self, rate: float) -> bool:
        self.probes += 1
        return self.attainment(rate) >= self.target

    def run(self, cfg: CapacityConfig) -> None:
        rate = cfg.start_rate
        if self.ok(rate):
            self.lo = rate
            while self.probes < cfg.max_probes and self.lo * 2 <= cfg.max_rate:
                if self.ok(self.lo * 2):
                    self.lo *= 2
                else:
                    self.hi = self.lo * 2
                    break
            if self.hi is None:
                return
        else:
            self.hi = rate
            while self.probes < cfg.max_probes and self.hi / 2 >= cfg.min_rate:
                if self.ok(self.hi / 2):
                    self.lo = self.hi / 2
                    break
                self.hi /= 2
            if self.lo is None:
                return
        assert self.lo is not None and self.hi is not None
        while self.probes < cfg.max_probes and self.hi / self.lo - 1.0 > cfg.rel_tol:
            mid = (self.lo + self.hi) / 2
            if self.ok(mid):
                self.lo = mid
            else:
                self.hi = mid


def find_capacity(
    attainment: Callable[[float], float], target: float, cfg: CapacityConfig | None = None
) -> CapacityResult:
    """attainment(rate) may raise InvalidMeasurement: the search then stops there (see
    CapacityResult)."""
    s = _Search(attainment, target)
    try:
        s.run(cfg or CapacityConfig())
    except InvalidMeasurement as exc:
        return CapacityResult(target, s.lo, s.hi, s.probes, exc.rate, exc.reason)
    return CapacityResult(target, s.lo, s.hi, s.probes)

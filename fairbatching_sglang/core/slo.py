"""Per-request latency targets (SLOs) and how a request's own targets are resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SloTargets:
    """Latency targets of one request, in milliseconds.

    ttft_slo_ms: time from arrival to the first output token.
    tpot_slo_ms: pace of every later token along the envelope (not a per-gap bound).
    """

    ttft_slo_ms: float
    tpot_slo_ms: float

    def __post_init__(self) -> None:
        if not self.ttft_slo_ms > 0:
            raise ValueError(f"ttft_slo_ms must be > 0, got {self.ttft_slo_ms}")
        if not self.tpot_slo_ms > 0:
            raise ValueError(f"tpot_slo_ms must be > 0, got {self.tpot_slo_ms}")


DEFAULT_SLO = SloTargets(ttft_slo_ms=1000.0, tpot_slo_ms=50.0)


@dataclass(frozen=True)
class SloTable:
    """Default targets, optional named classes (e.g. "interactive", "batch"), per-request overrides.

    Resolution order for one request: explicit per-request override > its class > the default.
    An unknown class is an error rather than a silent fallback, since it usually means a typo.
    """

    default: SloTargets = DEFAULT_SLO
    classes: Mapping[str, SloTargets] = field(default_factory=dict)

    def resolve(
        self,
        slo_class: str | None = None,
        ttft_slo_ms: float | None = None,
        tpot_slo_ms: float | None = None,
    ) -> SloTargets:
        base = self.default
        if slo_class is not None:
            if slo_class not in self.classes:
                known = ", ".join(sorted(self.classes)) or "none defined"
                raise KeyError(f"unknown SLO class {slo_class!r} (known: {known})")
            base = self.classes[slo_class]
        if ttft_slo_ms is None and tpot_slo_ms is None:
            return base
        return SloTargets(
            ttft_slo_ms=base.ttft_slo_ms if ttft_slo_ms is None else float(ttft_slo_ms),
            tpot_slo_ms=base.tpot_slo_ms if tpot_slo_ms is None else float(tpot_slo_ms),
        )

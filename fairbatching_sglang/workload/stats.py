"""Summary statistics of a trace: size, rate, length percentiles and burstiness."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fairbatching_sglang.workload.table import RequestTable

PERCENTILES: tuple[int, ...] = (50, 90, 99)


@dataclass(frozen=True)
class TraceStats:
    """What `fairbatching trace stats` prints.

    ia_cv: coefficient of variation of inter-arrival gaps (1 for Poisson).
    per_second_cv: CV of arrivals counted per 1-s bin (Poisson: 1/sqrt(rate)).
    peak_1s_over_mean: the busiest 1-s bin divided by the mean rate.
    """

    rows: int
    span_s: float
    rate_rps: float
    input_pcts: dict[str, float]
    output_pcts: dict[str, float]
    ia_cv: float
    per_second_cv: float
    peak_1s_over_mean: float
    empty_second_fraction: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def render(self) -> str:
        def pct(d: dict[str, float]) -> str:
            return " ".join(f"{k}={v:.0f}" for k, v in d.items())

        return "\n".join(
            [
                f"rows: {self.rows}",
                f"span_s: {self.span_s:.1f}",
                f"rate_rps: {self.rate_rps:.3f}",
                f"input_tokens: {pct(self.input_pcts)}",
                f"output_tokens: {pct(self.output_pcts)}",
                f"inter_arrival_cv: {self.ia_cv:.2f}",
                f"per_second_count_cv: {self.per_second_cv:.2f}",
                f"peak_1s_over_mean: {self.peak_1s_over_mean:.1f}",
                f"empty_second_fraction: {self.empty_second_fraction:.2f}",
            ]
        )


def _pcts(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {}
    out = {f"p{p}": float(np.percentile(x, p)) for p in PERCENTILES}
    out["max"] = float(x.max())
    return out


def per_second_counts(arrival_s: np.ndarray) -> np.ndarray:
    """Arrivals per 1-s bin from the first arrival to the last (last partial bin included)."""
    if arrival_s.size == 0:
        return np.zeros(0, dtype=np.int64)
    rel = arrival_s - arrival_s[0]
    return np.bincount(rel.astype(np.int64))


def compute_stats(table: RequestTable) -> TraceStats:
    a = table.arrival_s
    gaps = np.diff(a)
    ia_cv = float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else float("nan")
    counts = per_second_counts(a)
    mean = table.mean_rate_rps
    if counts.size > 1 and counts.mean() > 0:
        sec_cv = float(counts.std() / counts.mean())
        peak = float(counts.max() / mean) if mean > 0 else float("nan")
        empty = float((counts == 0).mean())
    else:
        sec_cv = peak = empty = float("nan")
    return TraceStats(
        rows=len(table),
        span_s=table.span_s,
        rate_rps=mean,
        input_pcts=_pcts(table.input_tokens),
        output_pcts=_pcts(table.output_tokens),
        ia_cv=ia_cv,
        per_second_cv=sec_cv,
        peak_1s_over_mean=peak,
        empty_second_fraction=empty,
    )

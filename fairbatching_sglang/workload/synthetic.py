"""Synthetic traces from a few parameters (`SyntheticSpec`), presets, and fitting a spec to a trace.

Lengths: quantile knots (or a lognormal) per direction, joined by a Gaussian copula with rank-ish
correlation `length_corr`. Arrivals: Poisson, gamma renewal with a CV, or on-off bursts (long idle
gaps, then clumps), which is what code-completion traffic looks like. Everything is seeded; the
same spec, duration and seed give the same table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from fairbatching_sglang.workload.arrivals import onoff_arrivals, renewal_arrivals
from fairbatching_sglang.workload.lengths import DEFAULT_PROBS, LengthDist, QuantileLengths
from fairbatching_sglang.workload.table import RequestTable

ArrivalKind = Literal["poisson", "gamma", "onoff"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic workload.

    rate_rps: long-run mean request rate.
    arrival: "poisson"; "gamma" (renewal with inter-arrival CV `cv`); "onoff" (exponential ON
        periods of mean `on_mean_s` carrying a gamma process with CV `on_cv`, OFF periods of mean
        `off_mean_s` carrying `off_rate_fraction * rate_rps` Poisson arrivals).
    input_lengths / output_lengths: token length distributions (already clipped to their ranges).
    length_corr: correlation of the normal scores of input and output lengths (0: independent).
    max_context: optional model context; input + output is clipped to it (see clip_lengths).
    """

    name: str
    rate_rps: float
    input_lengths: LengthDist
    output_lengths: LengthDist
    arrival: ArrivalKind = "poisson"
    cv: float = 1.0
    on_mean_s: float = 10.0
    off_mean_s: float = 20.0
    on_cv: float = 1.0
    off_rate_fraction: float = 0.0
    length_corr: float = 0.0
    max_context: int | None = None

    def __post_init__(self) -> None:
        if not self.rate_rps > 0:
            raise ValueError(f"rate_rps must be > 0, got {self.rate_rps}")
        if self.arrival not in ("poisson", "gamma", "onoff"):
            raise ValueError(f"unknown arrival process {self.arrival!r}")
        if not -1 < self.length_corr < 1:
            raise ValueError("length_corr must be in (-1, 1)")

    def with_rate(self, rate_rps: float) -> SyntheticSpec:
        """The same workload shape at another mean rate (burst lengths unchanged)."""
        return replace(self, rate_rps=rate_rps)


def _arrivals(spec: SyntheticSpec, rng: np.random.Generator, duration_s: float) -> np.ndarray:
    if spec.arrival == "poisson":
        return renewal_arrivals(rng, duration_s, spec.rate_rps, 1.0)
    if spec.arrival == "gamma":
        return renewal_arrivals(rng, duration_s, spec.rate_rps, spec.cv)
    return onoff_arrivals(
        rng,
        duration_s,
        spec.rate_rps,
        spec.on_mean_s,
        spec.off_mean_s,
        spec.on_cv,
        spec.off_rate_fraction,
    )


def generate(spec: SyntheticSpec, duration_s: float, *, seed: int = 0) -> RequestTable:
    """A RequestTable of `duration_s` seconds drawn from `spec` (deterministic in `seed`)."""
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    rng = np.random.default_rng(seed)
    t = _arrivals(spec, rng, duration_s)
    n = t.shape[0]
    z1 = rng.standard_normal(n)
    z2 = rng.standard_normal(n)
    rho = spec.length_corr
    inp = spec.input_lengths.from_normal(z1)
    out = spec.output_lengths.from_normal(rho * z1 + math.sqrt(1 - rho * rho) * z2)
    if spec.max_context is not None:
        inp = np.minimum(inp, spec.max_context - 1)
        out = np.minimum(out, spec.max_context - inp)
    return RequestTable.from_arrays(
        np.round(t, 6),  # what the CSV keeps, so a written and re-read trace is identical
        inp,
        out,
        source=f"synthetic:{spec.name}",
        format="synthetic",
        transformations=(
            f"generate spec={spec.name} rate_rps={spec.rate_rps:g} arrival={spec.arrival} "
            f"duration_s={duration_s:g} seed={seed}",
        ),
    )


# ---- fitting ----------------------------------------------------------------------------------
BURSTY_CV = 2.0  # inter-arrival CV above which a gamma renewal fits badly and on-off is used


def _onoff_params(a: np.ndarray) -> dict[str, float]:
    """Split arrivals into bursts at gaps longer than a threshold; moments of bursts and gaps.

    The threshold is the larger of 1 s and 10x the median gap: gaps inside a clump are
    milliseconds, idle gaps between clumps are seconds to minutes.
    """
    gaps = np.diff(a)
    thr = max(1.0, 10.0 * float(np.median(gaps)))
    idle = gaps > thr
    starts = np.concatenate(([0], np.flatnonzero(idle) + 1))
    ends = np.concatenate((np.flatnonzero(idle), [a.size - 1]))
    inner = gaps[~idle]
    mean_inner = float(inner.mean()) if inner.size else thr
    # A burst of k arrivals lasts about k gaps (one more than the first-to-last time).
    on = float(np.mean(a[ends] - a[starts] + mean_inner))
    off = float(np.mean(gaps[idle] - mean_inner)) if idle.any() else on
    on_cv = float(inner.std() / inner.mean()) if inner.size > 1 and inner.mean() > 0 else 1.0
    return {"on_mean_s": on, "off_mean_s": max(off, 1e-3), "on_cv": max(on_cv, 0.1)}


def _normal_score_corr(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation converted to the copula's normal-score correlation."""
    if x.size < 3:
        return 0.0
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable")
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable")
    rs = float(np.corrcoef(rx, ry)[0, 1])
    if not math.isfinite(rs):
        return 0.0
    return float(np.clip(2 * math.sin(math.pi * rs / 6), -0.99, 0.99))


def fit_spec(table: RequestTable, name: str = "fitted") -> SyntheticSpec:
    """Estimate a SyntheticSpec from a loaded trace.

    Lengths: quantile knots of the trace. Arrivals: gamma renewal with the measured inter-arrival
    CV when it is moderate (cv <= 2), else an on-off process fitted from bursts and idle gaps.
    """
    if len(table) < 3 or table.span_s <= 0:
        raise ValueError("fitting needs at least three requests over a positive span")
    a = table.arrival_s
    gaps = np.diff(a)
    cv = float(gaps.std() / gaps.mean())
    inp, out = table.input_tokens, table.output_tokens
    base = SyntheticSpec(
        name=name,
        rate_rps=table.mean_rate_rps,
        input_lengths=QuantileLengths.fit(inp, DEFAULT_PROBS),
        output_lengths=QuantileLengths.fit(out, DEFAULT_PROBS),
        length_corr=round(_normal_score_corr(inp, out), 3),
    )
    if cv <= BURSTY_CV:
        return replace(base, arrival="gamma", cv=round(cv, 3))
    p = _onoff_params(a)
    spec = replace(base, arrival="onoff", **{k: round(v, 3) for k, v in p.items()})
    return _calibrate_on_cv(spec, table)


def _calibrate_on_cv(spec: SyntheticSpec, table: RequestTable) -> SyntheticSpec:
    """Pick the ON-period CV whose simulated per-second count CV is closest to the trace's.

    The gap CV inside bursts underestimates clumping (millisecond clusters inside a burst), and
    the per-second count CV and 1-s peak are what stress a scheduler, so they are matched
    directly, by simulation with fixed seeds (deterministic).
    """
    from fairbatching_sglang.workload.stats import per_second_counts

    def sec_cv(a: np.ndarray) -> float:
        c = per_second_counts(a)
        return float(c.std() / c.mean()) if c.size > 1 and c.mean() > 0 else 0.0

    target = sec_cv(table.arrival_s)
    horizon = max(min(table.span_s, 3600.0), 600.0)
    best, best_err = spec, math.inf
    for on_cv in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0):
        cand = replace(spec, on_cv=on_cv)
        sims = [sec_cv(_arrivals(cand, np.random.default_rng(s), horizon)) for s in range(3)]
        err = abs(float(np.mean(sims)) - target)
        if err < best_err:
            best, best_err = cand, err
    return best

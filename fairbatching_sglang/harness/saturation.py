"""The saturation limit of a trace on a device: the highest rate scale it sustains, SLOs ignored.

A capacity says where a scheduler stops meeting the SLOs; the limit says where the device stops
keeping up at all, so every capacity can be read as a fraction of what any scheduler could
reach. It is a property of the trace, the device model and the engine, not of the arm under
test: it is searched once per A/B (and once per SLO grid) with one fixed schedule, SGLang's
`--enable-mixed-chunk` (every decode rides on the prefill steps, so no step is spent on a
handful of decodes alone; it exists on every backend). Measured (realistic device, Azure conv
first 20 min, completion rate at 1.6x overload): prefill first 19.0 req/s, mixed 19.6, Sarathi
19.85, FairBatching 19.6, so the limit is within ~1-4% of any of these schedules'.

Sustained: the run's drain (makespan - arrival span: how long it runs past its last arrival)
exceeds the drain of a low-load reference run by at most DRAIN_TOL of its arrival span, and at
most MAX_FAILED_FRACTION of its requests failed. Rate scaling compresses time, so the last
requests are the same ones at every rate and the reference's drain is what they need anyway;
what a faster replay adds beyond it is backlog, which grows with the overload ((offered /
served) - 1 of the span). Measured (realistic device, overlap loop, Azure conv first 20 min):
completion rate 9.9 / 19.1 / 19.5 / 19.8 req/s at x2 / x4 / x5 / x8, drain 3.2 / 13.6 / 67 /
153 s against 0.6 s at x1/8; the search puts the limit at x4 (20 req/s offered). Tried and
dropped: the backlog's least-squares slope (a burst near the end looked like growth, a 20%
overload on Azure code like none), the delay of the last finishes without a reference (a 2-min
window "failed" at half its limit: a 400-token answer is a large share of a 60-s span), the
interquartile completion / arrival rate (not monotone in the rate).

The search is the capacity search's bracket-and-bisect on that yes/no (after the reference
probe at REFERENCE_FRACTION of the start rate), so it shares its floor, ceiling and tolerance;
probes are kept under <out>/saturation/<arm>/x<rate>/ (resumable like any run).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fairbatching_sglang.harness.ab import safe_run
from fairbatching_sglang.harness.arms import resolve_arm
from fairbatching_sglang.harness.capacity import (
    CapacityConfig,
    CapacityResult,
    InvalidMeasurement,
    ProbeCache,
    find_capacity,
    rate_key,
)
from fairbatching_sglang.harness.outcome import RunOutcome

SATURATION_ARM = "sglang-mixed"
SATURATION_DIR = "saturation"
DRAIN_TOL = 0.05
MAX_FAILED_FRACTION = 0.01
REFERENCE_FRACTION = 1 / 8


@dataclass(frozen=True)
class SaturationResult:
    """limit: highest sustained rate scale found (None: not even the floor); upper: lowest
    rate found not sustained (None: the ceiling was sustained). offered_rps_at_limit: the
    request rate the limit is (trace requests / span x limit); sustained_rps: the highest
    completion rate measured by any probe (at or beyond the limit it is the device's)."""

    arm: str
    limit: float | None
    upper: float | None
    offered_rps_at_limit: float | None
    sustained_rps: float | None
    drain_tol: float
    reference_rate: float
    reference_drain_s: float | None
    probes: tuple[dict[str, float], ...]
    bound: str = "found"
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def excess_drain_fraction(outcome: RunOutcome, reference_drain_s: float) -> float:
    """(drain - reference drain) / arrival span; NaN when the run has no such figures."""
    s = outcome.summary
    drain, makespan = s.get("drain_s"), s.get("makespan_s")
    if drain is None or makespan is None or not (math.isfinite(drain) and makespan > drain):
        return math.nan
    return (drain - reference_drain_s) / (makespan - drain)


def sustained(outcome: RunOutcome, reference_drain_s: float) -> bool:
    s = outcome.summary
    failed = s.get("num_failed", 0.0) / max(s.get("num_requests", 1.0), 1.0)
    excess = excess_drain_fraction(outcome, reference_drain_s)
    return math.isfinite(excess) and excess <= DRAIN_TOL and failed <= MAX_FAILED_FRACTION


def run_saturation(
    backend: Any,
    out_dir: Path,
    search: CapacityConfig,
    base_rate_rps: float,
    prior: dict[float, RunOutcome] | None = None,
    on_run: Any = None,
) -> SaturationResult:
    """Search the limit with `backend` (an ab Backend); results in out_dir/saturation/.
    base_rate_rps: the trace's request rate at rate scale 1. prior: rate -> finished outcome
    (a --resume) reused instead of run again."""
    arm = resolve_arm(SATURATION_ARM)
    arm_dir = out_dir / SATURATION_DIR / arm.name
    arm_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[float, RunOutcome] = dict(prior or {})
    ref_rate = rate_key(max(search.min_rate, search.start_rate * REFERENCE_FRACTION))
    ref_drain: list[float] = []

    with backend.open_arm(arm, arm_dir) as session:

        def run(rate: float) -> RunOutcome:
            o = runs.get(rate)
            if o is None:
                o = safe_run(session, arm, rate, arm_dir, False)  # writes status.json
                runs[rate] = o
                if on_run is not None:
                    on_run(o)
            if o.status != "ok":
                raise InvalidMeasurement(rate, o.error or o.status)
            return o

        def probe(rate: float) -> float:
            return 1.0 if sustained(run(rate), ref_drain[0]) else 0.0

        try:
            ref_drain.append(float(run(ref_rate).summary.get("drain_s", math.nan)))
            if not math.isfinite(ref_drain[0]):
                raise InvalidMeasurement(ref_rate, "the reference run has no drain time")
            res = find_capacity(ProbeCache(probe), 0.5, search)
        except InvalidMeasurement as exc:
            res = CapacityResult(0.5, None, None, len(runs), exc.rate, exc.reason)
    ref = ref_drain[0] if ref_drain and math.isfinite(ref_drain[0]) else math.nan
    probes = tuple(
        {
            "rate_scale": r,
            "sustained": float(sustained(o, ref)) if math.isfinite(ref) else math.nan,
            "drain_s": o.summary.get("drain_s", math.nan),
            "excess_drain_fraction": excess_drain_fraction(o, ref),
            "sustained_throughput_rps": o.summary.get("sustained_throughput_rps", math.nan),
            "offered_rps": base_rate_rps * r,
        }
        for r, o in sorted(runs.items())
    )
    rates = [p["sustained_throughput_rps"] for p in probes]
    rates = [x for x in rates if x is not None and math.isfinite(x)]
    result = SaturationResult(
        arm=arm.name,
        limit=res.capacity,
        upper=res.upper,
        offered_rps_at_limit=base_rate_rps * res.capacity if res.capacity else None,
        sustained_rps=max(rates) if rates else None,
        drain_tol=DRAIN_TOL,
        reference_rate=ref_rate,
        reference_drain_s=ref if math.isfinite(ref) else None,
        probes=probes,
        bound=res.bound,
        note=res.invalid_reason,
    )
    doc = {**result.to_dict(), "search": asdict(search)}
    (out_dir / SATURATION_DIR / "saturation.json").write_text(
        json.dumps(doc, indent=2, default=str) + "\n"
    )
    return result


def read_saturation(out_dir: Path) -> dict[str, Any] | None:
    """saturation.json of an A/B (or SLO grid) directory, None when there is none."""
    path = out_dir / SATURATION_DIR / "saturation.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc

"""The saturation limit of a trace on a device: the highest rate scale it sustains, SLOs ignored.

A capacity says where a scheduler stops meeting the SLOs; the limit says where the device stops
keeping up at all, so every capacity can be read as a fraction of what any scheduler could
reach. It is a property of the trace, the device model and the engine, not of the arm under
test: it is searched once per A/B (and once per SLO grid) with fixed schedules, SGLang's
`--enable-mixed-chunk` at its default chunk and at 2048 tokens (every decode rides on the
prefill steps, so no step is spent on a handful of decodes alone; both exist on every
backend), and the limit is the higher of the two. Measured (realistic device, Azure conv first
20 min, completion rate at 1.6x overload): prefill first 19.0 req/s, mixed 19.6, Sarathi
19.85, FairBatching 19.6. Limits per schedule (realistic device): reasoning preset x5.69 at
the default chunk (8192) and x5.75 at 2048, whole Azure code x7.125 and x7.0: either can lead.
The limit is SGLang's, whose admission reserves KV for the future output of every new and
running request (up to 4096 tokens each); the simulator's `sarathi` (vLLM-style: no
reservation, preemption instead) can exceed it on long outputs (reasoning preset: Sarathi meets
the SLOs at x6.75; without the reservation SGLang mixed's attainment there goes from 0.41 to
0.69, Sarathi's is 0.90).

Sustained: the late arrivals wait no longer than at low load. The run summary's
late_ttft_p50_s is the median time to first token of the last 10% of requests by arrival (the
same requests at every rate scale); a rate is sustained when it exceeds the same figure of a
low-load reference run by at most BACKLOG_TOL of the run's arrival span, and at most
MAX_FAILED_FRACTION of its requests failed. Under an overload rho = offered / served the
waiting line grows through the run and a request arriving at t waits about (rho - 1) t, so the
last arrivals' excess is about (rho - 1) x span: a 5% tolerance is a ~5% overload.

Why the wait and not the whole latency or the drain: a loaded device that keeps up still runs
bigger batches and slower steps, and that steady slowdown is paid per output token. On the
reasoning preset (outputs p50 500, tail 30k tokens) Sarathi at x6 has its late arrivals' median
latency at 14 s against 4 s at low load, 5% of a 200-s span, with no queue at all (their first
token still comes in 0.1 s): a latency criterion put Sarathi's own limit at x5.9, below the
x6.75 at which it met the SLOs. The run's drain (makespan - arrival span, the first version) is
the slowest late answer: x0.91 there. A device with KV to spare can let an overload grow its
running batch for a while before a queue forms; measured, the queue follows within a few
percent of the rate (whole Azure conv: the late arrivals' median latency rose at x3.75, their
wait at x3.875). Tried and dropped before: the backlog's least-squares slope (a burst near the
end looked like growth, a 20% overload on Azure code like none), the delay of the last finishes
without a reference (a 2-min window "failed" at half its limit), the interquartile completion /
arrival rate (not monotone in the rate). Each probe's figures are in saturation.json.

The search is the capacity search's bracket-and-bisect on that yes/no (after the reference
probe at REFERENCE_FRACTION of the start rate), so it shares its floor, ceiling and tolerance;
probes are kept under <out>/saturation/<arm>/x<rate>/ (resumable like any run).
"""

from __future__ import annotations

import dataclasses
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

# The fixed schedules searched; the limit is the highest any of them sustains. SGLang's mixed
# mode at its default chunk and at 2048 tokens: equal on Azure conv (x4), 2048 ahead on the
# reasoning preset (x5.75 vs x5.69), the default chunk ahead on Azure code (x7.125 vs x7.0).
# Both exist on every backend.
SATURATION_ARMS = ("sglang-mixed", "sglang-mixed@2048")
SATURATION_DIR = "saturation"
LATE_FIGURE = "late_ttft_p50_s"  # the run summary's late-arrival figure the criterion compares
BACKLOG_TOL = 0.05
MAX_FAILED_FRACTION = 0.01
REFERENCE_FRACTION = 1 / 8


@dataclass(frozen=True)
class SaturationResult:
    """limit: highest sustained rate scale found (None: not even the floor); upper: lowest
    rate found not sustained (None: the ceiling was sustained). offered_rps_at_limit: the
    request rate the limit is (trace requests / span x limit); sustained_rps: the highest
    completion rate measured by any probe (at or beyond the limit it is the device's).
    arm: the schedule whose search set the limit; schedules: every schedule's own search
    (arm, limit, upper, bound, note), the one above included."""

    arm: str
    limit: float | None
    upper: float | None
    offered_rps_at_limit: float | None
    sustained_rps: float | None
    backlog_tol: float
    late_figure: str
    reference_rate: float
    reference_late_s: float | None
    probes: tuple[dict[str, float], ...]
    bound: str = "found"
    note: str | None = None
    schedules: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def arrival_span_s(outcome: RunOutcome) -> float:
    """The run's arrival span (makespan - drain); NaN when the run has no such figures."""
    s = outcome.summary
    drain, makespan = s.get("drain_s"), s.get("makespan_s")
    if drain is None or makespan is None or not (math.isfinite(drain) and makespan > drain):
        return math.nan
    return float(makespan - drain)


def late_excess_fraction(outcome: RunOutcome, reference_late_s: float) -> float:
    """(late arrivals' figure - the reference's) / arrival span; NaN without figures (inf
    when most late requests failed: the run did not serve them at all)."""
    late = outcome.summary.get(LATE_FIGURE)
    span = arrival_span_s(outcome)
    if late is None or not math.isfinite(span):
        return math.nan
    if math.isnan(late):
        return math.inf
    return (late - reference_late_s) / span


def sustained(outcome: RunOutcome, reference_late_s: float) -> bool:
    s = outcome.summary
    failed = s.get("num_failed", 0.0) / max(s.get("num_requests", 1.0), 1.0)
    excess = late_excess_fraction(outcome, reference_late_s)
    return excess <= BACKLOG_TOL and failed <= MAX_FAILED_FRACTION


def saturation_arms(backend: Any) -> tuple[str, ...]:
    """SATURATION_ARMS without the ones that are the same schedule on this backend (the
    simulator knows its default chunk; a server's depends on its GPU, so both run there)."""
    setting = getattr(backend, "setting", None)
    if setting is not None and setting("chunked_prefill_size") == 2048:
        return SATURATION_ARMS[:1]
    return SATURATION_ARMS


def run_saturation(
    backend: Any,
    out_dir: Path,
    search: CapacityConfig,
    base_rate_rps: float,
    prior: dict[str, dict[float, RunOutcome]] | None = None,
    on_run: Any = None,
) -> SaturationResult:
    """Search the limit with `backend` (an ab Backend), once per saturation schedule, and keep
    the highest; results in out_dir/saturation/. base_rate_rps: the trace's request rate at
    rate scale 1. prior: arm -> rate -> finished outcome (a --resume) reused, not run again."""
    results = [
        _search(backend, name, out_dir, search, base_rate_rps, (prior or {}).get(name), on_run)
        for name in saturation_arms(backend)
    ]
    best = max(results, key=lambda r: -1.0 if r.limit is None else r.limit)
    schedules = tuple(
        {"arm": r.arm, "limit": r.limit, "upper": r.upper, "bound": r.bound, "note": r.note}
        for r in results
    )
    result = dataclasses.replace(best, schedules=schedules)
    doc = {**result.to_dict(), "search": asdict(search)}
    (out_dir / SATURATION_DIR / "saturation.json").write_text(
        json.dumps(doc, indent=2, default=str) + "\n"
    )
    return result


def _search(
    backend: Any,
    arm_name: str,
    out_dir: Path,
    search: CapacityConfig,
    base_rate_rps: float,
    prior: dict[float, RunOutcome] | None,
    on_run: Any,
) -> SaturationResult:
    arm = resolve_arm(arm_name)
    arm_dir = out_dir / SATURATION_DIR / arm.name
    arm_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[float, RunOutcome] = dict(prior or {})
    ref_rate = rate_key(max(search.min_rate, search.start_rate * REFERENCE_FRACTION))
    ref_late: list[float] = []

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
            return 1.0 if sustained(run(rate), ref_late[0]) else 0.0

        try:
            late = run(ref_rate).summary.get(LATE_FIGURE)
            ref_late.append(math.nan if late is None else float(late))
            if not math.isfinite(ref_late[0]):
                raise InvalidMeasurement(
                    ref_rate,
                    f"the reference run has no {LATE_FIGURE} (a run from before that figure "
                    "existed, or most late requests failed)",
                )
            res = find_capacity(ProbeCache(probe), 0.5, search)
        except InvalidMeasurement as exc:
            res = CapacityResult(0.5, None, None, len(runs), exc.rate, exc.reason)
    ref = ref_late[0] if ref_late and math.isfinite(ref_late[0]) else math.nan
    probes = tuple(
        {
            "rate_scale": r,
            "sustained": float(sustained(o, ref)) if math.isfinite(ref) else math.nan,
            "late_e2e_p50_s": o.summary.get("late_e2e_p50_s", math.nan),
            "late_ttft_p50_s": o.summary.get("late_ttft_p50_s", math.nan),
            "late_excess_fraction": late_excess_fraction(o, ref),
            "drain_s": o.summary.get("drain_s", math.nan),
            "sustained_throughput_rps": o.summary.get("sustained_throughput_rps", math.nan),
            "offered_rps": base_rate_rps * r,
        }
        for r, o in sorted(runs.items())
    )
    rates = [p["sustained_throughput_rps"] for p in probes]
    rates = [x for x in rates if x is not None and math.isfinite(x)]
    return SaturationResult(
        arm=arm.name,
        limit=res.capacity,
        upper=res.upper,
        offered_rps_at_limit=base_rate_rps * res.capacity if res.capacity else None,
        sustained_rps=max(rates) if rates else None,
        backlog_tol=BACKLOG_TOL,
        late_figure=LATE_FIGURE,
        reference_rate=ref_rate,
        reference_late_s=ref if math.isfinite(ref) else None,
        probes=probes,
        bound=res.bound,
        note=res.invalid_reason,
    )


def read_saturation(out_dir: Path) -> dict[str, Any] | None:
    """saturation.json of an A/B (or SLO grid) directory, None when there is none."""
    path = out_dir / SATURATION_DIR / "saturation.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc

"""The A/B driver: every arm at every requested rate, a capacity search per arm, then a report.

Layout of an output directory (each file written as soon as its run finishes, so a crash in one
arm never loses another's results):
  ab.json                       configuration, command, versions, backend label, trace
  <arm>/x<rate>/status.json     one run (+ requests.parquet, steps.parquet, summary.*, run.json)
  <arm>/capacity.json           every probe, the capacity at each target and its bound
                                ("found" | "lower" | "unknown": see capacity.CapacityResult)
  <arm>@<N>/...                 --tune-baselines: a stock arm with its knob at N (same layout;
                                ab.json "tuning" says which setting won, see tune_baselines)
  report.md, *.csv, plots/      made by fairbatching_sglang.report from the files above
"""

from __future__ import annotations

import dataclasses
import json
import math
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fairbatching_sglang.harness.arms import ARMS, KNOBS, TUNED, Arm, setting_arm
from fairbatching_sglang.harness.capacity import (
    CapacityConfig,
    InvalidMeasurement,
    ProbeCache,
    find_capacity,
    rate_key,
)
from fairbatching_sglang.harness.outcome import ArmUnavailable, RunOutcome, rate_dir_name


class ArmSession(Protocol):
    def run(self, rate: float, run_dir: Path, keep_records: bool) -> RunOutcome: ...


class Backend(Protocol):
    kind: str  # "simulated" | "measured" | "emulated"

    @property
    def label(self) -> str: ...

    def describe(self) -> dict[str, Any]:
        """ab.json entries naming the device (profile, GPU, device model, ...)."""
        ...

    def open_arm(self, arm: Arm, arm_dir: Path) -> AbstractContextManager[ArmSession]: ...


@dataclass(frozen=True)
class TuneConfig:
    """--tune-baselines: (stock arm, values of its knob, arms.KNOBS) pairs to sweep. The arm's
    default setting is always a candidate too (its runs are the default arm's), so the tuned
    arm is never worse than the default one."""

    sweeps: tuple[tuple[str, tuple[int, ...]], ...]

    def __post_init__(self) -> None:
        for arm, values in self.sweeps:
            if arm not in KNOBS:
                raise ValueError(f"arm {arm!r} has no knob to tune; tunable: {', '.join(KNOBS)}")
            if not values or any(v < 1 for v in values):
                raise ValueError(f"{KNOBS[arm].option}: values must be integers >= 1")


@dataclass(frozen=True)
class AbConfig:
    """rates: fixed rate scales every arm runs (records kept). capacity: None skips the search.
    detail_rate: the common rate of the latency table and CDF plots; None picks the lowest
    capacity at the first target among arms (every arm is then near or below its knee).
    tune: sweep the stock arms' knobs (needs the capacity search and a backend with
    `setting(field)`, i.e. the simulator)."""

    arms: tuple[str, ...]
    rates: tuple[float, ...] = ()
    capacity_targets: tuple[float, ...] = (0.90, 0.99)
    capacity: CapacityConfig | None = field(default_factory=CapacityConfig)
    detail_rate: float | None = None
    keep_probe_records: bool = False
    tune: TuneConfig | None = None
    # Search the trace's saturation limit on this device (saturation.py) with the capacity
    # search's settings; every capacity is then also a fraction of it.
    saturation: bool = False

    def __post_init__(self) -> None:
        if self.tune is not None and self.capacity is None:
            raise ValueError("--tune-baselines needs the capacity search (drop --no-capacity)")
        if self.saturation and self.capacity is None:
            raise ValueError("--saturation needs the capacity search (drop --no-capacity)")


@dataclass
class ArmResult:
    arm: str
    runs: dict[float, RunOutcome] = field(default_factory=dict)
    capacity: dict[str, float | None] = field(default_factory=dict)
    # target -> {"bound": "lower" | "unknown", "invalid_rate", "reason"}; absent when found
    capacity_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None


def safe_run(session: ArmSession, arm: Arm, rate: float, arm_dir: Path, keep: bool) -> RunOutcome:
    """One probe of `arm` at `rate`, written to its run directory; a raising run is an "error"
    outcome (arms and the saturation search alike)."""
    run_dir = arm_dir / rate_dir_name(rate)
    try:
        outcome = session.run(rate, run_dir, keep)
    except Exception as exc:  # one bad run must not end the experiment
        outcome = RunOutcome(
            arm.name,
            rate,
            "error",
            error=f"{exc!r}\n{traceback.format_exc()}",
            out_dir=str(run_dir),
        )
    outcome.write(run_dir)
    return outcome


def run_arm(
    backend: Backend,
    arm: Arm,
    cfg: AbConfig,
    out_dir: Path,
    on_run: Callable[[RunOutcome], None] | None = None,
    prior: ArmResult | None = None,
) -> ArmResult:
    arm_dir = out_dir / arm.name
    arm_dir.mkdir(parents=True, exist_ok=True)
    result = ArmResult(arm.name, runs=dict(prior.runs) if prior else {})

    def run(rate: float, keep: bool) -> RunOutcome:
        prev = result.runs.get(rate)
        kept = prev is not None and prev.extra.get("records_kept", True)
        if prev is not None and (kept or not keep):
            return prev
        outcome = safe_run(session, arm, rate, arm_dir, keep)
        result.runs[rate] = outcome
        if on_run is not None:
            on_run(outcome)
        if outcome.status == "start_failed":
            raise ArmUnavailable(outcome.error or "server did not start")
        return outcome

    def probe(rate: float) -> float:
        # An invalid run is not a measurement, and neither is a harness fault ("error": the
        # run never measured the server): the search must not bisect on either.
        o = run(rate, cfg.keep_probe_records)
        if o.status == "invalid":
            raise InvalidMeasurement(rate, o.error or "invalid run")
        if o.status == "error":
            first = (o.error or "").splitlines()[0] if o.error else "?"
            raise InvalidMeasurement(rate, f"harness error, not a measurement: {first}")
        return o.attainment

    try:
        with backend.open_arm(arm, arm_dir) as session:
            for rate in cfg.rates:
                run(rate, True)
            if cfg.capacity is not None:
                cache = ProbeCache(probe)
                for target in cfg.capacity_targets:
                    res = find_capacity(cache, target, cfg.capacity)
                    result.capacity[f"{target:g}"] = res.capacity
                    if res.invalid_rate is not None:
                        result.capacity_notes[f"{target:g}"] = {
                            "bound": res.bound,
                            "invalid_rate": res.invalid_rate,
                            "reason": res.invalid_reason,
                        }
                _write_capacity(arm_dir, arm.name, cfg, result, cache.probes, cache.invalid)
    except ArmUnavailable as exc:
        result.status, result.error = "start_failed", str(exc)
    except Exception as exc:
        result.status, result.error = "error", f"{exc!r}\n{traceback.format_exc()}"
    if result.status != "ok":
        _write_capacity(arm_dir, arm.name, cfg, result, {})
    return result


def _write_capacity(
    arm_dir: Path,
    name: str,
    cfg: AbConfig,
    result: ArmResult,
    probes: dict[float, float],
    invalid: dict[float, str] | None = None,
) -> None:
    doc = {
        "arm": name,
        "status": result.status,
        "error": result.error,
        "capacity": result.capacity,
        "bounds": {
            k: result.capacity_notes.get(k, {}).get("bound", "found") for k in result.capacity
        },
        "capacity_notes": result.capacity_notes,
        "search": asdict(cfg.capacity) if cfg.capacity else None,
        "probes": [{"rate_scale": r, "slo_attainment": a} for r, a in probes.items()],
        "invalid_probes": [{"rate_scale": r, "reason": why} for r, why in (invalid or {}).items()],
    }
    (arm_dir / "capacity.json").write_text(json.dumps(doc, indent=2) + "\n")


def pick_detail_rate(results: list[ArmResult], cfg: AbConfig) -> float:
    if cfg.detail_rate is not None:
        return cfg.detail_rate
    key = f"{cfg.capacity_targets[0]:g}" if cfg.capacity_targets else None
    caps = [r.capacity.get(key) for r in results if key is not None]
    caps = [c for c in caps if c is not None and c > 0]
    if caps:
        # The capacity itself (a probed rate), not a rounding of it: rounding to 3 decimals put
        # a second run at 6.312 beside the probe at 6.3125.
        return rate_key(min(caps))
    return cfg.rates[0] if cfg.rates else 1.0


@dataclass
class TuneResult:
    """One stock arm's sweep. points: value -> (arm that ran it, its result); the default
    value's arm is the default arm itself. best_value: the winner (see _rank)."""

    arm: str
    default_value: int
    points: dict[int, tuple[Arm, ArmResult]]
    best_value: int

    @property
    def best(self) -> tuple[Arm, ArmResult]:
        return self.points[self.best_value]

    def to_dict(self, targets: tuple[float, ...]) -> dict[str, Any]:
        knob = KNOBS[self.arm]
        best_arm, best_res = self.best
        return {
            "knob": knob.field,
            "option": knob.option,
            "default": self.default_value,
            "values": sorted(self.points),
            "rank_target": f"{targets[0]:g}" if targets else None,
            "tuned_arm": f"{self.arm}@{TUNED}",
            "best_value": self.best_value,
            "best_arm": best_arm.name,
            "best_capacity": best_res.capacity,
            "points": [
                {
                    "value": v,
                    "arm": a.name,
                    "is_default": v == self.default_value,
                    "status": r.status,
                    "capacity": r.capacity,
                    "capacity_notes": r.capacity_notes,
                }
                for v, (a, r) in sorted(self.points.items())
            ],
        }


def sweep_arms(cfg: AbConfig, default_of: Callable[[str], int]) -> dict[str, list[Arm]]:
    """Stock arm -> the arms its sweep runs (one per value other than the default setting)."""
    out: dict[str, list[Arm]] = {}
    for name, values in cfg.tune.sweeps if cfg.tune else ():
        default = default_of(KNOBS[name].field)
        out[name] = [setting_arm(name, v) for v in sorted(set(values)) if v != default]
    return out


def all_arm_names(cfg: AbConfig, default_of: Callable[[str], int]) -> list[str]:
    """Every arm directory this A/B may write (its arms and the sweep points): what a
    --resume looks for."""
    names = list(cfg.arms)
    for arms in sweep_arms(cfg, default_of).values():
        names += [a.name for a in arms if a.name not in names]
    return names


def _rank(result: ArmResult, targets: tuple[float, ...]) -> tuple[float, ...]:
    """Capacity at each target in order (the first decides, the next break ties); a bound
    that is not "found" or a missing capacity ranks lowest (it is no measurement)."""
    key: list[float] = []
    for t in targets:
        k = f"{t:g}"
        cap = result.capacity.get(k)
        bounded = k in result.capacity_notes
        key.append(-math.inf if cap is None or bounded or result.status != "ok" else cap)
    return tuple(key)


def tune_baselines(
    backend: Backend,
    cfg: AbConfig,
    out_dir: Path,
    done: dict[str, ArmResult],
    on_run: Callable[[RunOutcome], None] | None = None,
    prior_runs: dict[str, dict[float, RunOutcome]] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, TuneResult]:
    """Sweep each stock arm's knob: one capacity search per value (fixed --rates are not run:
    the sweep ranks capacities), each as its own arm directory <arm>@<value>, so --resume
    reuses finished probes the way it does for any arm. done: results of the arms already run
    (by name): the default setting's point is the default arm's result, and a sweep point that
    is also in --arms is not run twice. The best value: highest capacity at the first target,
    ties broken by the next target, then in favour of the default setting, then the smaller
    value."""
    setting = getattr(backend, "setting", None)
    if cfg.tune is None:
        return {}
    if setting is None:
        raise ValueError("--tune-baselines: this backend has no knob settings (sim only)")
    sweep_cfg = dataclasses.replace(cfg, rates=(), tune=None)
    prior_runs = prior_runs or {}
    out: dict[str, TuneResult] = {}
    for name, arms in sweep_arms(cfg, setting).items():
        if name not in done:
            continue  # only arms of this A/B are tuned (the CLI refuses the other case)
        knob = KNOBS[name]
        default = setting(knob.field)
        points: dict[int, tuple[Arm, ArmResult]] = {default: (ARMS[name], done[name])}
        for i, arm in enumerate(arms, 1):
            value = arm.sim_overrides[knob.field]
            if on_progress is not None:
                on_progress(f"tuning {name}: {knob.field}={value} ({i}/{len(arms)})")
            res = done.get(arm.name) or run_arm(
                backend, arm, sweep_cfg, out_dir, on_run, _prior(prior_runs.get(arm.name))
            )
            points[value] = (arm, res)
        best = default
        for value in sorted(points):
            if _rank(points[value][1], cfg.capacity_targets) > _rank(
                points[best][1], cfg.capacity_targets
            ):
                best = value
        out[name] = TuneResult(name, default, points, best)
        if on_progress is not None:
            key = f"{cfg.capacity_targets[0]:g}" if cfg.capacity_targets else None
            cap = points[best][1].capacity.get(key) if key else None
            base = done[name].capacity.get(key) if key else None
            on_progress(
                f"tuned {name}: {knob.field}={best} (capacity at {key}: {_num(cap)}; "
                f"default {default}: {_num(base)})"
            )
    return out


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def run_ab(
    backend: Backend,
    arms: list[Arm],
    cfg: AbConfig,
    out_dir: Path,
    meta: dict[str, Any],
    on_run: Callable[[RunOutcome], None] | None = None,
    prior_runs: dict[str, dict[float, RunOutcome]] | None = None,
    on_progress: Callable[[str], None] | None = None,
    base_rate_rps: float | None = None,
) -> dict[str, Any]:
    """Run every arm, then (cfg.tune) sweep the stock arms' knobs, then every arm and each
    tuned winner again at the common detail rate (records kept).

    prior_runs: arm -> rate -> finished outcome (a --resume, see resume.py): those runs are
    reused, not run again; the capacity searches replay them in the same order, so the result
    is the one an uninterrupted run gives. on_progress: one line per sweep step.
    base_rate_rps: the trace's request rate at scale 1 (needed by cfg.saturation)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    describe = getattr(backend, "describe", None)  # optional for test doubles
    index: dict[str, Any] = {**(describe() if describe else {}), **meta}
    index.update(backend=backend.kind, label=backend.label)
    index["config"] = asdict(cfg)
    _write_index(out_dir, index)
    prior_runs = prior_runs or {}
    results = [
        run_arm(backend, arm, cfg, out_dir, on_run, _prior(prior_runs.get(arm.name)))
        for arm in arms
    ]
    done = {a.name: r for a, r in zip(arms, results, strict=True)}
    tuning = tune_baselines(backend, cfg, out_dir, done, on_run, prior_runs, on_progress)
    if tuning:
        index["tuning"] = {n: t.to_dict(cfg.capacity_targets) for n, t in tuning.items()}
        _write_index(out_dir, index)
    if cfg.saturation:
        index["saturation"] = saturation_of(
            backend, cfg, out_dir, base_rate_rps, resuming=bool(prior_runs), on_progress=on_progress
        )
        _write_index(out_dir, index)
    detail = pick_detail_rate(results, cfg)
    index["detail_rate"] = detail
    _write_index(out_dir, index)
    # Second pass at the common rate; capacity is off so only that run happens. A tuned
    # winner that is not an arm of its own runs too (the report shows it as <arm>@tuned).
    detail_cfg = AbConfig(arms=cfg.arms, rates=(detail,), capacity=None)
    winners = [t.best for t in tuning.values() if t.best[0].name not in done]
    for arm, res in [*zip(arms, results, strict=True), *winners]:
        if res.status != "ok":
            continue
        prior = res.runs.get(detail)
        if prior is not None and prior.extra.get("records_kept", True):
            continue  # already run at this rate with its records
        extra = run_arm(backend, arm, detail_cfg, out_dir, on_run, prior=res)
        res.runs.update(extra.runs)
    if tuning:  # the winners' detail runs are now in
        index["tuning"] = {n: t.to_dict(cfg.capacity_targets) for n, t in tuning.items()}
    index["arms"] = {
        r.arm: {
            "status": r.status,
            "error": r.error,
            "capacity": r.capacity,
            "capacity_notes": r.capacity_notes,
            "runs": {rate_dir_name(k): v.status for k, v in sorted(r.runs.items())},
        }
        for r in results
    }
    _write_index(out_dir, index)
    return index


def saturation_of(
    backend: Backend,
    cfg: AbConfig,
    out_dir: Path,
    base_rate_rps: float | None,
    *,
    resuming: bool,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The saturation search of an A/B (or an SLO grid's root), as its ab.json entry."""
    from fairbatching_sglang.harness.resume import finished_runs
    from fairbatching_sglang.harness.saturation import (
        LATE_FIGURE,
        SATURATION_DIR,
        run_saturation,
        saturation_arms,
    )

    if base_rate_rps is None or cfg.capacity is None:
        raise ValueError("the saturation search needs the trace's base rate and a search")

    def judgeable(arm: str) -> dict[float, RunOutcome]:
        # A probe from before the criterion's figure existed runs again, not judged without it.
        runs = finished_runs(out_dir / SATURATION_DIR, arm)
        return {r: o for r, o in runs.items() if LATE_FIGURE in o.summary}

    prior = {a: judgeable(a) for a in saturation_arms(backend)} if resuming else None

    def on_run(o: RunOutcome) -> None:
        if on_progress is not None:
            s = o.summary
            on_progress(
                f"saturation ({o.arm}, SLOs ignored) x{o.rate_scale:.4g}: {o.status}, "
                f"late arrivals' {LATE_FIGURE} {s.get(LATE_FIGURE, math.nan):.1f} s, "
                f"sustained {s.get('sustained_throughput_rps', math.nan):.2f} req/s"
            )

    try:
        res = run_saturation(backend, out_dir, cfg.capacity, base_rate_rps, prior, on_run)
    except Exception as exc:  # the A/B's results stand without the limit
        return {"error": f"{exc!r}", "limit": None}
    return res.to_dict()


def _prior(runs: dict[float, RunOutcome] | None) -> ArmResult | None:
    return ArmResult(arm="", runs=dict(runs)) if runs else None


FAILED_RUN = ("error", "start_failed", "crashed")


def failed_arms(index: dict[str, Any]) -> list[str]:
    """Arms of a run_ab index none of whose runs measured anything (no runs at all, or each
    one error / start_failed / crashed): the A/B has no result for them."""
    out = []
    for name, arm in index.get("arms", {}).items():
        statuses = list(arm.get("runs", {}).values())
        if not statuses or all(s in FAILED_RUN for s in statuses):
            out.append(name)
    return out


def _write_index(out_dir: Path, index: dict[str, Any]) -> None:
    (out_dir / "ab.json").write_text(json.dumps(index, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def iter_run_dirs(out_dir: Path) -> Iterator[Path]:
    yield from sorted(p.parent for p in out_dir.glob("*/x*/status.json"))

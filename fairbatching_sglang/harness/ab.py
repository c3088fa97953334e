"""The A/B driver: every arm at every requested rate, a capacity search per arm, then a report.

Layout of an output directory (each file written as soon as its run finishes, so a crash in one
arm never loses another's results):
  ab.json                       configuration, command, versions, backend label, trace
  <arm>/x<rate>/status.json     one run (+ requests.parquet, steps.parquet, summary.*, run.json)
  <arm>/capacity.json           every probe, the capacity at each target and its bound
                                ("found" | "lower" | "unknown": see capacity.CapacityResult)
  report.md, *.csv, plots/      made by fairbatching_sglang.report from the files above
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fairbatching_sglang.harness.arms import Arm
from fairbatching_sglang.harness.capacity import (
    CapacityConfig,
    InvalidMeasurement,
    ProbeCache,
    find_capacity,
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
class AbConfig:
    """rates: fixed rate scales every arm runs (records kept). capacity: None skips the search.
    detail_rate: the common rate of the latency table and CDF plots; None picks the lowest
    capacity at the first target among arms (every arm is then near or below its knee)."""

    arms: tuple[str, ...]
    rates: tuple[float, ...] = ()
    capacity_targets: tuple[float, ...] = (0.90, 0.99)
    capacity: CapacityConfig | None = field(default_factory=CapacityConfig)
    detail_rate: float | None = None
    keep_probe_records: bool = False


@dataclass
class ArmResult:
    arm: str
    runs: dict[float, RunOutcome] = field(default_factory=dict)
    capacity: dict[str, float | None] = field(default_factory=dict)
    # target -> {"bound": "lower" | "unknown", "invalid_rate", "reason"}; absent when found
    capacity_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None


def _safe_run(session: ArmSession, arm: Arm, rate: float, arm_dir: Path, keep: bool) -> RunOutcome:
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
        outcome = _safe_run(session, arm, rate, arm_dir, keep)
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
        return round(min(caps), 3)
    return cfg.rates[0] if cfg.rates else 1.0


def run_ab(
    backend: Backend,
    arms: list[Arm],
    cfg: AbConfig,
    out_dir: Path,
    meta: dict[str, Any],
    on_run: Callable[[RunOutcome], None] | None = None,
    prior_runs: dict[str, dict[float, RunOutcome]] | None = None,
) -> dict[str, Any]:
    """Run every arm, then every arm again at the common detail rate (records kept).

    prior_runs: arm -> rate -> finished outcome (a --resume, see resume.py): those runs are
    reused, not run again; the capacity searches replay them in the same order, so the result
    is the one an uninterrupted run gives."""
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
    detail = pick_detail_rate(results, cfg)
    index["detail_rate"] = detail
    _write_index(out_dir, index)
    # Second pass at the common rate; capacity is off so only that run happens.
    detail_cfg = AbConfig(arms=cfg.arms, rates=(detail,), capacity=None)
    for arm, res in zip(arms, results, strict=True):
        if res.status != "ok":
            continue
        prior = res.runs.get(detail)
        if prior is not None and prior.extra.get("records_kept", True):
            continue  # already run at this rate with its records
        extra = run_arm(backend, arm, detail_cfg, out_dir, on_run, prior=res)
        res.runs.update(extra.runs)
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

"""Honest limits of the emulated device: is this CPU fast enough for the run to mean anything?

The emulated device only charges device time; everything else (scheduler, tokenizer manager,
detokenizer, HTTP, the replay client) runs for real on this machine's cores. When they cannot
keep up, the device log shows it (emulator/device_clock.py):
- idle_before_ms: the device sat idle before a step although the previous one had work (the
  scheduler was late to launch): the run measures this CPU, not the policy. The log also
  counts natural gaps there (the last decode of a quiet spell, then nothing until the next
  arrival), so only idle before a step that had work ready counts as CPU-caused: a step with
  decode rows (those requests were already running) or one after a step that left requests
  waiting (num_waiting > 0);
- late_ms: the scheduler processed a finished step late (tokens reach clients late, and
  without the overlap loop the next launch is late too);
and the client's dispatch_lag_ms shows a client that could not send on time.

Per run the harness reads the device step log of the replay window and marks the run "invalid"
when a threshold below is exceeded (defaults chosen from emulated runs on 2 cores: a healthy run
stays well below them; see harness/README.md "Validity").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEVICE_STEP_LOG = "device_steps.jsonl"


@dataclass(frozen=True)
class StarvationThresholds:
    """A run is invalid when any figure exceeds its bound (None disables that check).

    max_idle_frac: device idle time the CPU caused / device busy time. 0.05 = the CPU added 5%
        to the device's time, about the size of the effects the A/B compares.
    max_late_frac: sum of late result processing / busy time (same reasoning).
    max_late_p99_ms: p99 of late_ms; 10 ms is 1% of the default 1000 ms TTFT SLO and a fifth
        of the 50 ms TPOT SLO (late shifts a token's arrival, it does not accumulate while the
        overlap loop keeps the device fed; when it does not, the idle check fires).
    max_dispatch_lag_p99_ms: the client sent 1% of requests later than this (TTFT counts from
        the scheduled time, so client lag lands in the measured TTFT).
    min_busy_s: below this much device time the ratios are too noisy to judge (only the
        client-lag check applies)."""

    max_idle_frac: float | None = 0.05
    max_late_frac: float | None = 0.10
    max_late_p99_ms: float | None = 10.0
    max_dispatch_lag_p99_ms: float | None = 50.0
    min_busy_s: float = 0.5


@dataclass(frozen=True)
class DeviceStepStats:
    num_steps: int
    busy_s: float  # sum of emulated step times
    span_s: float  # first step's start to last step's end (wall clock)
    late_ms_sum: float
    late_ms_p99: float
    late_ms_max: float
    idle_ms_sum: float  # CPU-caused idle (see the module docstring)
    logged_idle_ms_sum: float = 0.0  # every idle_before_ms, natural gaps included
    num_bad_lines: int = 0

    @property
    def late_frac(self) -> float:
        return self.late_ms_sum / (self.busy_s * 1000.0) if self.busy_s > 0 else math.nan

    @property
    def idle_frac(self) -> float:
        return self.idle_ms_sum / (self.busy_s * 1000.0) if self.busy_s > 0 else math.nan

    @property
    def utilization(self) -> float:
        return self.busy_s / self.span_s if self.span_s > 0 else math.nan

    def figures(self) -> dict[str, float]:
        return {
            **asdict(self),
            "late_frac": self.late_frac,
            "idle_frac": self.idle_frac,
            "utilization": self.utilization,
        }


def read_device_steps(path: Path, since_s: float | None = None) -> DeviceStepStats | None:
    """Stats of the device step log's steps launched at or after since_s (wall clock, e.g. the
    replay's start: warm-up steps are not judged); None when the file does not exist. A torn
    last line (a server killed mid-write) is counted in num_bad_lines, not fatal."""
    if not path.exists():
        return None
    measured, late, starts, ends = [], [], [], []
    idle = logged = 0.0
    bad = 0
    prev_waiting = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                row = json.loads(line)
                launch = float(row.get("launch_s", row.get("start_s", math.nan)))
                waiting = int(row.get("num_waiting", 0))
                m, lt, il = (float(row[k]) for k in ("measured_ms", "late_ms", "idle_before_ms"))
                s, e, decodes = float(row["start_s"]), float(row["time_s"]), row["num_decode_reqs"]
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            ready = int(decodes) > 0 or prev_waiting > 0
            prev_waiting = waiting
            if since_s is not None and launch < since_s:
                continue
            measured.append(m)
            late.append(lt)
            starts.append(s)
            ends.append(e)
            logged += il
            idle += il if ready else 0.0
    if not measured:
        return DeviceStepStats(0, 0.0, 0.0, 0.0, math.nan, math.nan, 0.0, 0.0, bad)
    lt_arr = np.asarray(late)
    return DeviceStepStats(
        num_steps=len(measured),
        busy_s=float(np.sum(measured)) / 1000.0,
        span_s=max(ends) - min(starts),
        late_ms_sum=float(lt_arr.sum()),
        late_ms_p99=float(np.percentile(lt_arr, 99)),
        late_ms_max=float(lt_arr.max()),
        idle_ms_sum=idle,
        logged_idle_ms_sum=logged,
        num_bad_lines=bad,
    )


@dataclass(frozen=True)
class Validity:
    """figures: what the report shows per run; reasons: empty when the run is valid."""

    figures: dict[str, Any]
    reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) if self.reasons else None

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "reasons": list(self.reasons), **self.figures}


def _exceeds(value: float, bound: float | None) -> bool:
    return bound is not None and not math.isnan(value) and value > bound


def assess(
    steps: DeviceStepStats | list[DeviceStepStats] | None,
    dispatch_lag_p99_ms: float,
    th: StarvationThresholds,
    where: str = "",
) -> Validity:
    """Judge one run (a cluster passes one DeviceStepStats per replica; `where` names them)."""
    per = steps if isinstance(steps, list) else [steps]
    figures: dict[str, Any] = {"dispatch_lag_ms_p99": dispatch_lag_p99_ms}
    reasons: list[str] = []
    if _exceeds(dispatch_lag_p99_ms, th.max_dispatch_lag_p99_ms):
        reasons.append(
            f"client dispatch lag p99 {dispatch_lag_p99_ms:.1f} ms > "
            f"{th.max_dispatch_lag_p99_ms:g} ms"
        )
    for k, st in enumerate(per):
        name = f"{where}{k}: " if len(per) > 1 else ""
        prefix = f"{where}{k}_" if len(per) > 1 else ""
        if st is None:
            reasons.append(f"{name}no device step log: CPU starvation cannot be checked")
            continue
        figures.update({prefix + key: v for key, v in st.figures().items()})
        if st.busy_s < th.min_busy_s:
            continue
        if _exceeds(st.idle_frac, th.max_idle_frac):
            reasons.append(
                f"{name}device idle {st.idle_frac:.1%} of busy time waiting for the CPU "
                f"> {th.max_idle_frac:.0%}"
            )
        if _exceeds(st.late_frac, th.max_late_frac):
            reasons.append(
                f"{name}results processed late {st.late_frac:.1%} of busy time "
                f"> {th.max_late_frac:.0%}"
            )
        if _exceeds(st.late_ms_p99, th.max_late_p99_ms):
            reasons.append(f"{name}late_ms p99 {st.late_ms_p99:.1f} ms > {th.max_late_p99_ms:g} ms")
    if reasons:
        reasons[0] = "CPU-starved emulation: " + reasons[0]
    return Validity(figures, tuple(reasons))

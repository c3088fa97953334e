"""The serial emulated device: when a launched batch is finished, and the step log.

A batch launched at wall time `now` starts when the device is free, max(now, free), and is done
`device.step_ms(shape)` later; the scheduler may process its result only then (the
process_batch_result hook sleeps until that instant). On a GPU the same wait happens in
`copy_done.synchronize()` (batch_result_processor.py); under `event_loop_overlap` the next batch
is launched before the previous is processed, so the device queues it exactly as a CUDA stream
would.

Every step is logged (profiles/step_log.py format; `measured_ms` is the emulated time), with the
wall-clock facts that show whether this CPU kept up: `late_ms` (the scheduler got to the result
after the device had finished it) and `idle_before_ms` (the device sat idle before this batch
although the previous one had work). The harness reads them to mark CPU-starved runs invalid.
`num_sat_out` counts the decode rows the server held that the step did not run (plugin.py): the
rows FairBatching parked, or every decode stalled behind a stock prefill-only step.
With a step log, `requests_received.jsonl` beside it records when the scheduler took in each
request (rid, wall time): the replay's send time to that instant is the server's ingress delay.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fairbatching_sglang.core.cost_model import StepShape
from fairbatching_sglang.emulator.settings import EmulatorSettings
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.profiles.device_model import DeviceModel

logger = logging.getLogger(__name__)
RECEIVED_LOG = "requests_received.jsonl"


@dataclass(frozen=True)
class EmulatedStep:
    shape: StepShape
    launch_s: float
    start_s: float
    ready_s: float
    cost_ms: float
    idle_before_ms: float
    num_sat_out: int = 0


class DeviceClock:
    def __init__(self, settings: EmulatorSettings, clock: Any = time.perf_counter) -> None:
        self.settings = settings
        profile = load_profile(settings.profile)
        self.device: DeviceModel = settings.device.build(profile, settings.overhead_ms)
        self.clock = clock
        self.free_s = 0.0
        self._last_had_work = False
        self._log: IO[str] | None = None
        self._received: IO[str] | None = None
        if settings.step_log:
            # Beside the step log: when the scheduler took in each request (after HTTP, the
            # tokenizer manager and ZMQ), so a replay can tell ingress delay from scheduling.
            received = Path(settings.step_log).with_name(RECEIVED_LOG)
            self._received = open(received, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._log = open(settings.step_log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._log.write(
                "# emulated device: "
                + json.dumps(
                    {
                        "device_model": settings.device.to_dict(),
                        "description": self.device.description,
                        "profile": settings.profile,
                    }
                )
                + "\n"
            )

    def note_received(self, rid: str) -> None:
        """The scheduler took request `rid` in now (wall clock, comparable with the client's)."""
        if self._received is not None:
            row = {"rid": rid, "received_s": round(time.time(), 6)}
            self._received.write(json.dumps(row, separators=(",", ":")) + "\n")

    def launch(self, shape: StepShape, num_sat_out: int = 0) -> EmulatedStep:
        """Queue a batch on the device; its `ready_s` is when it is done (perf_counter s)."""
        # Called only from the scheduler's own thread (both event loops), so no lock.
        now = self.clock()
        empty = shape.num_prefill_tokens + shape.num_decode_reqs == 0
        cost_ms = 0.0 if empty else self.device.step_ms(shape)
        start = max(now, self.free_s)
        idle_ms = (start - self.free_s) * 1000.0 if self._last_had_work else 0.0
        ready = start + cost_ms / 1000.0
        self.free_s = ready
        self._last_had_work = not empty
        return EmulatedStep(shape, now, start, ready, cost_ms, idle_ms, num_sat_out)

    def wait(self, result: Any, batch: Any, num_waiting: int) -> None:
        """Block until the result's batch is done on the device, then log the step."""
        step: EmulatedStep | None = getattr(result, "emulated_step", None)
        if step is None:
            return
        delay = step.ready_s - self.clock()
        if delay > 0:
            time.sleep(delay)
        processed = self.clock()
        shape = step.shape
        if self._log is not None and shape.num_prefill_tokens + shape.num_decode_reqs > 0:
            launch, start, ready_s = step.launch_s, step.start_s, step.ready_s
            cost_ms, idle_ms = step.cost_ms, step.idle_before_ms
            # Wall clock of the perf_counter origin, taken now and not once at start: this
            # machine's wall clock steps (5-6 s seen during one CI run), and the log's times
            # must compare with the clients' time.time() stamps of the same moments.
            e = time.time() - self.clock()
            row = {
                "num_prefill_tokens": shape.num_prefill_tokens,
                "num_decode_reqs": shape.num_decode_reqs,
                "decode_kv_tokens": shape.decode_kv_tokens,
                "prefill_attn_work": shape.prefill_attn_work,
                "measured_ms": round(cost_ms, 6),
                "time_s": round(ready_s + e, 6),
                "launch_s": round(launch + e, 6),
                "start_s": round(start + e, 6),
                "processed_s": round(processed + e, 6),
                "late_ms": round(max(0.0, processed - ready_s) * 1000.0, 4),
                "idle_before_ms": round(idle_ms, 4),
                "num_waiting": num_waiting,
                "num_sat_out": step.num_sat_out,
                "forward_mode": batch.forward_mode.name,
            }
            self._log.write(json.dumps(row, separators=(",", ":")) + "\n")


_CLOCK: DeviceClock | None = None


def device_clock() -> DeviceClock:
    """This process's device (built on first use from the environment)."""
    global _CLOCK
    if _CLOCK is None:
        _CLOCK = DeviceClock(EmulatorSettings.from_env())
        logger.info("emulated device ready: %s", _CLOCK.device.description)
    return _CLOCK

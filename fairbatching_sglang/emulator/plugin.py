"""The hooks on SGLang's Scheduler (registered with SGLang's own HookRegistry):

- REPLACE `Scheduler.init_tp_model_worker` (scheduler.py ~1018): build the emulated worker;
- AROUND `Scheduler.process_batch_result` (scheduler.py ~5101): wait until the emulated device
  has finished the batch, then process it as SGLang does;
- AROUND `Scheduler.run_batch` (scheduler.py ~4641): note on the batch how many decode rows the
  server holds outside it (for the device step log's `num_sat_out`): when a step is not the
  running batch itself, `running_batch` then holds exactly the rows left out (FairBatching's
  parked rows; all decodes behind a stock prefill-only step; none after a stock mixed step).
- BEFORE `Scheduler.handle_generate_request` (scheduler.py ~2953): note when the scheduler took
  the request in (device_clock.py's requests_received.jsonl, with a step log only).

Settings are validated here, in every process; a bad FAIRBATCHING_EMULATED_* value raises, and
`register` (__init__.py) turns that into SystemExit (SGLang's plugin loader swallows exceptions),
so the launcher stops with a clear message before any scheduler starts.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_SCHEDULER = "sglang.srt.managers.scheduler.Scheduler"
SAT_OUT_ATTR = "emulated_num_sat_out"  # read by the worker when it launches the batch


def _init_tp_model_worker(self: Any) -> None:
    from sglang.srt.runtime_context import get_device

    from fairbatching_sglang.emulator.worker import EmulatedTpModelWorker

    self.tp_worker = EmulatedTpModelWorker(
        server_args=self.server_args, gpu_id=get_device().gpu_id, nccl_port=self.nccl_port
    )


def _process_batch_result(original: Any, self: Any, batch: Any, result: Any) -> Any:
    from fairbatching_sglang.emulator.device_clock import device_clock

    device_clock().wait(result, batch, len(self.waiting_queue))
    return original(self, batch, result)


def _handle_generate_request(self: Any, recv_req: Any, *args: Any, **kwargs: Any) -> None:
    from fairbatching_sglang.emulator.device_clock import device_clock

    # SGLang's own time_stats (API-server stamps) are not sent to the scheduler unless metrics
    # or tracing are on (seen empty here), so only the receipt itself is logged.
    device_clock().note_received(str(recv_req.rid))


def _run_batch(original: Any, self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
    running = self.running_batch
    if running is not None and running is not batch:
        setattr(batch, SAT_OUT_ATTR, len(running.reqs))
    return original(self, batch, *args, **kwargs)


def install_hooks() -> None:
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    from fairbatching_sglang.emulator.settings import EmulatorSettings

    settings = EmulatorSettings.from_env()  # raises with the variable's name on bad input
    HookRegistry.register(
        f"{_SCHEDULER}.init_tp_model_worker", _init_tp_model_worker, HookType.REPLACE
    )
    HookRegistry.register(
        f"{_SCHEDULER}.process_batch_result", _process_batch_result, HookType.AROUND
    )
    HookRegistry.register(f"{_SCHEDULER}.run_batch", _run_batch, HookType.AROUND)
    HookRegistry.register(
        f"{_SCHEDULER}.handle_generate_request", _handle_generate_request, HookType.BEFORE
    )
    if settings.policy_fault_every is not None:
        from fairbatching_sglang.emulator.fault import install_policy_fault

        install_policy_fault(settings.policy_fault_every)
    logger.info("fairbatching emulator: hooks registered (%s)", settings.describe())

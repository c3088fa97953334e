"""The two hooks on SGLang's Scheduler (registered with SGLang's own HookRegistry):

- REPLACE `Scheduler.init_tp_model_worker` (scheduler.py ~1018): build the emulated worker;
- AROUND `Scheduler.process_batch_result` (scheduler.py ~5101): wait until the emulated device
  has finished the batch, then process it as SGLang does.

Settings are validated here, in every process, so a bad FAIRBATCHING_EMULATED_* value stops the
launcher with a clear message before any scheduler starts.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_SCHEDULER = "sglang.srt.managers.scheduler.Scheduler"


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
    logger.info("fairbatching emulator: hooks registered (%s)", settings.describe())

"""A witness of machine pauses, for tests that time a real client against a real server.

CI machines are shared VMs: now and then every process on them stops for a few hundred ms
(a CI run's replay client sent its last request 463 ms late, 200 requests in 1 s, while the
same test passes here every time). A timing test cannot tell that from a slow client, but a
separate process that only sleeps can: it wakes every 2 ms, and a gap far longer than that
means nothing on the machine ran. A test retries an attempt whose timing failed only when the
witness saw such a pause during it; a slow client without a pause still fails at once.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

PAUSE_MS = 100.0  # 50x the witness's wake-up period: not a scheduling hiccup
_LOOP = (
    "import time\n"
    "last = time.perf_counter()\n"
    "while True:\n"
    "    time.sleep(0.002)\n"
    "    now = time.perf_counter()\n"
    f"    if (now - last) * 1000.0 > {PAUSE_MS}:\n"
    "        print(f'{(now - last) * 1000.0:.1f}', flush=True)\n"
    "    last = now\n"
)
T = TypeVar("T")


class PauseWitness:
    """Context manager: `pauses_ms` lists each gap above PAUSE_MS seen while it was open."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []

    def __enter__(self) -> PauseWitness:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LOOP], stdout=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.05)  # the interpreter is up and looping before the timed work starts
        return self

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.pauses_ms.append(float(line))

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.01)  # a pause that just ended is reported before we stop listening
        self._proc.kill()
        self._proc.wait()
        self._reader.join(timeout=5)


def retry_on_machine_pause(attempt: Callable[[], T], max_attempts: int = 3) -> T:
    """Run `attempt` (which asserts); retry only when it failed and the machine paused."""
    for n in range(1, max_attempts + 1):
        with PauseWitness() as witness:
            try:
                return attempt()
            except AssertionError as err:
                failure = err
        if not witness.pauses_ms:
            raise failure  # no pause: the timing failure is the code's
        if n == max_attempts:
            raise AssertionError(
                f"{failure} (the machine paused in every one of {max_attempts} attempts, "
                f"last pauses {witness.pauses_ms} ms)"
            ) from failure
    raise AssertionError("unreachable")

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
from collections.abc import Callable
from typing import TypeVar

PAUSE_MS = 100.0  # 50x the witness's wake-up period: not a scheduling hiccup
READY_TIMEOUT_S = 30.0  # interpreter start-up on a loaded CI machine
# The witness waits on its stdin rather than sleeping, so closing that pipe makes it check the
# gap since its last wake-up, report it and exit: a pause that just ended is always reported
# before the reader stops listening (no race with the witness's own wake-up).
_LOOP = (
    "import select, sys, time\n"
    "last = time.perf_counter()\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    done = select.select([sys.stdin], [], [], 0.002)[0]\n"
    "    now = time.perf_counter()\n"
    f"    if (now - last) * 1000.0 > {PAUSE_MS}:\n"
    "        print(f'{(now - last) * 1000.0:.1f}', flush=True)\n"
    "    last = now\n"
    "    if done:\n"
    "        break\n"
)
T = TypeVar("T")


class PauseWitness:
    """Context manager: `pauses_ms` lists each gap above PAUSE_MS seen while it was open."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._ready = threading.Event()

    def __enter__(self) -> PauseWitness:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # The timed work starts only once the witness is looping: a pause during its start-up
        # would otherwise go unseen.
        if not self._ready.wait(READY_TIMEOUT_S):
            self._proc.kill()
            raise RuntimeError(f"pause witness did not start within {READY_TIMEOUT_S:.0f} s")
        return self

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip() == "ready":
                self._ready.set()
            else:
                self.pauses_ms.append(float(line))

    def __exit__(self, *exc: object) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()  # the witness reports any gap in progress, then exits
        try:
            self._proc.wait(timeout=READY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
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

"""A process pool that Ctrl-C stops within a second (issue #14.5).

`with ProcessPoolExecutor()` shuts down with wait=True: after Ctrl-C the main process waited for
every queued job (124 s in the report) while the workers, which get the terminal's SIGINT too,
died noisily or swallowed it. Here workers ignore SIGINT; the main process, on any exception
(KeyboardInterrupt included), cancels what has not started and terminates the workers, then
re-raises. Results that finished were handed to on_done as they came (and jobs persist their
own partial progress, see probe_store.py).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate(pool: ProcessPoolExecutor) -> None:
    # _processes is private but the only handle on the workers; shutdown() drops it.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)


def run_all(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    num_workers: int,
    on_done: Callable[[int, Any], None],
) -> None:
    """fn(*calls[i]) for every i, in num_workers processes (1: in this process, in order);
    on_done(i, result) in this process as each finishes."""
    if num_workers <= 1:
        for i, args in enumerate(calls):
            on_done(i, fn(*args))
        return
    pool = ProcessPoolExecutor(num_workers, initializer=_ignore_sigint)
    try:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        for fut in as_completed(futures):
            on_done(futures[fut], fut.result())
    except BaseException:
        _terminate(pool)
        raise
    pool.shutdown(wait=True)

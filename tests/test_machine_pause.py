"""The pause witness sees a stopped machine, and a timing failure without a pause is not retried."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.machine_pause import PauseWitness, retry_on_machine_pause


def _pause_witness(witness: PauseWitness, ms: float) -> None:
    # SIGSTOP is what a paused VM looks like to the witness: it wakes late, all at once.
    os.kill(witness._proc.pid, signal.SIGSTOP)
    time.sleep(ms / 1000.0)
    os.kill(witness._proc.pid, signal.SIGCONT)


def test_witness_reports_a_pause_and_nothing_else() -> None:
    with PauseWitness() as quiet:
        time.sleep(0.3)
    assert quiet.pauses_ms == []
    with PauseWitness() as paused:
        _pause_witness(paused, 400)  # read at once: closing the witness flushes its report
    assert len(paused.pauses_ms) == 1 and 350 < paused.pauses_ms[0] < 2000


def test_failure_without_a_pause_is_raised_at_once() -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise AssertionError("late")

    with pytest.raises(AssertionError, match=r"^late$"):
        retry_on_machine_pause(attempt)
    assert len(calls) == 1


def test_failure_during_a_pause_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    witnesses: list[PauseWitness] = []
    orig_enter = PauseWitness.__enter__

    def enter(self: PauseWitness) -> PauseWitness:
        witnesses.append(self)
        return orig_enter(self)

    def attempt() -> str:
        calls.append(1)
        if len(calls) < 3:
            _pause_witness(witnesses[-1], 200)
            raise AssertionError("late")
        return "ok"

    monkeypatch.setattr(PauseWitness, "__enter__", enter)
    assert retry_on_machine_pause(attempt) == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(AssertionError, match="paused in every one of 2 attempts"):
        retry_on_machine_pause(attempt, max_attempts=2)

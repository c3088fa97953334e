"""Finished runs of an A/B directory that a `--resume` reuses instead of running again.

Reused: runs that measured something (ok, invalid, crashed: each is a result of the system
under test and the capacity search already decided on it). Redone: harness errors, server
start failures (the next start may work) and interrupted runs (no status.json yet).
On a GPU every redone probe is a server start, so reuse is by (arm, rate) from status.json.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from fairbatching_sglang.harness.outcome import RunOutcome

REUSABLE = ("ok", "invalid", "crashed")


def finished_runs(out_dir: Path, arm: str) -> dict[float, RunOutcome]:
    """rate -> outcome of the arm's reusable runs under out_dir/arm (unreadable ones skipped)."""
    runs: dict[float, RunOutcome] = {}
    for path in sorted((out_dir / arm).glob("x*/status.json")):
        try:
            outcome = RunOutcome.read(path.parent)
        except (OSError, ValueError, TypeError):
            continue  # torn or foreign file: run it again
        if outcome.arm == arm and outcome.status in REUSABLE:
            runs[float(outcome.rate_scale)] = outcome
    return runs


def finished_by_arm(out_dir: Path, arms: list[str]) -> dict[str, dict[float, RunOutcome]]:
    return {arm: finished_runs(out_dir, arm) for arm in arms}


def count_finished(out_dir: Path) -> int:
    n = 0
    for path in out_dir.glob("*/x*/status.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            n += json.loads(path.read_text()).get("status") in REUSABLE
    return n

"""Shared fixtures; every test here needs the pinned sglang (installed by
scripts/install_sglang_cpu.sh) and is skipped cleanly without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # cpu_harness


class FakeClock:
    """perf_counter stand-in in seconds; tests advance it per step."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance_ms(self, ms: float) -> None:
        self.now_s += ms / 1000.0


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


# cpu_harness.TREE_CACHES: the legacy RadixCache, and SGLang 0.5.23's default (what
# mem_cache/registry.create_tree_cache builds for a plain model: UnifiedRadixCache).
@pytest.fixture(params=("radix", "unified"))
def tree_cache(request: pytest.FixtureRequest) -> str:
    """Run a harness test on each tree cache."""
    return request.param

"""Test-only fault injection (FAIRBATCHING_EMULATED_POLICY_FAULT=N): every Nth
`FairBatchingPolicy.decide` call raises, so the real server exercises the adapter's fallback
path (hook.py `_fallback`: the step runs as stock mixed-chunk SGLang, `num_fallbacks` and
`sglang:fairbatching_fallbacks` count it). Installed by plugin.py only when the variable is set;
a normal emulated run and a real server never reach this module.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any


class InjectedPolicyFault(RuntimeError):
    """What an injected decision raises (named so the server log shows it was on purpose)."""


def install_policy_fault(every: int) -> None:
    """Wrap FairBatchingPolicy.decide in this process: call k raises when k % every == 0."""
    from fairbatching_sglang.core.policy import FairBatchingPolicy

    if every < 1:
        raise ValueError(f"policy fault period must be >= 1, got {every}")
    original = FairBatchingPolicy.decide
    if getattr(original, "_fairbatching_fault", False):
        return  # already wrapped (the plugin may be loaded twice in one process)
    calls = itertools.count(1)

    @functools.wraps(original)
    def decide(self: Any, snap: Any) -> Any:
        k = next(calls)
        if k % every == 0:
            raise InjectedPolicyFault(f"injected policy fault (decision {k}, every {every})")
        return original(self, snap)

    decide._fairbatching_fault = True  # type: ignore[attr-defined]
    FairBatchingPolicy.decide = decide  # type: ignore[method-assign]

"""The reasoning and agent presets (issue #15): long heavy-tailed outputs; sessions whose
re-sent context shares prefix blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.workload import load_trace
from fairbatching_sglang.workload.presets import generate_preset
from fairbatching_sglang.workload.sessions import BLOCK_TOKENS


def test_reasoning_outputs_are_long_and_heavy_tailed() -> None:
    t = generate_preset("reasoning", 3600, seed=0)
    out = t.output_tokens
    p50, p99 = np.percentile(out, [50, 99])
    assert 400 <= p50 <= 650
    assert p99 > 8 * p50 and 10_000 <= out.max() <= 30_000
    assert 0.8 <= t.mean_rate_rps <= 1.2


def _prefix_hit_fraction(hash_ids: list[list[int]], inputs: np.ndarray) -> float:
    """Share of input tokens in leading blocks some earlier request already sent."""
    seen: set[int] = set()
    hit = total = 0
    for ids, n in zip(hash_ids, inputs, strict=True):
        k = 0
        while k < len(ids) and ids[k] in seen:
            k += 1
        hit += min(k * BLOCK_TOKENS, int(n))
        total += int(n)
        seen.update(ids)
    return hit / total


def test_agent_sessions_share_prefixes() -> None:
    t = generate_preset("agent", 600, seed=0)
    h = t.hash_ids
    assert h is not None
    inputs = t.input_tokens
    assert all(len(ids) == -(-int(n) // BLOCK_TOKENS) for ids, n in zip(h, inputs, strict=True))
    assert _prefix_hit_fraction(h, inputs) > 0.5
    assert inputs.max() + t.output_tokens.max() <= 32768 + 4096
    assert np.all(np.diff(t.arrival_s) >= 0)


@pytest.mark.parametrize("name", ["reasoning", "agent"])
def test_presets_are_deterministic_and_round_trip(tmp_path: Path, name: str) -> None:
    a, b = generate_preset(name, 120, seed=3), generate_preset(name, 120, seed=3)
    assert a.df.equals(b.df)
    assert not a.df.equals(generate_preset(name, 120, seed=4).df)
    out = tmp_path / f"{name}.csv"
    res = CliRunner().invoke(
        app,
        [
            "trace",
            "generate",
            "--preset",
            name,
            "--duration-s",
            "120",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    back = load_trace(out)
    assert np.array_equal(back.input_tokens, a.input_tokens)
    if name == "agent":
        assert back.hash_ids == a.hash_ids  # the CSV carries the prefix blocks


def test_agent_rate_override_keeps_the_sessions() -> None:
    t = generate_preset("agent", 1200, seed=0, rate_rps=3.0)
    assert 2.2 <= t.mean_rate_rps <= 3.8

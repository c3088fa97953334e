"""Bucketed arrivals (Mooncake conversation / tool-agent: 3-s steps) are detected and warned
about, and `--spread-buckets-s` on simulate / ab / cluster spreads them (issue #15)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.workload import load_trace
from fairbatching_sglang.workload.buckets import detect_bucket_s
from fairbatching_sglang.workload.validate import TraceWarning


def _mooncake(path: Path, bucket_ms: int | None, n: int = 120, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 60_000, n))
    if bucket_ms is not None:
        t = np.floor(t / bucket_ms) * bucket_ms
    rows = [
        {"timestamp": int(x), "input_length": 100 + i, "output_length": 5, "hash_ids": [i]}
        for i, x in enumerate(t)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_detects_the_bucket_width() -> None:
    t = np.repeat(np.arange(0, 60, 3.0), 5)
    assert detect_bucket_s(t) == 3.0
    assert detect_bucket_s(np.sort(np.random.default_rng(1).uniform(0, 60, 200))) is None
    assert detect_bucket_s(np.repeat(np.arange(0, 2, 0.001), 3)) is None  # ms ties: not buckets
    assert detect_bucket_s(np.arange(0, 10, 3.0)) is None  # too few rows to tell


def test_loader_warns_on_bucketed_arrivals_and_names_the_flag(tmp_path: Path) -> None:
    path = _mooncake(tmp_path / "conv.jsonl", 3000)
    with pytest.warns(TraceWarning, match=r"bucketed into 3-s steps.*--spread-buckets-s 3"):
        load_trace(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceWarning)
        load_trace(_mooncake(tmp_path / "fine.jsonl", None))  # ms timestamps: no warning
        spread = load_trace(path, spread_buckets_s=3.0)  # asked to spread: no warning
    t = spread.arrival_s
    assert np.unique(t).shape[0] == t.shape[0]  # no instant carries a whole bucket any more
    assert np.all(np.diff(t) >= 0)
    assert any("spread_buckets bucket_s=3" in x for x in spread.transformations)


def test_simulate_takes_spread_buckets(tmp_path: Path) -> None:
    path = _mooncake(tmp_path / "conv.jsonl", 3000)
    out = tmp_path / "run"
    args = ["simulate", "--trace", str(path), "--policy", "sglang-mixed", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--spread-buckets-s", "3"])
    assert res.exit_code == 0, res.output
    trace = json.loads((out / "run.json").read_text())["config_fields"]["trace"]
    assert any("spread_buckets" in x for x in trace["transformations"])
    res = CliRunner().invoke(app, [*args, "--spread-buckets-s", "0", "--force"])
    assert res.exit_code != 0 and "--spread-buckets-s" in res.output

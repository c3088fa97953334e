"""`fairbatching profile ...` through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.core.cost_model import HingeCostModel
from fairbatching_sglang.profiles import load_profile
from fairbatching_sglang.profiles.step_log import StepRecord, write_step_log

runner = CliRunner()


def test_list_and_show():
    res = runner.invoke(app, ["profile", "list"])
    assert res.exit_code == 0, res.output
    assert "h100-llama3.1-70b-tp4" in res.output
    res = runner.invoke(app, ["profile", "show", "h100-llama3.1-8b"])
    assert res.exit_code == 0, res.output
    for text in ("c1_ms_per_token", "KV capacity", "prefill_1x2048", "held-out"):
        assert text in res.output


def test_show_unknown_profile():
    res = runner.invoke(app, ["profile", "show", "no-such-profile"])
    assert res.exit_code == 2
    assert "unknown profile" in res.output


def test_compare_with_plot(tmp_path):
    out = tmp_path / "cmp.png"
    res = runner.invoke(
        app, ["profile", "compare", "h100-llama3.1-8b", "h200-llama3.1-8b", "--plot", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "decode 64 @ kv 1024" in res.output
    assert out.stat().st_size > 1000


def _write_log(path, model: HingeCostModel, n: int, seed: int, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    recs = []
    for _ in range(n):
        p = int(rng.integers(0, 4096)) if rng.random() < 0.6 else 0
        b = int(rng.integers(1, 256))
        s = b * int(rng.integers(64, 8192))
        k = int(rng.integers(0, 4096))
        q = p * (k + p / 2)
        ms = model.predict_raw_ms(p + b, s, q, num_decode_reqs=b)
        ms *= 1 + noise * rng.standard_normal()
        recs.append(StepRecord(p, b, s, q, ms, time_s=len(recs) * 0.02))
    write_step_log(path, recs)


def test_fit_from_steps(tmp_path):
    base = load_profile("h100-llama3.1-8b")
    truth = base.cost_model.with_overhead(0.8)
    log = tmp_path / "steps.jsonl"
    _write_log(log, truth, 1500, 0)
    out = tmp_path / "refit.json"
    res = runner.invoke(
        app,
        ["profile", "fit", "--from-steps", str(log), "--base", base.name, "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    prof = load_profile(out)
    assert prof.kv_capacity_tokens == base.kv_capacity_tokens and prof.gpu == "h100_sxm"
    assert prof.extra["fit"]["mean_rel_err"] < 0.02
    # The refit absorbs the extra 0.8 ms into the intercept.
    got = prof.cost_model.predict_raw_ms(64, 64 * 1024, 0, num_decode_reqs=64)
    assert abs(got - truth.predict_raw_ms(64, 64 * 1024, 0, num_decode_reqs=64)) < 0.3
    res = runner.invoke(app, ["profile", "show", str(out)])
    assert res.exit_code == 0 and "refit" in res.output


def test_fit_overhead_only(tmp_path):
    base = load_profile("h100-llama3.1-8b")
    log = tmp_path / "steps.jsonl"
    _write_log(log, base.cost_model.with_overhead(0.6), 50, 1, noise=0.0)
    out = tmp_path / "o.json"
    res = runner.invoke(
        app,
        [
            "profile", "fit", "--from-steps", str(log), "--base", base.name,
            "--overhead-only", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["coefficients"]["overhead_ms"] == 0.6


def test_fit_bad_log_and_missing_base(tmp_path):
    log = tmp_path / "bad.jsonl"
    log.write_text('{"num_prefill_tokens": 1}\n')
    res = runner.invoke(
        app, ["profile", "fit", "--from-steps", str(log), "--base", "h100-llama3.1-8b",
              "--out", str(tmp_path / "x.json")],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "bad.jsonl: line 1: missing field 'num_decode_reqs'" in res.output
    good = tmp_path / "good.jsonl"
    _write_log(good, load_profile("h100-llama3.1-8b").cost_model, 30, 2)
    res = runner.invoke(
        app, ["profile", "fit", "--from-steps", str(good), "--out", str(tmp_path / "y.json")]
    )
    assert res.exit_code == 2 and "--base" in res.output

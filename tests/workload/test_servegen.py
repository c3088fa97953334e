"""ServeGen import (issue #15.3) on a tiny data directory in ServeGen's own format.

Fixture `fixtures/servegen/`: clients 0 (Gamma, CV 2), 1 (Weibull shape 0.7) and 2 (Gamma shape
1 = Poisson), windows at 0/600/1200/1800 s; client 0 changes length distribution at 1200 s,
client 1's 1200-s distributions are empty (ServeGen then keeps the 0-s ones), client 2 has
0-token inputs (clamped to 1) and an extra `reason_ratio` field (ignored).
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.workload import TraceError, load_trace
from fairbatching_sglang.workload.servegen import generate_servegen, load_servegen

FIXTURE = Path(__file__).parent / "fixtures" / "servegen"
WINDOW_S = 600


def _rows(cid: int) -> list[list[str]]:
    with (FIXTURE / f"chunk-{cid}-trace.csv").open() as f:
        return list(csv.reader(f))


def _family_cv(pattern: str, shape: float) -> float:
    if pattern == "Gamma":
        return 1 / math.sqrt(shape)
    g1, g2 = math.gamma(1 + 1 / shape), math.gamma(1 + 2 / shape)
    return math.sqrt(g2 / g1**2 - 1)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    d = tmp_path / "sg"
    shutil.copytree(FIXTURE, d)
    return d


def test_deterministic_per_seed_and_schema() -> None:
    a = generate_servegen(FIXTURE, 0, 2400, 1.0, seed=7)
    b = generate_servegen(FIXTURE, 0, 2400, 1.0, seed=7)
    c = generate_servegen(FIXTURE, 0, 2400, 1.0, seed=8)
    assert a.df.equals(b.df) and not a.df.equals(c.df)
    t, inp, out = a.arrays()
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 2400
    assert inp.min() >= 1 and out.min() >= 1
    assert a.format == "servegen" and "seed=7" in a.transformations[0]
    assert "clamped" in a.transformations[-1]  # client 2's 0-token inputs


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_rate_per_window_is_fixture_rate_times_scale(scale: float) -> None:
    t = generate_servegen(FIXTURE, 0, 2400, scale, seed=1).arrival_s
    counts = np.histogram(t, bins=np.arange(0, 2401, WINDOW_S))[0]
    for i, n in enumerate(counts):
        want = scale * sum(float(_rows(c)[i][1]) for c in range(3))
        assert n / WINDOW_S == pytest.approx(want, rel=0.01, abs=3 / WINDOW_S), i


@pytest.mark.parametrize("cid", [0, 1, 2])
def test_inter_arrival_cv_matches_fixture(cid: int) -> None:
    t = generate_servegen(FIXTURE, 0, 2400, 5.0, seed=2, clients=[cid]).arrival_s
    for i, (ts, rate, cv, pat, shape, _) in enumerate(_rows(cid)):
        if not pat:
            assert not np.any((t >= int(ts)) & (t < int(ts) + WINDOW_S))  # idle window
            continue
        assert float(cv) == pytest.approx(_family_cv(pat, float(shape)), rel=1e-6)  # fixture
        gaps = np.diff(t[(t >= int(ts)) & (t < int(ts) + WINDOW_S)])
        assert gaps.size > 0.99 * 5 * float(rate) * WINDOW_S - 2, i
        assert gaps.std() / gaps.mean() == pytest.approx(float(cv), rel=0.15), i


def test_lengths_match_fixture_and_are_comonotonic_like_servegen() -> None:
    tbl = generate_servegen(FIXTURE, 0, 600, 5.0, seed=3, clients=[0])
    inp, out = tbl.input_tokens, tbl.output_tokens
    assert inp.size > 5000
    for value, p in {100: 0.5, 200: 0.3, 400: 0.2}.items():
        assert np.mean(inp == value) == pytest.approx(p, abs=0.03)
    for value, p in {10: 0.6, 50: 0.4}.items():
        assert np.mean(out == value) == pytest.approx(p, abs=0.03)
    # One uniform per request drives both fields (ServeGen's _sample_data_batch).
    assert set(out[inp == 100]) == {10} and set(out[inp == 400]) == {50}
    ind = generate_servegen(FIXTURE, 0, 600, 5.0, seed=3, clients=[0], independent_lengths=True)
    assert np.mean(ind.output_tokens[ind.input_tokens == 100] == 50) == pytest.approx(0.4, abs=0.05)
    assert np.mean(ind.input_tokens == 200) == pytest.approx(0.3, abs=0.03)


def test_start_duration_select_windows_and_length_distributions() -> None:
    t0 = generate_servegen(FIXTURE, 600, 1800, 1.0, seed=4, clients=[0])
    t, inp = t0.arrival_s, t0.input_tokens
    assert set(inp[t < 600]) <= {100, 200, 400}  # window 600 uses the 0-s distribution
    assert set(inp[(t >= 600) & (t < 1200)]) == {1000, 2000}  # window 1200 has its own
    assert not np.any(t >= 1200) and np.sum(t < 600) == pytest.approx(600, abs=2)  # 1800 idle
    t1 = generate_servegen(FIXTURE, 1200, 1200, 1.0, seed=4, clients=[1])
    assert set(t1.input_tokens) == {50, 60, 70}  # empty pdfs at 1200: back to 0 (as ServeGen)
    cut = generate_servegen(FIXTURE, 900, 600, 1.0, seed=4).arrival_s  # halves of two windows
    assert cut.max() < 600
    assert np.sum(cut < 300) == pytest.approx(1.5 * 300, abs=4)
    assert np.sum(cut >= 300) == pytest.approx(5.5 * 300, abs=4)


@pytest.mark.parametrize("start,duration", [(2000, 1000), (-1, 10)])
def test_span_outside_the_data(start: float, duration: float) -> None:
    with pytest.raises(ValueError, match=r"covers \[0, 2400\)"):
        generate_servegen(FIXTURE, start, duration)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown ServeGen client ids"):
        generate_servegen(FIXTURE, 0, 10, clients=[9])
    with pytest.raises(ValueError, match="scale"):
        generate_servegen(FIXTURE, 0, 10, scale=0)


def _err(d: Path, name: str, *, start: float = 0) -> TraceError:
    with pytest.raises(TraceError) as ei:
        generate_servegen(d, start, 600)
    assert name in str(ei.value)
    return ei.value


def test_missing_directory_and_files(tmp_path: Path, copy: Path) -> None:
    assert "not found" in _err(tmp_path / "nope", "nope").reason
    (tmp_path / "empty").mkdir()
    assert "chunk-<id>-dataset.json" in _err(tmp_path / "empty", "empty").reason
    (copy / "chunk-1-trace.csv").unlink()
    e = _err(copy, "chunk-1-trace.csv")
    assert e.path == str(copy / "chunk-1-trace.csv") and "not found" in e.reason


@pytest.mark.parametrize(
    "old,new,line,field",
    [
        ("600,1.0,2.0,Gamma", "600,abc,2.0,Gamma", 2, "rate"),
        ("600,1.0,2.0,Gamma", "600,-1,2.0,Gamma", 2, "rate"),
        ("0,2.0,2.0,Gamma", "0,2.0,2.0,Lognormal", 1, "pat_name"),
        ("Gamma,0.25,4.0", "Gamma,0,4.0", 2, "shape"),
        ("1200,3.0,2.0,Gamma,0.25,1.3333333333333333", "1200,3.0,2.0,Gamma", 3, None),
        ("1800,0,0", "500,0,0", 4, "timestamp"),
    ],
)
def test_malformed_trace_names_file_line_field(
    copy: Path, old: str, new: str, line: int, field: str | None
) -> None:
    p = copy / "chunk-0-trace.csv"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    e = _err(copy, f"chunk-0-trace.csv:{line}")
    assert e.line == line and e.field == field


def test_clients_with_different_windows(copy: Path) -> None:
    p = copy / "chunk-2-trace.csv"
    p.write_text(p.read_text().replace("1800,", "1900,"))
    assert _err(copy, "chunk-2-trace.csv").field == "timestamp"


@pytest.mark.parametrize(
    "old,new,line,field,reason",
    [
        ("200: 0.3, 400: 0.2}", "200: 0.3, 400: 0.3}", 3, "0/input_tokens", "sum to 1.1"),
        ('"{10: 0.6', '"{x: 0.6', 4, "0/output_tokens", "dict"),
        ("400: 0.2}", "-4: 0.2}", 3, "0/input_tokens", "integers"),
        (
            '"output_tokens": "{10: 0.6, 50: 0.4}"',
            '"o": "{1: 1.0}"',
            2,
            "0/output_tokens",
            "missing",
        ),
        ('"1200": {', '"1300": {', None, "1300", "window timestamps"),
        ('"0": {', '"0" {', 2, None, "JSON"),
    ],
)
def test_malformed_dataset_names_file_line_field(
    copy: Path, old: str, new: str, line: int | None, field: str | None, reason: str
) -> None:
    p = copy / "chunk-0-dataset.json"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    e = _err(copy, "chunk-0-dataset.json")
    assert e.line == line and e.field == field and reason in e.reason


def test_load_servegen_reads_the_layout() -> None:
    data = load_servegen(FIXTURE)
    assert sorted(data.clients) == [0, 1, 2] and data.timestamps == (0, 600, 1200, 1800)
    assert data.end_s == 2400 and data.clients[1].windows[1].pattern is None


runner = CliRunner()


def test_cli_generate_servegen(tmp_path: Path) -> None:
    args = ["trace", "generate", "--servegen", str(FIXTURE), "--start", "600"]
    args += ["--duration", "1200", "--scale", "2", "--seed", "3"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        r = runner.invoke(app, [*args, "--out", str(out)])
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()
    want = generate_servegen(FIXTURE, 600, 1200, 2.0, seed=3)
    got = load_trace(a)
    assert f"wrote {len(want)} requests" in r.output
    assert np.array_equal(got.arrival_s, want.arrival_s)
    assert np.array_equal(got.input_tokens, want.input_tokens)


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "exactly one of --preset"),
        (["--preset", "conv", "--servegen", str(FIXTURE)], "exactly one of --preset"),
        (["--servegen", str(FIXTURE)], "needs --duration"),
        (["--servegen", str(FIXTURE), "--duration", "9", "--rate", "2"], "apply to --preset"),
        (["--preset", "conv", "--scale", "2"], "apply to --servegen"),
        (["--servegen", str(FIXTURE), "--start", "2000", "--duration", "900"], "covers"),
        (["--servegen", "/nonexistent/sg", "--duration", "9"], "/nonexistent/sg"),
    ],
)
def test_cli_generate_usage_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    r = runner.invoke(app, ["trace", "generate", *extra, "--out", str(tmp_path / "x.csv")])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "x.csv").exists()

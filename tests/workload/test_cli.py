"""`fairbatching trace ...` through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.workload import load_trace

runner = CliRunner()


def test_stats_with_plot(azure_csv, tmp_path):
    png = tmp_path / "p.png"
    r = runner.invoke(app, ["trace", "stats", str(azure_csv), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "rows: 4" in r.output and "inter_arrival_cv" in r.output and "p99" in r.output
    assert png.stat().st_size > 1000


def test_stats_json_and_window(azure_csv):
    r = runner.invoke(
        app, ["trace", "stats", str(azure_csv), "--json", "--start", "4", "--duration", "1"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["rows"] == 3 and d["format"] == "azure"


def test_stats_bad_file_exits_2(write):
    p = write("bad.csv", "arrival_s,input_tokens,output_tokens\n0,x,1\n")
    r = runner.invoke(app, ["trace", "stats", str(p)])
    assert r.exit_code == 2
    assert "bad.csv:2" in r.output and "input_tokens" in r.output


def test_generate_is_reproducible(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        r = runner.invoke(
            app,
            [
                "trace",
                "generate",
                "--preset",
                "code",
                "--duration-s",
                "120",
                "--seed",
                "5",
                "--out",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()
    r = runner.invoke(
        app,
        [
            "trace",
            "generate",
            "--preset",
            "conv",
            "--duration-s",
            "60",
            "--rate",
            "10",
            "--out",
            str(tmp_path / "c.jsonl"),
        ],
    )
    assert r.exit_code == 0
    assert load_trace(tmp_path / "c.jsonl").mean_rate_rps > 8
    assert runner.invoke(app, ["trace", "generate", "--preset", "nope"]).exit_code == 2


def test_convert_with_transformations(azure_csv, tmp_path):
    out = tmp_path / "o.jsonl"
    r = runner.invoke(
        app,
        [
            "trace",
            "convert",
            str(azure_csv),
            str(out),
            "--rate-scale",
            "2",
            "--max-context",
            "400",
            "--spread-buckets-s",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    t = load_trace(out)
    assert t.format == "generic_jsonl" and len(t) == 4
    assert (t.input_tokens + t.output_tokens).max() <= 400
    assert t.arrival_s.max() < 3.0  # 4.71 s compressed by 2 (and spread within 1-s buckets)


def test_convert_retime(azure_csv, tmp_path):
    out = tmp_path / "o.csv"
    r = runner.invoke(
        app,
        [
            "trace",
            "convert",
            str(azure_csv),
            str(out),
            "--retime",
            "gamma",
            "--cv",
            "2",
            "--seed",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "retime process=gamma" in r.output

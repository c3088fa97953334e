"""Numeric fields outside their range are refused with file/line/field, never cast (issue #14.2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.workload import RequestTable, TraceError, load_trace

GEN = "arrival_s,input_tokens,output_tokens\n"


def _err(path, **kw) -> TraceError:
    with pytest.raises(TraceError) as ei:
        load_trace(path, **kw)
    return ei.value


@pytest.mark.parametrize("value", ["inf", "-inf", "1e20", "1" + "0" * 30, "Infinity"])
def test_csv_token_counts_out_of_range(write, value):
    e = _err(write("t.csv", GEN + f"0,1,1\n1,{value},2\n"))
    assert (e.line, e.field) == (3, "input_tokens")
    assert "finite" in e.reason or "range" in e.reason or "negative" in e.reason


def test_csv_output_tokens_in_slow_path(write):
    # a non-numeric cell elsewhere forces the string path; the range check holds there too
    e = _err(write("s.csv", GEN + "0,1,1\n1 ,2,1e20\n"))
    assert (e.line, e.field) == (3, "output_tokens") and "range" in e.reason


@pytest.mark.parametrize(
    ("ts", "col"), [("1e15", "arrival_s"), ("inf", "arrival_s"), ("1e16", "timestamp_ms")]
)
def test_csv_timestamps_out_of_range(write, ts, col):
    e = _err(write("ts.csv", f"{col},input_tokens,output_tokens\n0,1,1\n{ts},1,1\n"))
    assert (e.line, e.field) == (3, col)


def test_span_longer_than_the_limit(write):
    e = _err(write("span.csv", GEN + "0,1,1\n40000000,1,1\n"))  # 463 days after the first row
    assert e.line == 3 and "days" in e.reason
    assert len(load_trace(write("ok.csv", GEN + "1.7e9,1,1\n1.7e9,1,1\n"))) == 2  # epoch seconds


def test_jsonl_huge_numbers(write):
    ok = {"timestamp": 0, "input_length": 1, "output_length": 1}
    rows = [ok, {**ok, "output_length": 10**30}]
    e = _err(write("a.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    assert (e.line, e.field) == (2, "output_length")
    line = '{"timestamp": 0, "input_length": 1%s, "output_length": 1}\n' % ("0" * 400)
    e = _err(write("b.jsonl", line))
    assert (e.line, e.field) == (1, "input_length")
    e = _err(write("c.jsonl", json.dumps({**ok, "timestamp": 1e18}) + "\n"))
    assert (e.line, e.field) == (1, "timestamp")
    e = _err(write("d.jsonl", json.dumps({**ok, "input_length": "nan"}) + "\n"))
    assert e.field == "input_length" and "not a number" in e.reason
    e = _err(write("e.jsonl", json.dumps({**ok, "hash_ids": [2**64]}) + "\n"))
    assert (e.line, e.field) == (1, "hash_ids")
    e = _err(write("f.jsonl", '{"timestamp": 0, "input_length": 1%s}\n' % ("0" * 5000)))
    assert e.line == 1  # > 4300 digits: Python's int parser refuses it


def test_parquet_is_range_checked(tmp_path):
    p = RequestTable.from_arrays([0.0, 1e15], [1, 1], [1, 1]).to_parquet(tmp_path / "t.parquet")
    assert _err(p).field == "arrival_s"
    (tmp_path / "x.parquet").write_text("not parquet")
    assert "Parquet" in _err(tmp_path / "x.parquet").reason


def test_convert_and_stats_refuse_instead_of_casting(write, tmp_path):
    src = write("big.csv", GEN + "0,1e20,1\n")
    out = tmp_path / "out.csv"
    r = CliRunner().invoke(app, ["trace", "convert", str(src), str(out)])
    assert r.exit_code == 2 and "big.csv:2" in r.output and not out.exists()
    r = CliRunner().invoke(app, ["trace", "stats", str(write("ts.csv", GEN + "0,1,1\n1e15,1,1\n"))])
    assert r.exit_code == 2 and "ts.csv:3" in r.output

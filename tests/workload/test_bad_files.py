"""Files that are not readable traces give a TraceError naming the file (and line), not a
traceback or click's bare "Aborted." (issue #14.11)."""

from __future__ import annotations

import gzip

import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.workload import TraceError, load_trace

GEN = "arrival_s,input_tokens,output_tokens\n"


def _err(path) -> TraceError:
    with pytest.raises(TraceError) as ei:
        load_trace(path)
    assert str(path) in str(ei.value)
    return ei.value


def test_directory(tmp_path):
    (tmp_path / "d.csv").mkdir()
    assert "directory" in _err(tmp_path / "d.csv").reason


def test_plain_text_named_gz(write):
    assert "not gzip" in _err(write("t.csv.gz", GEN + "0,1,1\n")).reason


@pytest.mark.parametrize("keep", [20, 2000])  # cut inside the header / inside the rows
def test_truncated_gz(tmp_path, keep):
    text = GEN + "".join(f"{i},{i % 7 + 1},3\n" for i in range(20000))
    whole = gzip.compress(text.encode())
    p = tmp_path / "t.csv.gz"
    p.write_bytes(whole[:keep])
    assert "truncated" in _err(p).reason
    r = CliRunner().invoke(app, ["trace", "stats", str(p)])
    assert r.exit_code == 2 and "truncated" in r.output and "Aborted" not in r.output


@pytest.mark.parametrize("name", ["l.csv", "l.jsonl"])
def test_latin1_names_the_line(tmp_path, name):
    p = tmp_path / name
    if name.endswith(".csv"):
        rows = GEN.replace("\n", ",slo_class\n") + "0,1,1,ok\n1,1,1,caf\xe9\n"
    else:
        rows = '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n' * 2
        rows += '{"arrival_s": 1, "input_tokens": 1, "output_tokens": 1, "x": "caf\xe9"}\n'
    p.write_bytes(rows.encode("latin-1"))
    e = _err(p)
    assert e.line == 3 and "UTF-8" in e.reason


def test_binary_file(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(bytes(range(256)) * 4)
    assert "UTF-8" in _err(p).reason


def test_header_names_padded_with_spaces(write):
    t = load_trace(write("p.csv", " arrival_s , input_tokens ,output_tokens \n0,3,1\n2,4,2\n"))
    assert t.input_tokens.tolist() == [3, 4] and t.arrival_s.tolist() == [0.0, 2.0]
    az = write("az.csv", "TIMESTAMP , ContextTokens , GeneratedTokens\n2023-11-16 18:15:46,3,1\n")
    assert load_trace(az).output_tokens.tolist() == [1]
    e = _err(write("q.csv", " arrival_s , input_tokens ,output_tokens \n0,x,1\n"))
    assert e.line == 2 and e.field == "input_tokens"

"""Every bad input gives a TraceError naming the file, the physical line and the field."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fairbatching_sglang.workload import TraceError, TraceWarning, load_trace

AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _raises(path, line, field, match=None, **kw):
    with pytest.raises(TraceError, match=match) as ei:
        load_trace(path, **kw)
    e = ei.value
    msg = str(e)
    assert str(path) in msg
    assert e.path == str(path)
    assert e.line == line
    assert f":{line}:" in msg
    if field is not None:
        assert e.field == field
        assert repr(field) in msg
    return e


def test_empty_file(write):
    _raises(write("e.csv", ""), 1, None, match="empty")


def test_header_only(write):
    _raises(write("h.csv", AZ), 2, None, match="no rows")


def test_missing_column(write):
    p = write("m.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,3\n")
    _raises(p, 1, "GeneratedTokens", match="missing column")


def test_missing_column_explicit_format_with_blank_first_line(write):
    p = write("m.csv", "\narrival_s,input_tokens\n0,1\n")
    _raises(p, 2, "output_tokens", format="generic_csv")


def test_unknown_header(write):
    _raises(write("u.csv", "a,b,c\n1,2,3\n"), 1, None, match="unrecognised")


def test_non_numeric_length(write):
    p = write("n.csv", AZ + "2023-11-16 18:15:46.6,1,2\n\n2023-11-16 18:15:47.6,abc,2\n")
    _raises(p, 4, "ContextTokens", match="not a number")  # blank line 3 counted


def test_negative_length(write):
    p = write("neg.csv", AZ + "2023-11-16 18:15:46.6,1,2\n2023-11-16 18:15:47.6,5,-3\n")
    _raises(p, 3, "GeneratedTokens", match="negative")


def test_fractional_length(write):
    p = write("f.csv", "arrival_s,input_tokens,output_tokens\n0,1.5,2\n")
    _raises(p, 2, "input_tokens", match="not an integer")


def test_missing_value(write):
    p = write("mv.csv", "arrival_s,input_tokens,output_tokens\n0,1,2\n1,,2\n")
    _raises(p, 3, "input_tokens", match="missing value")


def test_unparsable_timestamp(write):
    p = write("t.csv", AZ + "2023-11-16 18:15:46.6,1,2\nyesterday,1,2\n")
    _raises(p, 3, "TIMESTAMP", match="unparsable timestamp")


def test_negative_relative_timestamp(write):
    p = write("t.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n-2,1,1\n")
    _raises(p, 3, "arrival_s", match="negative timestamp")


def test_wrong_field_count(write):
    p = write("w.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n1,1\n")
    _raises(p, 3, None, match="expected 3 fields")


def test_decreasing_timestamps_sorted_with_warning(write):
    p = write("d.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n5,2,2\n3,3,3\n")
    with pytest.warns(TraceWarning, match=r"d\.csv:4: field 'arrival_s'"):
        t = load_trace(p)
    assert t.arrival_s.tolist() == [0.0, 3.0, 5.0]
    assert t.input_tokens.tolist() == [1, 3, 2]
    assert any("sorted" in n for n in t.transformations)


def test_decreasing_timestamps_strict(write):
    p = write("d.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n5,2,2\n3,3,3\n")
    _raises(p, 4, "arrival_s", match="decreases", strict=True)


def test_zero_output_clamped_by_default(write):
    p = write("z.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n1,4,0\n")
    with pytest.warns(TraceWarning, match=r"z\.csv:3: field 'output_tokens'"):
        t = load_trace(p)
    assert t.output_tokens.tolist() == [1, 1]


def test_zero_input_dropped_or_refused(write):
    p = write("z.csv", "arrival_s,input_tokens,output_tokens\n0,0,1\n1,4,2\n")
    with pytest.warns(TraceWarning, match="dropped"):
        assert load_trace(p, zero_lengths="drop").input_tokens.tolist() == [4]
    _raises(p, 2, "input_tokens", match="zero", zero_lengths="error")


def test_jsonl_errors(write):
    ok = {"timestamp": 0, "input_length": 1, "output_length": 1}
    p = write("a.jsonl", json.dumps(ok) + "\n\n{not json\n")
    _raises(p, 3, None, match="invalid JSON")
    p = write("b.jsonl", json.dumps(ok) + "\n" + json.dumps({"timestamp": 5, "input_length": 2}))
    _raises(p, 2, "output_length", match="missing field")
    bad = {**ok, "input_length": "many"}
    _raises(write("c.jsonl", json.dumps(bad) + "\n"), 1, "input_length", match="not a number")
    bad = {**ok, "output_length": -1}
    _raises(write("d.jsonl", json.dumps(bad) + "\n"), 1, "output_length", match="negative")
    bad = {**ok, "timestamp": "noon"}
    _raises(write("e.jsonl", json.dumps(bad) + "\n"), 1, "timestamp")
    bad = {**ok, "hash_ids": [1, "x"]}
    _raises(write("f.jsonl", json.dumps(bad) + "\n"), 1, "hash_ids")


def test_jsonl_decreasing_strict(write):
    rows = [{"timestamp": t, "input_length": 1, "output_length": 1} for t in (0, 9, 3)]
    p = write("s.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _raises(p, 3, "timestamp", strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)
        assert np.all(np.diff(load_trace(p).arrival_s) >= 0)


def test_bad_hash_ids_in_generic_csv(write):
    p = write("h.csv", 'arrival_s,input_tokens,output_tokens,hash_ids\n0,1,1,"[1,2]"\n1,1,1,oops\n')
    _raises(p, 3, "hash_ids")


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="not found"):
        load_trace(tmp_path / "nope.csv")

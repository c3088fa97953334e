"""Loading each format into a RequestTable, detection, windows and limits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairbatching_sglang.workload import RequestTable, detect_format, load_trace


def test_azure_datetime_parsing(azure_csv):
    t = load_trace(azure_csv)
    assert t.format == "azure"
    assert len(t) == 4
    np.testing.assert_allclose(t.arrival_s, [0.0, 4.314579, 4.541877, 4.710427], atol=1e-9)
    assert t.input_tokens.tolist() == [374, 396, 879, 91]
    assert t.output_tokens.tolist() == [44, 109, 55, 16]
    assert t.arrival_s.dtype == np.float64 and t.input_tokens.dtype == np.int64


def test_accessors_are_read_only(azure_csv):
    a = load_trace(azure_csv).arrival_s
    with pytest.raises(ValueError):
        a[0] = 1.0


def test_azure_2024_timezone_suffix(write):
    p = write(
        "az24.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.0040000+00:00,10,2\n2024-05-10 00:00:01.5040000+00:00,20,3\n",
    )
    t = load_trace(p, "azure2024")
    np.testing.assert_allclose(t.arrival_s, [0.0, 1.5])


def test_azure_mixed_timestamp_layouts_fall_back(write):
    p = write(
        "mixed.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.5,1,2\n2023-11-16T18:15:47.5+00:00,3,4\n",
    )
    np.testing.assert_allclose(load_trace(p).arrival_s, [0.0, 1.0])


def test_burstgpt(write):
    p = write(
        "burst.csv",
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45,GPT-4,1087,230,1317,Conversation log\n"
        "118,ChatGPT,417,276,693,Conversation log\n",
    )
    assert detect_format(p) == "burstgpt"
    t = load_trace(p)
    assert t.arrival_s.tolist() == [5.0, 45.0, 118.0]  # relative-time format: its own zero
    assert load_trace(p, model="ChatGPT").input_tokens.tolist() == [472, 417]


def test_mooncake_jsonl(write):
    rows = [
        {"timestamp": 0, "input_length": 600, "output_length": 6, "hash_ids": [0, 1]},
        {"timestamp": 1500, "input_length": 100, "output_length": 4, "hash_ids": [0]},
    ]
    p = write("mc.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    t = load_trace(p)
    assert t.format == "mooncake"
    assert t.arrival_s.tolist() == [0.0, 1.5]
    assert t.hash_ids == [[0, 1], [0]]


def test_generic_csv_and_jsonl_roundtrip(tmp_path):
    t = RequestTable.from_arrays(
        [0.0, 0.25, 1.125],
        [10, 20, 30],
        [1, 2, 3],
        hash_ids=[[1, 2], [], [3]],
        slo_class=["a", "b", "a"],
        source="x",
    )
    for name, fmt in (("g.csv", "generic_csv"), ("g.jsonl", "generic_jsonl")):
        back = load_trace(t.save(tmp_path / name))
        assert back.format == fmt
        assert back.arrival_s.tolist() == t.arrival_s.tolist()
        assert back.input_tokens.tolist() == [10, 20, 30]
        assert back.hash_ids == [[1, 2], [], [3]]
        assert list(back.slo_class) == ["a", "b", "a"]
    pq = load_trace(t.save(tmp_path / "g.parquet"))
    assert pq.source == "x" and pq.hash_ids == [[1, 2], [], [3]]


def test_generic_timestamp_ms(write):
    p = write("ms.csv", "timestamp_ms,input_tokens,output_tokens\n0,5,5\n250,5,5\n")
    assert load_trace(p).arrival_s.tolist() == [0.0, 0.25]


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "azure"),
        ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n", "burstgpt"),
        ("arrival_s,input_tokens,output_tokens,slo_class\n", "generic_csv"),
        ('{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": []}\n', "mooncake"),
        ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n', "generic_jsonl"),
        ("\n\ufeffTIMESTAMP , ContextTokens,GeneratedTokens\n", "azure"),
    ],
)
def test_detect_format(write, text, fmt):
    assert detect_format(write("f.txt", text)) == fmt


def test_window_and_max_rows(azure_csv):
    t = load_trace(azure_csv, start_s=4.4, duration_s=0.25)
    assert len(t) == 1
    assert t.arrival_s[0] == pytest.approx(4.541877 - 4.4)
    assert "window" in t.transformations[0]
    assert load_trace(azure_csv, max_rows=2).input_tokens.tolist() == [374, 396]


def test_window_stops_reading_early(write, monkeypatch):
    import fairbatching_sglang.workload.csv_loader as cl

    monkeypatch.setattr(cl, "BLOCK_SIZE", 64)  # a few rows per block
    lines = [f"{i * 0.5},10,10" for i in range(2000)]
    p = write("big.csv", "arrival_s,input_tokens,output_tokens\n" + "\n".join(lines) + "\n")
    seen: list[int] = []
    real = cl.Collector.add

    def spy(self, t_s, *a, **k):
        seen.append(t_s.size)
        return real(self, t_s, *a, **k)

    monkeypatch.setattr(cl.Collector, "add", spy)
    t = load_trace(p, start_s=10, duration_s=5)
    assert len(t) == 10
    assert sum(seen) < 200  # did not read the 2000-row file to the end


def test_blank_lines_are_skipped(write):
    p = write("blank.csv", "arrival_s,input_tokens,output_tokens\n\n0,1,1\n\n1,2,2\n\n")
    assert load_trace(p).input_tokens.tolist() == [1, 2]

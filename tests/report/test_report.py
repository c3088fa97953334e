"""Report tables and ratios from a hand-written A/B directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from fairbatching_sglang.report import load_ab, write_report
from fairbatching_sglang.report.tables import ratio_table, to_markdown

ARMS = ("sglang-default", "sglang-mixed", "fairbatching")
CAPS = {"sglang-default": (2.0, 1.5), "sglang-mixed": (2.5, 2.0), "fairbatching": (3.0, 2.4)}
TTFT_P99 = {"sglang-default": 800.0, "sglang-mixed": 600.0, "fairbatching": 400.0}


def _write(root: Path) -> None:
    index = {
        "label": "SIMULATED (test)",
        "command": "fairbatching ab --trace t.csv",
        "profile": "h100-llama3.1-8b",
        "versions": {"fairbatching_sglang": "0"},
        "slo": {"ttft_slo_ms": 1000, "tpot_slo_ms": 50},
        "trace": {"source": "t.csv", "num_requests": 10, "span_s": 60.0},
        "config": {"arms": list(ARMS)},
        "detail_rate": 2.0,
    }
    (root / "ab.json").write_text(json.dumps(index))
    for arm in ARMS:
        c90, c99 = CAPS[arm]
        (root / arm).mkdir()
        probes = [
            {"rate_scale": 1.0, "slo_attainment": 1.0},
            {"rate_scale": 2.0, "slo_attainment": 0.95},
        ]
        (root / arm / "capacity.json").write_text(
            json.dumps({"status": "ok", "capacity": {"0.9": c90, "0.99": c99}, "probes": probes})
        )
        for rate, att in ((1.0, 1.0), (2.0, 0.95)):
            d = root / arm / f"x{rate:g}"
            d.mkdir()
            summary = {
                "slo_attainment": att,
                "ttft_ms_p99": TTFT_P99[arm] * rate / 2,
                "tpot_ms_p99": 40.0,
            }
            (d / "status.json").write_text(
                json.dumps({"arm": arm, "rate_scale": rate, "status": "ok", "summary": summary})
            )


def test_ratios(tmp_path: Path) -> None:
    _write(tmp_path)
    data = load_ab(tmp_path)
    r = ratio_table(data, 2.0).set_index("stock_arm")
    assert list(r["fairbatching_arm"]) == ["fairbatching", "fairbatching"]
    assert math.isclose(r.at["sglang-default", "capacity_ratio_at_0.9"], 1.5)
    assert math.isclose(r.at["sglang-mixed", "capacity_ratio_at_0.99"], 1.2)
    assert math.isclose(r.at["sglang-default", "ttft_p99_ratio"], 0.5)
    assert math.isclose(r.at["sglang-mixed", "ttft_p99_ratio"], 400 / 600)


def test_report_files(tmp_path: Path) -> None:
    _write(tmp_path)
    text = write_report(tmp_path, "T").read_text()
    assert "**SIMULATED (test)**" in text and "fairbatching ab --trace t.csv" in text
    for arm in ARMS:
        assert f"| {arm} |" in text
    for name in (
        "capacity.csv",
        "ratios.csv",
        "runs.csv",
        "detail.csv",
        "plots/attainment_vs_rate.png",
    ):
        assert (tmp_path / name).exists()
    cap = pd.read_csv(tmp_path / "capacity.csv")
    assert list(cap["arm"]) == list(ARMS) and list(cap["capacity_at_0.9"]) == [2.0, 2.5, 3.0]
    assert "Timeline omitted" in text  # no step data in this directory


def test_markdown_formatting() -> None:
    md = to_markdown(pd.DataFrame({"a": ["x"], "b": [float("nan")], "c": [1.23456]}))
    assert md.splitlines()[2] == "| x | - | 1.23 |"

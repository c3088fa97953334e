"""`ab --slo-grid`: parsing, one A/B per cell, the saturation limit once, the grid report with
its verdict matrix and heatmap, and --resume (issue #15)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairbatching_sglang.cli import app
from fairbatching_sglang.harness.slo_grid import SloGrid, cell_dir_name, parse_slo_grid
from fairbatching_sglang.report.slo_grid_report import verdict

TRACE = Path(__file__).resolve().parents[2] / "traces/synthetic_code_10min.csv"


def test_parse() -> None:
    g = parse_slo_grid("ttft=1000,300 tpot=50")
    assert g == SloGrid((300.0, 1000.0), (50.0,))
    assert g.cells() == [(300.0, 50.0), (1000.0, 50.0)]
    assert parse_slo_grid("tpot=25;ttft=300") == SloGrid((300.0,), (25.0,))
    assert cell_dir_name(300.0, 25.0) == "ttft300-tpot25"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ttft=300", "tpot missing"),
        ("ttft=300 tpot=abc", "values must be numbers"),
        ("ttft=300 tpot=-5", "finite values > 0"),
        ("ttft=300 tpot=25 tpot=50", "tpot given twice"),
        ("ttft=300 itl=25", "is not ttft=... or tpot=..."),
        ("ttft=300,300 tpot=25", "repeated"),
    ],
)
def test_parse_errors_name_the_flag(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match="--slo-grid") as exc:
        parse_slo_grid(text)
    assert needle in str(exc.value)


def test_verdict_thresholds() -> None:
    assert verdict(1.3) == "helps" and verdict(1.0) == "same" and verdict(0.9) == "hurts"
    assert verdict(math.nan) == "no verdict"


def _grid(out: Path, *extra: str) -> tuple[int, str]:
    args = ["ab", "--trace", str(TRACE), "--backend", "sim", "--duration", "60",
            "--arms", "sglang-mixed,fairbatching", "--targets", "0.9", "--rel-tol", "0.15",
            "--max-probes", "6", "--slo-grid", "ttft=500,2000 tpot=50", "--out", str(out),
            *extra]  # fmt: skip
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


def test_grid_end_to_end_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    code, output = _grid(out)
    assert code == 0, output
    grid = json.loads((out / "grid.json").read_text())
    assert grid["complete"] and grid["cells"] == [[500.0, 50.0], [2000.0, 50.0]]
    assert grid["saturation"]["limit"] > 0
    for cell in ("ttft500-tpot50", "ttft2000-tpot50"):
        ab = json.loads((out / cell / "ab.json").read_text())
        assert ab["slo"]["ttft_slo_ms"] == float(cell[4:].split("-")[0])
        assert ab["saturation"] == grid["saturation"]  # searched once, shown in every cell
        assert not (out / cell / "saturation").exists()
        assert (out / cell / "report.md").exists()
    table = pd.read_csv(out / "slo_grid.csv")
    fb = table[table["arm"] == "fairbatching"].set_index("ttft_slo_ms")
    for ttft in (500.0, 2000.0):
        assert math.isclose(
            fb.at[ttft, "ratio_vs_best_stock"],
            fb.at[ttft, "capacity"] / fb.at[ttft, "best_stock_capacity"],
        )
    # A looser TTFT SLO never lowers a capacity (same runs, fewer misses).
    mixed = table[table["arm"] == "sglang-mixed"].set_index("ttft_slo_ms")["capacity"]
    assert mixed[2000.0] >= mixed[500.0]
    report = (out / "report.md").read_text()
    assert report.splitlines()[0].startswith("# SIMULATED")
    assert "## Where it helps, where it does not" in report.split("## Capacity per cell")[0]
    assert (out / "plots/slo_grid.png").stat().st_size > 0
    # --resume: every probe is reused, nothing runs again, the same table comes out.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("**/status.json")}
    code, output = _grid(out, "--resume")
    assert code == 0, output
    assert {p: p.stat().st_mtime_ns for p in out.glob("**/status.json")} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(out / "slo_grid.csv"), table)
    # Another grid in the same directory is refused, naming the difference.
    args = ["ab", "--trace", str(TRACE), "--backend", "sim", "--duration", "60",
            "--arms", "sglang-mixed,fairbatching", "--slo-grid", "ttft=500 tpot=50",
            "--out", str(out), "--resume"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "slo_grid" in res.output


def test_bad_grid_is_a_clear_error(tmp_path: Path) -> None:
    args = ["ab", "--trace", str(TRACE), "--backend", "sim", "--slo-grid", "ttft=300",
            "--out", str(tmp_path / "g")]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--slo-grid" in res.output and "tpot missing" in res.output
    assert not (tmp_path / "g").exists()

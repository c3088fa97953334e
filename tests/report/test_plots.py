"""Report plots: the timeline's binned step trace, its legend and layout, the CDFs' SLO lines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import StepPatch

from fairbatching_sglang.report import plots
from fairbatching_sglang.report.collect import AbData
from fairbatching_sglang.report.plots import (
    bin_steps,
    busiest_window,
    default_slo,
    plot_attainment,
    plot_cdfs,
    plot_timeline,
    step_frame,
    timeline_bin_s,
)

RATE = 1.0


def _steps(rows: list[tuple[float, float, int, int, int, int]]) -> pd.DataFrame:
    """(start_s, end_s, num_steps, num_decodes, num_parked, num_prefill_tokens) per row."""
    a = np.array(rows, dtype=float).reshape(-1, 6)
    return pd.DataFrame(
        {
            "t_s": a[:, 0],
            "t_end_s": a[:, 1],
            "num_steps": a[:, 2].astype(int),
            "num_decodes": a[:, 3].astype(int),
            "num_parked": a[:, 4].astype(int),
            "num_prefill_tokens": a[:, 5].astype(int),
        }
    )


def _data(root: Path, arms: dict[str, Path], slo: dict | None = None) -> AbData:
    runs = pd.DataFrame(
        [
            {"arm": a, "rate_scale": RATE, "status": "ok", "run_dir": str(d), "slo_attainment": 0.9}
            for a, d in arms.items()
        ]
    )
    index = {"config": {"arms": list(arms)}, "detail_rate": RATE}
    if slo is not None:
        index["slo"] = slo
    return AbData(root, index, runs, {})


def _write_steps(d: Path, frame: pd.DataFrame) -> None:
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "start_ms": frame["t_s"] * 1000.0,
            "end_ms": frame["t_end_s"] * 1000.0,
            "num_steps": frame["num_steps"],
            "num_decodes": frame["num_decodes"],
            "num_parked": frame["num_parked"],
            "num_prefill_reqs": (frame["num_prefill_tokens"] > 0).astype(int),
            "num_prefill_tokens": frame["num_prefill_tokens"],
        }
    ).to_parquet(d / "steps.parquet")


def _write_requests(d: Path, ttft_ms: list[float], ttft_slo: list[float] | float = 1000.0) -> None:
    d.mkdir(parents=True, exist_ok=True)
    n = len(ttft_ms)
    arrival = np.arange(n) * 100.0
    first = arrival + np.array(ttft_ms)
    pd.DataFrame(
        {
            "rid": np.arange(n),
            "status": "ok",
            "arrival_ms": arrival,
            "input_tokens": 100,
            "output_tokens": 11,
            "cached_tokens": 0,
            "ttft_slo_ms": ttft_slo,
            "tpot_slo_ms": 50.0,
            "first_token_ms": first,
            "finish_ms": first + 10 * 20.0,  # TPOT 20 ms
            "token_times_ms": [list(f + 20.0 * np.arange(11)) for f in first],
        }
    ).to_parquet(d / "requests.parquet")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plot functions close, kept open for inspection."""
    figs: list[Figure] = []
    close = plt.close
    monkeypatch.setattr(plots.plt, "close", figs.append)
    yield figs
    for f in figs:
        close(f)


# --- binning -------------------------------------------------------------------------------


def test_bin_steps_leaves_idle_bins_nan() -> None:
    # Busy 0-2 s, idle 2-10 s, busy 10-11 s.
    f = _steps(
        [
            (0.0, 0.5, 1, 0, 0, 1000),  # a prefill step
            (0.5, 1.5, 10, 4, 1, 0),  # a fast-forwarded block of 10 decode steps over 2 bins
            (10.2, 10.4, 1, 2, 0, 300),
        ]
    )
    b = bin_steps(f, 1.0)
    assert list(b["bin_start_s"]) == [float(i) for i in range(11)]
    idle = b.iloc[2:10]
    assert idle[["decodes", "parked", "prefill_tokens"]].isna().all().all()
    assert (idle["steps"] == 0).all() and (idle["busy"] == 0).all()
    # Bin 0: the prefill step and half the block (5 steps); bin 1 the other half.
    assert math.isclose(b.at[0, "steps"], 6.0) and math.isclose(b.at[1, "steps"], 5.0)
    assert math.isclose(b.at[0, "decodes"], 4 * 5 / 6)
    assert math.isclose(b.at[0, "prefill_tokens"], 1000 / 6)
    assert math.isclose(b.at[1, "decodes"], 4.0) and math.isclose(b.at[1, "parked"], 1.0)
    assert b.at[1, "prefill_tokens"] == 0.0  # steps ran: zero, not a gap
    assert math.isclose(b.at[10, "prefill_tokens"], 300.0)
    assert math.isclose(b.at[0, "busy"], 1.0) and math.isclose(b.at[10, "busy"], 0.2)
    assert math.isclose(b["steps"].sum(), f["num_steps"].sum())


def test_bin_steps_window_and_span() -> None:
    f = _steps([(0.0, 1.0, 1, 1, 0, 0), (5.0, 7.0, 4, 3, 0, 0), (9.0, 9.5, 1, 2, 0, 0)])
    w = bin_steps(f, 1.0, end_s=8.0, start_s=4.0)
    assert list(w["bin_start_s"]) == [4.0, 5.0, 6.0, 7.0]
    assert np.isnan(w.at[0, "decodes"]) and np.isnan(w.at[3, "decodes"])
    assert list(w["steps"]) == [0.0, 2.0, 2.0, 0.0]  # the block split by overlap, rest outside
    full = bin_steps(f, 2.0, end_s=20.0)
    assert len(full) == 10 and full["decodes"].iloc[5:].isna().all()


def test_bin_steps_many_steps_is_fast() -> None:
    n = 200_000
    t = np.arange(n) * 0.01 + np.repeat(np.arange(n // 1000) * 100.0, 1000)  # bursts, idle gaps
    f = pd.DataFrame(
        {
            "t_s": t,
            "t_end_s": t + 0.01,
            "num_steps": 1,
            "num_decodes": 3,
            "num_parked": 0,
            "num_prefill_tokens": 0,
        }
    )
    span = float(f["t_end_s"].max())
    bin_s = timeline_bin_s(span)
    b = bin_steps(f, bin_s, span)
    assert len(b) <= plots.TIMELINE_TARGET_BINS
    assert b["decodes"].isna().any()  # the idle gaps survive binning
    assert math.isclose(b["steps"].sum(), n)


def test_timeline_bin_s() -> None:
    assert timeline_bin_s(30.0) == 0.1
    assert timeline_bin_s(1400.0) == 5.0
    assert timeline_bin_s(8000.0) == 20.0
    assert timeline_bin_s(72_000.0) == 300.0
    assert 10 * 86_400 / timeline_bin_s(10 * 86_400) <= plots.TIMELINE_TARGET_BINS


def test_busiest_window_is_the_burst() -> None:
    f = _steps([(float(t), t + 0.5, 1, 2, 0, 0) for t in range(0, 400, 10)])
    burst = _steps([(300 + 0.1 * i, 300 + 0.1 * i + 0.1, 1, 20, 0, 0) for i in range(500)])
    b = bin_steps(pd.concat([f, burst], ignore_index=True), 5.0, 400.0)
    assert 290.0 <= busiest_window([b, b], 5.0, 60.0) <= 300.0


def test_step_frame_device_log(tmp_path: Path) -> None:
    rows = [
        {"start_s": 100.0, "time_s": 100.2, "num_decode_reqs": 2, "num_prefill_tokens": 50},
        {"start_s": 100.2, "time_s": 100.25, "num_decode_reqs": 3, "num_prefill_tokens": 0},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + '\n{"torn'
    (tmp_path / "device_steps.jsonl").write_text(text)
    f = step_frame(tmp_path)
    assert list(f["t_s"]) == pytest.approx([0.0, 0.2])
    assert list(f["t_end_s"]) == pytest.approx([0.2, 0.25])
    assert list(f["num_decodes"]) == [2, 3] and list(f["num_parked"]) == [0, 0]


# --- timeline figure -------------------------------------------------------------------------


def _timeline_fixture(tmp_path: Path, span_s: float) -> AbData:
    dirs = {}
    for i, arm in enumerate(("sglang-default", "fairbatching")):
        d = tmp_path / arm / "x1"
        steps = [
            (0.0, 0.2, 1, 0, 0, 2000),
            (0.2, 3.0, 100, 5 + i, i, 0),
            # idle from 3 s to 80% of the span, then a burst
            (0.8 * span_s, 0.8 * span_s + 0.3, 1, 2, 0, 500),
            (0.8 * span_s + 0.3, span_s, 50, 6, 2 * i, 0),
        ]
        _write_steps(d, _steps(steps))
        dirs[arm] = d
    return _data(tmp_path, dirs)


def _legend_texts(fig: Figure) -> set[str]:
    out = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    for ax in fig.get_axes():
        if ax.get_legend() is not None:
            out |= {t.get_text() for t in ax.get_legend().get_texts()}
    return out


def test_timeline_legend_gaps_and_shared_axes(tmp_path: Path, captured: list[Figure]) -> None:
    data = _timeline_fixture(tmp_path, span_s=100.0)
    path, missing = plot_timeline(data, RATE, tmp_path / "timeline.png", "TEST")
    assert path is not None and path.exists() and missing == []
    (fig,) = captured
    axes = fig.get_axes()
    assert len(axes) == 4  # 2 arms x (requests, tokens); a 100 s run has no zoom block
    texts = _legend_texts(fig)
    assert plots.SERIES_LABELS["prefill"] in texts
    assert plots.SERIES_LABELS["decodes"] in texts
    assert plots.SERIES_LABELS["parked"] in texts  # fairbatching parked some decodes
    for ax in axes:
        assert not ax.lines  # no line drawn across anything: areas only
        patches = [p for p in ax.patches if isinstance(p, StepPatch)]
        assert patches
        for p in patches:
            values = p.get_data().values
            assert np.isnan(values).sum() > len(values) // 2  # the idle stretch is a gap
    labels = {p.get_label() for ax in axes for p in ax.patches}
    assert plots.SERIES_LABELS["prefill"] in labels
    # The two arms' rows share x and each column's y.
    req0, tok0, req1, tok1 = axes
    assert req0.get_shared_x_axes().joined(req0, tok1)
    assert req0.get_shared_y_axes().joined(req0, req1)
    assert tok0.get_shared_y_axes().joined(tok0, tok1)
    assert not req0.get_shared_y_axes().joined(req0, tok0)


def test_timeline_long_run_zooms_into_busiest_window(
    tmp_path: Path, captured: list[Figure]
) -> None:
    data = _timeline_fixture(tmp_path, span_s=1400.0)
    plot_timeline(data, RATE, tmp_path / "timeline.png", "TEST")
    (fig,) = captured
    axes = fig.get_axes()
    assert len(axes) == 8  # whole run + busiest window, 2 arms x 2 columns each
    whole, zoom = axes[0], axes[4]
    assert whole.get_xlim() == pytest.approx((0.0, 1400.0))
    lo, hi = zoom.get_xlim()
    assert hi - lo == pytest.approx(plots.ZOOM_S)
    assert lo >= 0.8 * 1400 - 5 and hi <= 1400 + 5  # inside the burst (1120 s to the end)


def test_timeline_without_parking_has_no_parked_entry(
    tmp_path: Path, captured: list[Figure]
) -> None:
    d = tmp_path / "sglang-default" / "x1"
    _write_steps(d, _steps([(0.0, 1.0, 1, 2, 0, 100), (5.0, 6.0, 1, 3, 0, 0)]))
    plot_timeline(_data(tmp_path, {"sglang-default": d}), RATE, tmp_path / "t.png", "TEST")
    texts = _legend_texts(captured[0])
    assert plots.SERIES_LABELS["prefill"] in texts
    assert plots.SERIES_LABELS["parked"] not in texts


def test_timeline_reports_missing_arms(tmp_path: Path) -> None:
    d = tmp_path / "a" / "x1"
    d.mkdir(parents=True)
    path, missing = plot_timeline(_data(tmp_path, {"a": d}), RATE, tmp_path / "t.png", "T")
    assert path is None and missing == ["a"]


# --- CDFs ------------------------------------------------------------------------------------


def _slo_lines(ax) -> list[float]:
    return [
        float(line.get_xdata()[0])
        for line in ax.get_lines()
        if isinstance(line, Line2D) and line.get_gid() == "slo"
    ]


def test_cdfs_mark_the_slos(tmp_path: Path, captured: list[Figure]) -> None:
    dirs = {}
    for arm, ttft in (("sglang-default", [100.0, 500.0, 2000.0]), ("fairbatching", [50.0] * 3)):
        dirs[arm] = tmp_path / arm / "x1"
        _write_requests(dirs[arm], ttft)
    data = _data(tmp_path, dirs, slo={"ttft_slo_ms": 1000.0, "tpot_slo_ms": 50.0})
    assert plot_cdfs(data, RATE, tmp_path / "cdf.png", "TEST") is not None
    (fig,) = captured
    ttft_ax, tpot_ax = fig.get_axes()
    assert _slo_lines(ttft_ax) == [1000.0]
    assert _slo_lines(tpot_ax) == [50.0]
    assert "TTFT SLO 1000 ms" in {t.get_text() for t in ttft_ax.texts}
    assert "TPOT SLO 50 ms" in {t.get_text() for t in tpot_ax.texts}
    assert ttft_ax.get_xscale() == "log" and ttft_ax.get_yscale() == "logit"
    legend = {t.get_text() for t in ttft_ax.get_legend().get_texts()}
    assert "sglang-default: 66.67%" in legend and "fairbatching: 100.00%" in legend


def test_cdfs_slo_from_run_json_and_per_class(tmp_path: Path, captured: list[Figure]) -> None:
    d = tmp_path / "fairbatching" / "x1"
    _write_requests(d, [100.0, 200.0], ttft_slo=[800.0, 3000.0])
    slo = {"default": {"ttft_slo_ms": 800.0, "tpot_slo_ms": 40.0}, "classes": {}}
    (d / "run.json").write_text(json.dumps({"slo": slo}))
    data = _data(tmp_path, {"fairbatching": d})  # no ab.json SLO
    assert default_slo(data, RATE) == (800.0, 40.0, False)
    plot_cdfs(data, RATE, tmp_path / "cdf.png", "TEST")
    ttft_ax, tpot_ax = captured[0].get_axes()
    assert _slo_lines(ttft_ax) == [800.0] and _slo_lines(tpot_ax) == [40.0]
    # The requests carry two TTFT SLOs: the marked one is the default class's.
    assert "TTFT SLO 800 ms (default class)" in {t.get_text() for t in ttft_ax.texts}


def test_attainment_plot(tmp_path: Path) -> None:
    d = tmp_path / "fairbatching" / "x1"
    d.mkdir(parents=True)
    assert plot_attainment(_data(tmp_path, {"fairbatching": d}), tmp_path / "a.png", "T").exists()


def test_arm_styles_consistent() -> None:
    s = plots.arm_styles(["sglang-default", "sglang-default@tuned", "fairbatching"])
    assert s["sglang-default"]["color"] == s["sglang-default@tuned"]["color"]
    assert s["sglang-default"]["ls"] == "--" and s["fairbatching"]["ls"] == "-"
    assert s["sglang-default@tuned"]["ls"] == ":"
    assert s["fairbatching"]["color"] != s["sglang-default"]["color"]

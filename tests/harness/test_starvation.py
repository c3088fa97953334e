"""CPU-starvation detection on synthetic device step logs (harness/starvation.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fairbatching_sglang.harness.starvation import (
    StarvationThresholds,
    assess,
    read_device_steps,
)

HEADER = '# emulated device: {"profile": "h100-llama3.1-8b"}\n'


def _step(t: float, ms: float, *, decodes: int = 4, prefill: int = 0, idle: float = 0.0,
          late: float = 0.1, waiting: int = 0) -> dict:  # fmt: skip
    return {
        "num_prefill_tokens": prefill, "num_decode_reqs": decodes, "decode_kv_tokens": 100,
        "prefill_attn_work": 0.0, "measured_ms": ms, "launch_s": t, "start_s": t,
        "time_s": t + ms / 1000.0, "processed_s": t + (ms + late) / 1000.0, "late_ms": late,
        "idle_before_ms": idle, "num_waiting": waiting, "forward_mode": "DECODE",
    }  # fmt: skip


def _write(path: Path, rows: list[dict], tail: str = "") -> Path:
    path.write_text(HEADER + "".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def _healthy(n: int = 200, t0: float = 1000.0, ms: float = 10.0) -> list[dict]:
    return [_step(t0 + i * ms / 1000.0, ms) for i in range(n)]


def test_healthy_log_is_valid(tmp_path: Path) -> None:
    st = read_device_steps(_write(tmp_path / "d.jsonl", _healthy()))
    assert st is not None and st.num_steps == 200
    assert math.isclose(st.busy_s, 2.0) and math.isclose(st.utilization, 1.0, rel_tol=1e-6)
    assert math.isclose(st.late_frac, 200 * 0.1 / 2000.0)
    v = assess(st, 3.0, StarvationThresholds())
    assert v.valid and v.reason is None and v.figures["num_steps"] == 200


def test_natural_gap_is_not_starvation(tmp_path: Path) -> None:
    # The quiet spell after the last decode, then a new arrival's prefill-only step: the log's
    # idle_before_ms counts it, the harness must not.
    rows = _healthy(100)
    t = rows[-1]["time_s"] + 2.0
    rows.append(_step(t, 20.0, decodes=0, prefill=500, idle=2000.0))
    rows += _healthy(100, t0=t + 0.02)
    st = read_device_steps(_write(tmp_path / "d.jsonl", rows))
    assert st.logged_idle_ms_sum == 2000.0 and st.idle_ms_sum == 0.0
    assert assess(st, 1.0, StarvationThresholds()).valid


def test_cpu_caused_idle_marks_invalid(tmp_path: Path) -> None:
    rows = _healthy(200)
    for r in rows[::10]:  # the device waited 5 ms for a launch while decodes were running
        r["idle_before_ms"] = 5.0
    rows[50].update(num_decode_reqs=0, num_prefill_tokens=300, idle_before_ms=30.0)
    rows[49]["num_waiting"] = 3  # ...and 30 ms although requests were waiting
    st = read_device_steps(_write(tmp_path / "d.jsonl", rows))
    assert math.isclose(st.idle_ms_sum, 19 * 5.0 + 30.0)  # row 50 is one of the tenth rows
    v = assess(st, 1.0, StarvationThresholds())
    assert not v.valid and "device idle" in v.reason and v.reason.startswith("CPU-starved")
    assert assess(st, 1.0, StarvationThresholds(max_idle_frac=None)).valid


def test_late_and_dispatch_lag_thresholds(tmp_path: Path) -> None:
    rows = _healthy(200)
    for r in rows[-3:]:
        r["late_ms"] = 40.0
    st = read_device_steps(_write(tmp_path / "d.jsonl", rows))
    assert st.late_ms_max == 40.0 and st.late_ms_p99 > 10.0
    v = assess(st, 80.0, StarvationThresholds())
    assert not v.valid
    assert any("late_ms p99" in r for r in v.reasons)
    assert any("dispatch lag p99 80.0 ms > 50 ms" in r for r in v.reasons)
    off = StarvationThresholds(max_late_p99_ms=None, max_dispatch_lag_p99_ms=None)
    assert assess(st, 80.0, off).valid


def test_window_short_runs_torn_lines_and_missing_log(tmp_path: Path) -> None:
    warm = [_step(10.0 + i, 10.0, idle=500.0) for i in range(5)]  # warm-up: before the window
    path = _write(tmp_path / "d.jsonl", warm + _healthy(200), tail='{"num_prefill_tok')
    st = read_device_steps(path, since_s=1000.0)
    assert st.num_steps == 200 and st.num_bad_lines == 1 and st.idle_ms_sum == 0.0
    # Too little device time to judge the ratios: only the client check applies.
    short = read_device_steps(_write(tmp_path / "s.jsonl", [_step(1.0, 10.0, idle=9.0)] * 3))
    assert assess(short, 1.0, StarvationThresholds()).valid
    assert read_device_steps(tmp_path / "none.jsonl") is None
    v = assess(None, 1.0, StarvationThresholds())
    assert not v.valid and "no device step log" in v.reason


def test_cluster_names_the_replica(tmp_path: Path) -> None:
    good = read_device_steps(_write(tmp_path / "a.jsonl", _healthy()))
    rows = _healthy()
    for r in rows:
        r["idle_before_ms"] = 1.0
    bad = read_device_steps(_write(tmp_path / "b.jsonl", rows))
    v = assess([good, bad], 1.0, StarvationThresholds(), where="r")
    assert not v.valid and v.reasons[0].startswith("CPU-starved emulation: r1: device idle")
    assert "r0_busy_s" in v.figures and "r1_idle_frac" in v.figures

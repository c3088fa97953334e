"""PNG plots (matplotlib Agg): attainment vs rate, TTFT/TPOT CDFs, batch-composition timeline."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fairbatching_sglang.metrics import request_latencies
from fairbatching_sglang.report.collect import AbData


def _wrap(title: str, width: int = 90) -> str:
    """Long report labels (device model, planner, loop) on several lines, not cut at the edge."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width))


def plot_attainment(data: AbData, path: Path, label: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in data.arms:
        sel = data.runs[data.runs["arm"] == arm].sort_values("rate_scale")
        if "slo_attainment" in sel and len(sel):
            ax.plot(sel["rate_scale"], sel["slo_attainment"], marker="o", ms=3, label=arm)
    for t in (0.9, 0.99):
        ax.axhline(t, color="grey", lw=0.7, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rate scale (x trace rate)")
    ax.set_ylabel("SLO attainment (TTFT and TPOT)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(_wrap(f"Attainment vs rate ({label})"), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cdfs(data: AbData, rate: float, path: Path, label: str) -> Path | None:
    frames = {}
    for arm in data.arms:
        d = data.run_dir(arm, rate)
        if d is not None and (d / "requests.parquet").exists():
            frames[arm] = request_latencies(pd.read_parquet(d / "requests.parquet"))
    if not frames:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm, lat in frames.items():
        for ax, key in zip(axes, ("ttft_ms", "tpot_ms"), strict=True):
            v = np.sort(lat[key].dropna().to_numpy())
            if len(v):
                ax.plot(v, np.arange(1, len(v) + 1) / len(lat), label=arm)
    for ax, key in zip(axes, ("TTFT (ms)", "TPOT (ms)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("fraction of all requests")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(_wrap(f"CDFs at rate x{rate:g} ({label})", 120), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def step_frame(run_dir: Path) -> pd.DataFrame | None:
    """Per-step composition: simulator steps.parquet, else a server step log (FairBatching's,
    else the emulated device's, which every emulated arm has), else None."""
    if (run_dir / "steps.parquet").exists():
        s = pd.read_parquet(run_dir / "steps.parquet")
        return pd.DataFrame(
            {
                "t_s": s["start_ms"] / 1000.0,
                "num_decodes": s["num_decodes"],
                "num_parked": s["num_parked"],
                "num_prefill_tokens": s["num_prefill_tokens"],
                "num_steps": s["num_steps"],
            }
        )
    for name in ("step_log.jsonl", "device_steps.jsonl"):
        rows = _timeline_rows(run_dir / name)
        if rows:
            t0 = rows[0]["time_s"]
            return pd.DataFrame(
                {
                    "t_s": [r["time_s"] - t0 for r in rows],
                    "num_decodes": [int(r.get("num_decode_reqs", 0)) for r in rows],
                    "num_parked": [int(r.get("num_parked") or 0) for r in rows],
                    "num_prefill_tokens": [int(r.get("num_prefill_tokens", 0)) for r in rows],
                    "num_steps": 1,
                }
            )
    return None


def _timeline_rows(path: Path) -> list[dict]:
    """Step-log lines with a time_s, leniently: the plot needs only the composition, and a
    FairBatching log also has lines without a measured time (profiles/step_log.py would
    refuse them)."""
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if isinstance(row, dict) and isinstance(row.get("time_s"), int | float):
                rows.append(row)
    return rows


def plot_timeline(
    data: AbData, rate: float, path: Path, label: str
) -> tuple[Path | None, list[str]]:
    """One panel per arm, 1-second bins; returns the arms that had no step data."""
    frames, missing = {}, []
    for arm in data.arms:
        d = data.run_dir(arm, rate)
        f = step_frame(d) if d is not None else None
        if f is None or f.empty:
            missing.append(arm)
        else:
            frames[arm] = f
    if not frames:
        return None, missing
    fig, axes = plt.subplots(len(frames), 1, figsize=(11, 2.4 * len(frames)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (arm, f) in zip(axes, frames.items(), strict=True):
        sec = np.floor(f["t_s"]).astype(int)
        w = f["num_steps"].clip(lower=1)
        g = pd.DataFrame(
            {
                "sec": sec,
                "dec": f["num_decodes"] * w,
                "park": f["num_parked"] * w,
                "w": w,
                "pf": f["num_prefill_tokens"],
            }
        ).groupby("sec")
        agg = g.sum()
        ax.plot(agg.index, agg["dec"] / agg["w"], lw=0.8, label="decodes per step")
        ax.plot(agg.index, agg["park"] / agg["w"], lw=0.8, label="parked decodes per step")
        ax2 = ax.twinx()
        ax2.plot(agg.index, agg["pf"], lw=0.6, color="tab:green", alpha=0.6, label="prefill tok/s")
        ax2.set_ylabel("prefill tok/s", fontsize=7)
        ax.set_ylabel(arm, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(_wrap(f"Batch composition at rate x{rate:g}, 1 s bins ({label})", 120), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, missing

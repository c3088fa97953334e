"""PNG plots (matplotlib Agg): attainment vs rate, TTFT/TPOT CDFs, batch-composition timeline.

Every plot draws an arm in the same colour and line style (stock arms dashed, FairBatching arms
solid). The CDFs mark the run's (default) TTFT and TPOT SLOs. The timeline bins the step trace
into time bins sized for the run's length and leaves bins without a step empty, so idle periods
are gaps, not lines bridging bursts.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter, NullLocator

from fairbatching_sglang.metrics import request_latencies
from fairbatching_sglang.report.collect import AbData
from fairbatching_sglang.report.tables import is_fairbatching

STOCK_COLORS = ("tab:blue", "tab:green", "tab:purple", "tab:cyan", "tab:olive", "tab:gray")
FB_COLORS = ("tab:red", "tab:orange", "tab:brown", "tab:pink")
# Timeline series: a decode is one request and one token, so it has one colour in both columns.
SERIES_COLORS = {"decodes": "tab:blue", "parked": "tab:orange", "prefill": "tab:green"}
SERIES_LABELS = {
    "decodes": "decodes (1 token each)",
    "parked": "parked decodes",
    "prefill": "prefill tokens",
}
TIMELINE_TARGET_BINS = 400  # ~2 px per bin at the figure's width: readable at any run length
CDF_YLIM = (0.01, 0.999)  # logit CDF axis: p1 to p99.9
CDF_TICKS = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999)
NICE_BINS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)


def _wrap(title: str, width: int = 90) -> str:
    """Long report labels (device model, planner, loop) on several lines, not cut at the edge."""
    return "\n".join(textwrap.wrap(title, width))


def arm_styles(arms: list[str]) -> dict[str, dict[str, Any]]:
    """Line style per arm, the same in every plot: stock arms dashed in cool colours,
    FairBatching arms solid in warm ones; `<arm>@tuned` takes its default arm's colour, dotted."""
    colors: dict[str, str] = {}
    n_stock = n_fb = 0
    out = {}
    for arm in arms:
        base, _, suffix = arm.partition("@")
        if base not in colors:
            if is_fairbatching(base):
                colors[base] = FB_COLORS[n_fb % len(FB_COLORS)]
                n_fb += 1
            else:
                colors[base] = STOCK_COLORS[n_stock % len(STOCK_COLORS)]
                n_stock += 1
        ls = ":" if suffix else ("-" if is_fairbatching(base) else "--")
        out[arm] = {"color": colors[base], "ls": ls, "lw": 1.6 if is_fairbatching(base) else 1.3}
    return out


def plot_attainment(data: AbData, path: Path, label: str) -> Path:
    styles = arm_styles(data.arms)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for arm in data.arms:
        sel = data.runs[data.runs["arm"] == arm].sort_values("rate_scale")
        if "slo_attainment" in sel and len(sel):
            ax.plot(
                sel["rate_scale"], sel["slo_attainment"], marker="o", ms=3, label=arm, **styles[arm]
            )
    for t in (0.9, 0.99):
        ax.axhline(t, color="grey", lw=0.7, ls="--", zorder=0)
        ax.annotate(
            f"target {t:g}",
            (0.0, t),
            xycoords=("axes fraction", "data"),
            xytext=(3, -2),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=7,
            color="grey",
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("rate scale (x trace rate, log)")
    ax.set_ylabel("SLO attainment (TTFT and TPOT)")
    att = pd.to_numeric(data.runs.get("slo_attainment", pd.Series(dtype=float)), errors="coerce")
    low = float(att.min()) if att.notna().any() else 0.0
    # Down to just below the lowest probe (the 0.9 and 0.99 crossings are what matter), 0.8 at most.
    ax.set_ylim(min(0.8, max(0.0, math.floor(low * 10) / 10 - 0.05)) - 0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(_wrap(f"Attainment vs rate ({label})"), fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _run_slo(run_dir: Path) -> tuple[dict[str, float], bool]:
    """A run's default SLO and whether it has per-class SLOs, from run.json: the simulator
    writes {"default": {...}, "classes": {...}}, a measured run the default's two fields."""
    p = run_dir / "run.json"
    if not p.exists():
        return {}, False
    try:
        slo = json.loads(p.read_text()).get("slo") or {}
    except ValueError:
        return {}, False
    if "default" in slo:
        return dict(slo.get("default") or {}), bool(slo.get("classes"))
    return dict(slo), False


def default_slo(
    data: AbData, rate: float | None = None, requests: list[pd.DataFrame] | None = None
) -> tuple[float | None, float | None, bool]:
    """(TTFT SLO ms, TPOT SLO ms, per_class) for the CDFs: the A/B's SLO (ab.json "slo", the
    --slo-ttft-ms/--slo-tpot-ms every request without a class gets), else a run's run.json;
    per_class when the runs have SLO classes (then these are the default class's)."""
    slo = dict(data.index.get("slo") or {})
    per_class = False
    for arm in data.arms:
        d = data.run_dir(arm, rate) if rate is not None else None
        if d is None:
            continue
        run_slo, classes = _run_slo(d)
        per_class |= classes
        for k, v in run_slo.items():
            slo.setdefault(k, v)
    for r in requests or []:
        for k in ("ttft_slo_ms", "tpot_slo_ms"):
            if k in r and r[k].nunique() > 1:
                per_class = True

    def num(key: str) -> float | None:
        v = slo.get(key)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    return num("ttft_slo_ms"), num("tpot_slo_ms"), per_class


def plot_cdfs(data: AbData, rate: float, path: Path, label: str) -> Path | None:
    raw, frames = [], {}
    for arm in data.arms:
        d = data.run_dir(arm, rate)
        if d is not None and (d / "requests.parquet").exists():
            r = pd.read_parquet(d / "requests.parquet")
            raw.append(r)
            frames[arm] = request_latencies(r)
    if not frames:
        return None
    ttft_slo, tpot_slo, per_class = default_slo(data, rate, raw)
    styles = arm_styles(data.arms)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.0))
    panels = (
        ("ttft_ms", "ttft_met", "TTFT", ttft_slo),
        ("tpot_ms", "tpot_met", "TPOT", tpot_slo),
    )
    for ax, (key, met, name, slo) in zip(axes, panels, strict=True):
        for arm, lat in frames.items():
            v = np.sort(lat[key].dropna().to_numpy())
            if not len(v):
                continue
            frac = np.arange(1, len(v) + 1) / len(lat)
            share = float(lat[met].mean()) if met in lat and len(lat) else float("nan")
            ax.plot(
                np.repeat(v, 2)[1:],
                np.repeat(frac, 2)[:-1],
                label=f"{arm}: {share:.2%}" if slo is not None else arm,
                **styles[arm],
            )
        if slo is not None:
            text = f"{name} SLO {slo:g} ms" + (" (default class)" if per_class else "")
            ax.axvline(slo, color="black", lw=1.0, ls="-.", zorder=1, gid="slo")
            ax.annotate(
                text,
                (slo, 0.03),
                xycoords=("data", "axes fraction"),
                xytext=(3, 0),
                textcoords="offset points",
                rotation=90,
                ha="left",
                va="bottom",
                fontsize=8,
            )
        ax.set_xscale("log")
        # Logit y: the median and the tail (p90, p99, p99.9) where arms differ are both legible.
        ax.set_yscale("logit", nonpositive="clip")
        ax.set_ylim(CDF_YLIM)
        ax.yaxis.set_major_locator(FixedLocator(CDF_TICKS))
        ax.yaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in CDF_TICKS]))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(f"{name} (ms, log)")
        ax.set_ylabel("fraction of all requests at or below x (logit)")
        ax.grid(alpha=0.3, which="major", lw=0.5)
        ax.legend(
            fontsize=7,
            loc="upper left",
            title=f"share meeting the {name} SLO" if slo is not None else None,
            title_fontsize=7,
        )
    fig.suptitle(_wrap(f"TTFT and TPOT CDFs at rate x{rate:g} ({label})", 130), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def step_frame(run_dir: Path) -> pd.DataFrame | None:
    """Per-step composition: simulator steps.parquet, else a server step log (FairBatching's,
    else the emulated device's, which every emulated arm has), else None. Columns t_s and
    t_end_s (a row's start and end, s; equal when only one time is known), num_steps (a
    simulator row can be a fast-forwarded block of identical decode steps), num_decodes and
    num_parked per step, num_prefill_tokens per row."""
    if (run_dir / "steps.parquet").exists():
        s = pd.read_parquet(run_dir / "steps.parquet")
        return pd.DataFrame(
            {
                "t_s": s["start_ms"] / 1000.0,
                "t_end_s": s["end_ms"] / 1000.0,
                "num_decodes": s["num_decodes"],
                "num_parked": s["num_parked"],
                "num_prefill_tokens": s["num_prefill_tokens"],
                "num_steps": s["num_steps"],
            }
        )
    for name in ("step_log.jsonl", "device_steps.jsonl"):
        rows = _timeline_rows(run_dir / name)
        if rows:
            # The device log has each step's start; a FairBatching log only its formation time.
            start = [float(r.get("start_s", r["time_s"])) for r in rows]
            t0 = min(start)
            return pd.DataFrame(
                {
                    "t_s": [s - t0 for s in start],
                    "t_end_s": [max(r["time_s"], s) - t0 for r, s in zip(rows, start, strict=True)],
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
                if not isinstance(row.get("start_s"), int | float):
                    row.pop("start_s", None)
                rows.append(row)
    return rows


def timeline_bin_s(span_s: float, target_bins: int = TIMELINE_TARGET_BINS) -> float:
    """The smallest round bin width giving at most `target_bins` bins over span_s."""
    for b in NICE_BINS_S:
        if span_s / b <= target_bins:
            return float(b)
    return float(math.ceil(span_s / target_bins / 3600.0) * 3600)


def bin_steps(
    frame: pd.DataFrame, bin_s: float, end_s: float | None = None, start_s: float = 0.0
) -> pd.DataFrame:
    """The step trace in time bins of bin_s from start_s to end_s (default: the last step's
    end): one row per bin (bin_start_s = its left edge) with steps (how many steps ran in it),
    busy (the share of the bin a step was running) and the mean per step of decodes, parked
    decodes and prefill tokens. A row spanning several bins (a long step, a fast-forwarded
    block) counts in each by its overlap. Bins without a step are NaN (steps and busy 0): an
    idle period is a gap in the plot, not a line or a zero."""
    t0 = frame["t_s"].to_numpy(dtype=float)
    t1 = np.maximum(frame["t_end_s"].to_numpy(dtype=float), t0) if "t_end_s" in frame else t0
    if end_s is None:
        last_end = float(t1.max()) if len(t1) else start_s
        n_bins = max(1, math.floor((last_end - start_s) / bin_s) + 1)
    else:
        n_bins = max(1, math.ceil((end_s - start_s) / bin_s - 1e-9))
    edge_lo, edge_hi = start_s, start_s + n_bins * bin_s
    keep = np.flatnonzero((t1 >= edge_lo) & (t0 <= edge_hi))
    t0, t1 = t0[keep], t1[keep]
    first = np.clip(np.floor((t0 - start_s) / bin_s).astype(np.int64), 0, n_bins - 1)
    last = np.clip(np.ceil((t1 - start_s) / bin_s).astype(np.int64) - 1, first, n_bins - 1)
    n_cov = last - first + 1
    row = np.repeat(np.arange(len(t0)), n_cov)
    b = first[row] + np.arange(len(row)) - np.repeat(np.cumsum(n_cov) - n_cov, n_cov)
    overlap = np.clip(
        np.minimum(t1[row], start_s + (b + 1) * bin_s) - np.maximum(t0[row], start_s + b * bin_s),
        0.0,
        None,
    )
    dur = (t1 - t0)[row]
    share = np.where(dur > 0, overlap / np.where(dur > 0, dur, 1.0), 1.0)
    k = (
        frame["num_steps"].to_numpy(dtype=float)[keep].clip(min=1)
        if "num_steps" in frame
        else np.ones(len(keep))
    )
    k = k[row] * share

    def per_step(col: str, per_row: bool = False) -> np.ndarray:
        v = frame[col].to_numpy(dtype=float)[keep][row]
        total = np.bincount(b, weights=v * share if per_row else v * k, minlength=n_bins)
        return np.where(ran, total / np.where(ran, steps, 1.0), np.nan)

    steps = np.bincount(b, weights=k, minlength=n_bins)
    ran = steps > 0
    return pd.DataFrame(
        {
            "bin_start_s": start_s + np.arange(n_bins) * bin_s,
            "steps": steps,
            "busy": np.clip(np.bincount(b, weights=overlap, minlength=n_bins) / bin_s, 0.0, 1.0),
            "decodes": per_step("num_decodes"),
            "parked": per_step("num_parked"),
            # A row's prefill tokens are its total (a fast-forwarded block has none).
            "prefill_tokens": per_step("num_prefill_tokens", per_row=True),
        }
    )


def busiest_window(binned: list[pd.DataFrame], bin_s: float, width_s: float) -> float:
    """Start (s) of the width_s window with the most decode work summed over the arms (device
    busy share x decode-phase requests per step: a saturated device alone would tie; the step
    count instead of the busy share for a log without step durations): the same window for
    every arm, so the zoom compares them on the same requests."""
    busy = sum(
        ((b["busy"] if b["busy"].sum() > 0 else b["steps"]) * (b["decodes"] + b["parked"]))
        .fillna(0.0)
        .to_numpy()
        for b in binned
    )
    k = max(1, min(len(busy), round(width_s / bin_s)))
    run = np.convolve(busy, np.ones(k), mode="valid")
    return float(np.argmax(run)) * bin_s


def _area(ax: Any, key: str, edges: np.ndarray, top: np.ndarray, bottom: Any = 0.0) -> None:
    """One stacked series as filled stairs from bottom to top; NaN bins stay empty."""
    ax.stairs(
        top,
        edges,
        baseline=bottom,
        fill=True,
        lw=0,
        color=SERIES_COLORS[key],
        label=SERIES_LABELS[key],
    )


def _composition_panels(
    axes: np.ndarray,
    binned: dict[str, pd.DataFrame],
    bin_s: float,
    any_parked: bool,
    legend: bool,
) -> None:
    """One row per arm: requests per step (decodes, parked stacked), tokens per step (decode
    tokens, prefill tokens stacked), as filled stairs with NaN bins left empty."""
    for (ax_req, ax_tok), (arm, b) in zip(axes, binned.items(), strict=True):
        edges = np.append(b["bin_start_s"].to_numpy(), b["bin_start_s"].iloc[-1] + bin_s)
        dec = b["decodes"].to_numpy()
        _area(ax_req, "decodes", edges, dec)
        _area(ax_tok, "decodes", edges, dec)
        if any_parked:
            _area(ax_req, "parked", edges, dec + b["parked"].to_numpy(), dec)
        _area(ax_tok, "prefill", edges, dec + b["prefill_tokens"].to_numpy(), dec)
        ax_req.set_ylabel(arm, rotation=0, ha="right", va="center", fontsize=8, fontweight="bold")
        for ax in (ax_req, ax_tok):
            ax.grid(alpha=0.3, lw=0.5)
            ax.tick_params(labelsize=7)
            ax.set_ylim(bottom=0)
            ax.set_xlim(edges[0], edges[-1])
    columns = (
        ("requests per step", ["decodes", *(["parked"] if any_parked else [])]),
        ("tokens per step", ["decodes", "prefill"]),
    )
    for ax, (title, keys) in zip(axes[0], columns, strict=True):
        ax.set_title(title, fontsize=8, loc="left")
        if legend:
            handles = [Patch(color=SERIES_COLORS[k], label=SERIES_LABELS[k]) for k in keys]
            ax.legend(
                handles=handles,
                loc="lower right",
                bbox_to_anchor=(1.0, 1.0),
                ncol=2,
                fontsize=7,
                frameon=False,
                borderaxespad=0.1,
            )
    for ax in axes[-1]:
        ax.set_xlabel("time since the run's start (s)", fontsize=8)


ZOOM_S = 60.0  # the busiest window's width, for runs long enough that their bins hide steps


def plot_timeline(
    data: AbData, rate: float, path: Path, label: str
) -> tuple[Path | None, list[str]]:
    """Batch composition per arm: one row of panels per arm, sharing the time axis and each
    column's y axis so the arms compare by eye. Left: requests per step (decodes, parked
    decodes stacked on them); right: tokens per step (decode tokens, prefill tokens stacked).
    Values are means per step in each time bin; a bin with no step is left empty. A long run
    (bins of 1 s or more) gets a second block: the busiest ZOOM_S window at fine bins, where
    the schedulers' step shapes show. Returns the arms that had no step data."""
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
    span = max(float(f["t_end_s"].max()) for f in frames.values())
    bin_s = timeline_bin_s(span)
    binned = {arm: bin_steps(f, bin_s, span) for arm, f in frames.items()}
    zoom = None
    if bin_s >= 1.0 and span > 4 * ZOOM_S:
        z0 = busiest_window(list(binned.values()), bin_s, ZOOM_S)
        z_bin = timeline_bin_s(ZOOM_S, 300)
        zoom = (z0, z_bin, {a: bin_steps(f, z_bin, z0 + ZOOM_S, z0) for a, f in frames.items()})
    any_parked = any(
        (b["parked"].fillna(0) > 0).any()
        for b in [*binned.values(), *(zoom[2].values() if zoom else [])]
    )

    n = len(binned)
    row_in = 1.0
    blocks = 2 if zoom else 1
    fig = plt.figure(figsize=(12, blocks * (row_in * n + 0.7) + 0.9), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(blocks, 1, hspace=0.02))
    axes = subs[0].subplots(n, 2, sharex=True, sharey="col", squeeze=False)
    _composition_panels(axes, binned, bin_s, any_parked, legend=True)
    subs[0].suptitle(
        f"Whole run: mean per step in {bin_s:g} s bins; blank in both columns = no step (idle)",
        fontsize=9,
        x=0.02,
        ha="left",
    )
    if zoom:
        z0, z_bin, zbinned = zoom
        for ax in axes.flat:
            ax.axvspan(z0, z0 + ZOOM_S, color="gold", alpha=0.5, lw=0, zorder=0)
        zaxes = subs[1].subplots(n, 2, sharex=True, sharey="col", squeeze=False)
        _composition_panels(zaxes, zbinned, z_bin, any_parked, legend=False)
        subs[1].suptitle(
            f"Busiest {ZOOM_S:g} s (t = {z0:g} to {z0 + ZOOM_S:g} s, shaded above): mean per "
            f"step in {z_bin:g} s bins",
            fontsize=9,
            x=0.02,
            ha="left",
        )
    fig.suptitle(
        _wrap(f"Batch composition at rate x{rate:g}; axes shared across arms ({label})", 130),
        fontsize=10,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, missing

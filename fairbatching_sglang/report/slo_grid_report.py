"""The SLO-grid report: where FairBatching helps and where it does not (harness/slo_grid.py).

Per cell (TTFT SLO, TPOT SLO): every arm's capacity at the first attainment target, the best
stock arm there (report/tables.best_stock_arm, default and tuned arms), each FairBatching arm's
ratio to it, and every capacity as a fraction of the saturation limit. The report opens with the
verdict matrix; the heatmap shows the same ratios.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fairbatching_sglang.harness.slo_grid import GRID_MANIFEST, cell_dir_name
from fairbatching_sglang.report.build import headline
from fairbatching_sglang.report.collect import load_ab
from fairbatching_sglang.report.tables import (
    all_capacities,
    best_stock_arm,
    is_fairbatching,
    limit_contradiction,
    schedules_text,
    to_markdown,
)

HELPS, HURTS = 1.05, 0.95  # beyond the search tolerance and the device noise


def verdict(ratio: float) -> str:
    if not math.isfinite(ratio):
        return "no verdict"
    if ratio >= HELPS:
        return "helps"
    if ratio <= HURTS:
        return "hurts"
    return "same"


def _cap(doc: dict[str, Any], target: str) -> float:
    if doc.get("status", "ok") != "ok" or target in doc.get("capacity_notes", {}):
        return math.nan  # a lower bound is no capacity to compare
    v = doc.get("capacity", {}).get(target)
    return math.nan if v is None else float(v)


def grid_table(root: Path) -> tuple[pd.DataFrame, float | None]:
    """One row per (cell, arm): capacities, fraction of the limit, the cell's best stock arm
    and the ratio to it (FairBatching arms); and the grid's saturation limit, None when not
    found or contradicted by a cell's capacity (report.tables.limit_contradiction: then it is
    no limit for this workload and no fraction of it is given). Each cell is read once."""
    grid = json.loads((root / GRID_MANIFEST).read_text())
    raw = (grid.get("saturation") or {}).get("limit")
    limit = float(raw) if raw else None
    rows = []
    for ttft, tpot in grid["cells"]:
        cell = root / cell_dir_name(ttft, tpot)
        if not (cell / "ab.json").exists():
            continue
        data = load_ab(cell)
        if limit is not None and limit_contradiction(limit, all_capacities(data)):
            limit = None
        first = data.targets[0] if data.targets else "0.9"
        best = best_stock_arm(data)
        best_cap = _cap(data.capacity.get(best, {}), first) if best else math.nan
        for arm in data.arms:
            doc = data.capacity.get(arm, {})
            cap = _cap(doc, first)
            rows.append(
                {
                    "ttft_slo_ms": ttft,
                    "tpot_slo_ms": tpot,
                    "arm": arm,
                    "target": first,
                    "capacity": cap,
                    **{f"capacity_at_{t}": _cap(doc, t) for t in data.targets},
                    "of_limit": math.nan,  # set below, once every cell has been checked
                    "best_stock_arm": best,
                    "best_stock_capacity": best_cap,
                    "ratio_vs_best_stock": cap / best_cap
                    if is_fairbatching(arm) and best_cap > 0
                    else math.nan,
                }
            )
    if limit is not None:
        for row in rows:
            row["of_limit"] = row["capacity"] / limit
    return pd.DataFrame(rows), limit


def verdict_matrix(table: pd.DataFrame, fb_arm: str) -> pd.DataFrame:
    """TTFT rows x TPOT columns: 'ratio verdict (best stock arm)' for one FairBatching arm."""
    sel = table[table["arm"] == fb_arm]
    out = {}
    for tpot in sorted(sel["tpot_slo_ms"].unique()):
        col = {}
        for _, r in sel[sel["tpot_slo_ms"] == tpot].iterrows():
            ratio = r["ratio_vs_best_stock"]
            text = f"{ratio:.3g} {verdict(ratio)}" if math.isfinite(ratio) else "no verdict"
            col[f"TTFT {r['ttft_slo_ms']:g} ms"] = f"{text} (vs {r['best_stock_arm']})"
        out[f"TPOT {tpot:g} ms"] = col
    return pd.DataFrame(out).rename_axis("TTFT SLO").reset_index()


def plot_heatmap(table: pd.DataFrame, fb_arms: list[str], path: Path, label: str) -> Path:
    """Ratio FairBatching / best stock arm per cell, one panel per FairBatching arm; colour
    centred on 1 (blue: helps, red: hurts), each cell annotated with its ratio."""
    ttfts = sorted(table["ttft_slo_ms"].unique())
    tpots = sorted(table["tpot_slo_ms"].unique())
    n = max(len(fb_arms), 1)
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(2.2 + 1.7 * len(tpots) * n, 2.0 + 1.0 * len(ttfts)),
        constrained_layout=True,
    )
    axes = np.atleast_1d(axes)
    ratios = table.loc[table["arm"].isin(fb_arms), "ratio_vs_best_stock"].to_numpy(float)
    finite = ratios[np.isfinite(ratios)]
    span = max(0.1, float(np.max(np.abs(np.log2(finite)))) if finite.size else 0.1)
    im = None
    for ax, arm in zip(axes, fb_arms, strict=False):
        m = np.full((len(ttfts), len(tpots)), np.nan)
        vs = np.full(m.shape, "", dtype=object)
        sel = table[table["arm"] == arm]
        for _, r in sel.iterrows():
            at = ttfts.index(r["ttft_slo_ms"]), tpots.index(r["tpot_slo_ms"])
            m[at] = r["ratio_vs_best_stock"]
            vs[at] = r["best_stock_arm"] or ""
        im = ax.imshow(np.log2(m), cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
        for i in range(len(ttfts)):
            for j in range(len(tpots)):
                v = m[i, j]
                text = "-" if not math.isfinite(v) else f"{v:.3g}\n{verdict(v)}\nvs {vs[i, j]}"
                dark = math.isfinite(v) and abs(math.log2(v)) > 0.6 * span
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")  # fmt: skip
        ax.set_xticks(range(len(tpots)), [f"{t:g}" for t in tpots])
        ax.set_yticks(range(len(ttfts)), [f"{t:g}" for t in ttfts])
        ax.set_xlabel("TPOT SLO (ms)")
        ax.set_ylabel("TTFT SLO (ms)")
        ax.set_title(f"{arm} / best stock arm", fontsize=9)
    if im is not None:
        bar = fig.colorbar(im, ax=list(axes), shrink=0.8)
        ticks = np.linspace(-span, span, 5)
        bar.set_ticks(ticks, labels=[f"{2**t:.2f}" for t in ticks])
        bar.set_label("capacity ratio (log scale)")
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(f"Capacity ratio per SLO cell ({label})", 80)), fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_grid_report(root: Path, title: str | None = None) -> Path:
    grid = json.loads((root / GRID_MANIFEST).read_text())
    table, limit = grid_table(root)
    table.to_csv(root / "slo_grid.csv", index=False)
    label = grid.get("label", "UNKNOWN BACKEND")
    fb_arms = [a for a in grid.get("arms", []) if is_fairbatching(a)]
    plots = root / "plots"
    plots.mkdir(exist_ok=True)
    png = plot_heatmap(table, fb_arms, plots / "slo_grid.png", label) if len(table) else None
    sat = grid.get("saturation") or {}
    target = table["target"].iloc[0] if len(table) else "0.9"
    lines = [
        headline(grid, title or "SLO grid"),
        "",
        f"**{label}**",
        "",
        f"- Command: `{grid.get('command', '?')}`",
        f"- Versions: `{json.dumps(grid.get('versions', {}))}`",
        f"- Profile: `{grid.get('profile', '?')}`; device model: `{grid.get('device_model', '?')}`",
        f"- Trace: `{grid.get('trace', {}).get('source', '?')}` "
        f"({grid.get('trace', {}).get('num_requests', '?')} requests)",
        f"- Arms: {', '.join(grid.get('arms', []))}",
        "",
        "## Where it helps, where it does not",
        "",
        f"Capacity at {target} attainment of each FairBatching arm / the best stock arm of "
        f"that cell (the stock arm with the highest capacity there). `helps`: >= {HELPS}, "
        f"`hurts`: <= {HURTS}, `same`: in between (within the search tolerance and device "
        "noise). Rows: TTFT SLO; columns: TPOT SLO. Each cell is a full A/B in "
        "`ttft<T>-tpot<P>/` with its own report.",
        "",
    ]
    for arm in fb_arms:
        lines += [f"### {arm}", "", to_markdown(verdict_matrix(table, arm))]
    if limit is None and sat.get("limit"):
        lines += [
            "## Against the device's limit",
            "",
            f"**Not a limit for this workload**: a cell's capacity is above the searched "
            f"x{sat['limit']:.4g} (the window is too short for the backlog criterion, "
            "report.tables.limit_contradiction); no capacity is shown as a fraction of it.",
            "",
        ]
    elif sat.get("limit"):
        lines += [
            "## Against the device's limit",
            "",
            f"Saturation limit x{sat['limit']:.4g} ({sat['offered_rps_at_limit']:.3g} req/s "
            "offered; searched once, SLOs ignored, " + schedules_text(sat) + "; "
            "`saturation/saturation.json`). `of_limit` = capacity / limit: the share of what "
            "the device can do at all that each arm delivers within each cell's SLOs.",
            "",
        ]
    elif sat:
        lines += ["## Against the device's limit", "", f"Not available: {sat.get('error')}", ""]
    if len(table):
        table = table.assign(
            ttft_slo_ms=table["ttft_slo_ms"].map("{:g}".format),
            tpot_slo_ms=table["tpot_slo_ms"].map("{:g}".format),
        )
        wide = table.pivot_table(
            index=["ttft_slo_ms", "tpot_slo_ms"], columns="arm", values="capacity", sort=False
        )
        lines += [
            f"## Capacity per cell (rate scale at {target})",
            "",
            to_markdown(wide.reset_index(), ".4g"),
        ]
        if limit is not None:
            frac = table.pivot_table(
                index=["ttft_slo_ms", "tpot_slo_ms"], columns="arm", values="of_limit", sort=False
            )
            lines += ["## Capacity / saturation limit", "", to_markdown(frac.reset_index(), ".2f")]
    if png is not None:
        lines += ["## Heatmap", "", f"![capacity ratio per SLO cell]({png.relative_to(root)})", ""]
    missing = [
        cell_dir_name(t, p) for t, p in grid["cells"]
        if not (root / cell_dir_name(t, p) / "ab.json").exists()
    ]  # fmt: skip
    if missing:
        lines += [f"Cells without results: {', '.join(missing)}", ""]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

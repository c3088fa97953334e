"""Write report.md, CSV tables and plots for one A/B output directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from fairbatching_sglang.metrics.latency import LATE_FRACTION
from fairbatching_sglang.report.collect import AbData, load_ab
from fairbatching_sglang.report.plots import plot_attainment, plot_cdfs, plot_timeline
from fairbatching_sglang.report.tables import (
    ATTAINMENT_KEYS,
    LATE_FIGURE_TEXT,
    LATENCY_KEYS,
    all_capacities,
    arm_setting,
    best_stock_arm,
    capacity_table,
    detail_table,
    is_fairbatching,
    limit_contradiction,
    ratio_table,
    schedules_text,
    sweep_table,
    to_markdown,
    tuning_table,
)
from fairbatching_sglang.report.validity import validity_table


def headline(idx: dict, title: str | None) -> str:
    """The report's first line: always names the backend kind (SIMULATED / MEASURED ON ... /
    EMULATED), and for an emulated run the device model and the planner's profile."""
    text = title or "A/B report"
    label = idx.get("label", "UNKNOWN BACKEND")
    if idx.get("backend") == "emulated":
        spec = (idx.get("device_model") or {}).get("spec", "?")
        tag = f"EMULATED (device model {spec!r}, planner profile {idx.get('profile', '?')})"
        return f"# {tag}: {text}"
    word = label.split(" (")[0].split(":")[0]
    return f"# {text}" if word.split()[0] in text else f"# {word}: {text}"


def _tuning_lines(data: AbData, tuned: pd.DataFrame) -> list[str]:
    """--tune-baselines: what each stock arm's sweep tried and which setting won."""
    if not len(tuned):
        return []
    first = data.targets[0] if data.targets else "?"
    lines = [
        "## Baseline tuning (--tune-baselines)",
        "",
        "Each stock arm's main knob was swept, with a full capacity search per value (same "
        f"search settings as every arm); `<arm>@tuned` shows the value with the highest "
        f"capacity at {first} (ties: the next target, then the default setting, then the "
        "smaller value). The default setting is always a candidate (its runs are the default "
        "arm's), so a tuned arm is never worse than its default. Sweep points ran as arms "
        "`<arm>@<value>` (their directories and runs are in `runs.csv`, this table in "
        "`tuning.csv`).",
        "",
    ]
    for t in data.tuning.values():
        lines.append(
            f"- `{t['tuned_arm']}`: {t['knob']}={t['best_value']} (default {t['default']}; "
            f"swept {', '.join(str(v) for v in t['values'])}; option `{t['option']}`)"
        )
    lines += ["", to_markdown(tuned)]
    return lines


def _saturation_lines(data: AbData) -> list[str]:
    """The device's saturation limit (harness/saturation.py), when the A/B searched it."""
    sat = data.index.get("saturation")
    if not sat:
        return []
    lines = ["## Saturation limit (the device, SLOs ignored)", ""]
    if sat.get("error") or sat.get("limit") is None:
        why = sat.get("error") or f"not found (bound {sat.get('bound')}: {sat.get('note')})"
        return [*lines, f"Not available: {why}.", ""]
    upper = sat.get("upper")
    contra = limit_contradiction(float(sat["limit"]), all_capacities(data))
    if contra:
        arm, cap = contra
        return [
            *lines,
            f"**Not a limit for this workload**: the search called x{sat['limit']:.4g} the "
            f"highest sustained rate, but `{arm}` served x{cap:.4g} within the SLOs, so the "
            "search was wrong for this workload (harness/saturation.py; e.g. a window too short "
            "for a backlog to show), and no capacity is shown as a fraction of it. Probes: "
            "`saturation/saturation.json`.",
            "",
        ]
    lines += [
        f"Limit **x{sat['limit']:.4g}** of the trace's rate "
        f"({sat['offered_rps_at_limit']:.3g} req/s offered"
        + (f"; x{upper:.4g} was not sustained" if upper else "; the search ceiling held")
        + "). Arm-independent: searched with fixed schedules, SLOs ignored, "
        + schedules_text(sat)
        + f"; a rate is sustained when its last {LATE_FRACTION:.0%} of arrivals "
        + LATE_FIGURE_TEXT.get(sat.get("late_figure", ""), "finish")
        + ", at the median, no later after arriving than the same requests in a low-load "
        f"reference run (x{sat['reference_rate']:.4g}: {_fmt_s(sat.get('reference_late_s'))}) "
        f"plus {sat['backlog_tol']:.0%} of the run's span, i.e. its backlog did not grow "
        "(harness/saturation.py). `of_limit_at_T` above = capacity / limit: how much of what the "
        "device can do at all each arm delivers within the SLOs. Probes: "
        "`saturation/saturation.json`.",
        "",
    ]
    above = {a: c for a, c in all_capacities(data).items() if c and c > float(sat["limit"])}
    if above:
        names = ", ".join(f"`{a}` x{c:.4g}" for a, c in above.items())
        lines += [
            f"Above the limit: {names}. The limit is SGLang's: its admission reserves KV for "
            "the future output of every new and running request (up to 4096 tokens each, at "
            "ratio 1 under the ignore_eos the replay uses), which binds on long outputs; "
            "`sarathi` is the simulator's "
            "vLLM-style baseline, which reserves none and preempts instead, so it can admit "
            "more than any SGLang schedule. Any other arm above it means the window is too "
            "short for a backlog to break the SLOs.",
            "",
        ]
    return lines


def _fmt_s(v: object) -> str:
    if not (isinstance(v, int | float) and math.isfinite(v)):
        return "n/a"
    return f"{v:.1f} s" if v >= 1.0 else f"{v * 1000.0:.0f} ms"


def _ratio_lines(data: AbData, ratios: pd.DataFrame, rate: float | None) -> list[str]:
    """Headline ratios against the best stock arm, then against every other stock arm."""
    best = best_stock_arm(data)
    where = f" (at the common rate x{rate:g})" if rate is not None else ""
    pool = "default and tuned stock arms" if data.tuning else "stock arms"
    if best is None:
        intro = f"No stock arm has a found capacity: there is no best stock arm among the {pool}."
    else:
        caps = data.capacity.get(best, {}).get("capacity", {})
        setting = arm_setting(data, best)
        first = data.targets[0] if data.targets else "0.9"
        intro = (
            f"Best stock arm: **`{best}`**{f' ({setting})' if setting else ''}, capacity "
            f"{caps.get(first, float('nan')):.4g} at {first}: the highest at the first target "
            f"among the {pool} ({', '.join(a for a in data.arms if not is_fairbatching(a))}). "
            "Every headline ratio is against it."
        )
    lines = [
        "## FairBatching / best stock arm",
        "",
        intro,
        "",
        "capacity ratio > 1: FairBatching sustains more load; TTFT/TPOT p99 ratio < 1: "
        f"FairBatching's tail is lower{where}.",
        "",
    ]
    if len(ratios):
        head = ratios[ratios["vs_best_stock"]].drop(columns="vs_best_stock")
        rest = ratios[~ratios["vs_best_stock"]].drop(columns="vs_best_stock")
        lines += [to_markdown(head)]
        if len(rest):
            lines += ["### Against every other stock arm (for reference)", "", to_markdown(rest)]
    else:
        lines += [to_markdown(ratios)]
    return lines


def write_report(root: Path, title: str | None = None) -> Path:
    data = load_ab(root)
    idx = data.index
    label = idx.get("label", "UNKNOWN BACKEND")
    rate = data.detail_rate
    plots = root / "plots"
    plots.mkdir(exist_ok=True)

    det = detail_table(data, rate) if rate is not None else None
    cap = capacity_table(data)
    ratios = ratio_table(data, rate)
    sweep = sweep_table(data)
    tuned = tuning_table(data)
    if len(tuned):
        tuned.to_csv(root / "tuning.csv", index=False)
    cap.to_csv(root / "capacity.csv", index=False)
    ratios.to_csv(root / "ratios.csv", index=False)
    sweep.to_csv(root / "runs.csv", index=False)
    if det is not None:
        det.to_csv(root / "detail.csv", index=False)

    att_png = plot_attainment(data, plots / "attainment_vs_rate.png", label)
    cdf_png = plot_cdfs(data, rate, plots / "cdf_ttft_tpot.png", label) if rate else None
    tl_png, tl_missing = (
        plot_timeline(data, rate, plots / "timeline.png", label) if rate else (None, data.arms)
    )

    slo = idx.get("slo", {})
    trace = idx.get("trace", {})
    lines = [
        headline(idx, title),
        "",
        f"**{label}**",
        "",
        f"- Command: `{idx.get('command', '?')}`",
        f"- Versions: `{json.dumps(idx.get('versions', {}))}`",
        f"- Profile: `{idx.get('profile', '?')}`",
        f"- Trace: `{trace.get('source', '?')}` ({trace.get('num_requests', '?')} requests, "
        f"span {trace.get('span_s', float('nan')):.0f} s; transformations: "
        f"{', '.join(trace.get('transformations', [])) or 'none'})",
        f"- SLO: TTFT {slo.get('ttft_slo_ms', '?')} ms, TPOT {slo.get('tpot_slo_ms', '?')} ms "
        "(attainment = share of all requests meeting both; failed requests count as misses)",
        f"- Arms: {', '.join(data.arms)}",
        "",
        "## Capacity (highest rate scale meeting the attainment target)",
        "",
        "Rate scale 1 = the trace's own rate; found by doubling then bisection, every probe is "
        "listed in `runs.csv` and `<arm>/capacity.json`. bound `lower`: the search stopped at "
        "an invalid probe (not a measurement, see Validity), so the capacity is at least that; "
        "`unknown`: no valid passing probe; ratios involving either are left out.",
        "",
        to_markdown(cap),
        *_saturation_lines(data),
        *_tuning_lines(data, tuned),
        *_ratio_lines(data, ratios, rate),
    ]
    if det is not None:
        lat_cols = ["arm", "status"] + [f"{k}_p{p}" for k in LATENCY_KEYS for p in (50, 90, 99)]
        att_cols = ["arm", *ATTAINMENT_KEYS]
        lines += [
            f"## Latency at the common rate x{rate:g} (ms)",
            "",
            to_markdown(det.reindex(columns=lat_cols), ".1f"),
            f"## Attainment and goodput at x{rate:g}",
            "",
            to_markdown(det.reindex(columns=att_cols), ".4g"),
        ]
    val = validity_table(data)
    if len(val):
        lines += [
            "## Validity of the emulation (CPU starvation)",
            "",
            "The emulated device charges only device time; the scheduler, tokenizer manager, "
            "detokenizer and the replay client run on this machine's CPU. From the device step "
            "log of the replay window: device busy time, the idle time the CPU caused (the "
            "device had work but no launched batch) and late result processing, each relative "
            "to busy time, p99 of late_ms, and the client's dispatch lag. Runs beyond the "
            "thresholds are `invalid` (not measurements; thresholds in `run.json`, "
            "harness/README.md).",
            "",
            to_markdown(val, ".3g"),
        ]
    lines += ["## Plots", "", f"![attainment vs rate]({att_png.relative_to(root)})", ""]
    if cdf_png is not None:
        lines += [f"![TTFT and TPOT CDFs]({cdf_png.relative_to(root)})", ""]
    if tl_png is not None:
        lines += [f"![batch composition timeline]({tl_png.relative_to(root)})", ""]
    if tl_missing:
        lines += [
            f"Timeline omitted for {', '.join(tl_missing)}: no step data (the simulator writes "
            "steps.parquet; a GPU run has one only when the server wrote a FairBatching step "
            "log; an emulated run has the device's step log).",
            "",
        ]
    failed = data.runs[data.runs["status"] != "ok"] if len(data.runs) else data.runs
    if len(failed):
        lines += [
            "## Runs that did not complete normally",
            "",
            to_markdown(failed[["arm", "rate_scale", "status", "error"]]),
        ]
    for arm, doc in data.capacity.items():
        if doc.get("status") not in (None, "ok"):
            lines += [
                f"- arm `{arm}`: {doc['status']}: {(doc.get('error') or '').splitlines()[:1]}"
            ]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

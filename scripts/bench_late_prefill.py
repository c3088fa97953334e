#!/usr/bin/env python3
"""Late-prefill order benchmark (issue #13): what deferring late prefills buys and costs.

FairBatching orders new prefills by TTFT slack. "edf" (the default) serves the most late first;
under a surge every queued request then turns late together. "deprioritize" serves the
prefills that can still meet their TTFT first and defers the late ones, for at most
`late_prefill_max_defer_slo` TTFT SLOs past their deadline (None: no bound). Per trace, under
the realistic device (the planner is not told), simulated with the overlap loop:

- 90%-attainment capacity of fairbatching with each order / bound, and of Sarathi at its tuned
  token budget (results/robustness), searched as bench_robustness.py does;
- at Sarathi's 90% capacity: attainment, TPOT attainment, TTFT p99 / p99.9 / max of each.

Every probe is a line of probes.jsonl in --out (an interrupted run resumes from it); the tables
go to late_prefill.csv and README.md.

    python scripts/bench_late_prefill.py --out results/late-prefill-order [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_robustness as rb

ROOT = rb.ROOT
DEVICE = rb.REALISTIC
# Sarathi's best token budget per trace under the realistic device (results/robustness).
SARATHI_BUDGET = {"synthetic-code": 1024, "azure-code": 1024, "azure-conv": 2048, "mooncake": 1024}
# name -> FairBatchingConfig overrides (the closed loop stays on: the shipped default).
VARIANTS: dict[str, dict[str, Any]] = {
    "fairbatching": {},
    "defer-1slo": {"late_prefill_order": "deprioritize", "late_prefill_max_defer_slo": 1.0},
    "defer-2slo": {"late_prefill_order": "deprioritize", "late_prefill_max_defer_slo": 2.0},
    "defer-3slo": {"late_prefill_order": "deprioritize", "late_prefill_max_defer_slo": 3.0},
    "defer-unbounded": {"late_prefill_order": "deprioritize"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "late-prefill-order")
    ap.add_argument("--traces", default=",".join(SARATHI_BUDGET))
    rb.add_search_options(ap)
    args = ap.parse_args()
    traces = [t for t in args.traces.split(",") if t]
    for t in traces:
        if t not in SARATHI_BUDGET:
            ap.error(f"--traces: unknown trace {t!r}; known: {', '.join(SARATHI_BUDGET)}")
        if not rb.TRACES[t][0].exists():
            ap.error(f"--traces: {t}: file {rb.TRACES[t][0]} not found (set TRACES_DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    store = rb.ProbeStore(args.out / "probes.jsonl")
    ctx: dict[str, dict[str, Any]] = {}
    for t in traces:
        start_s, duration_s = rb.busiest_window(t, args.slice_min)
        ctx[t] = {
            "start_s": start_s,
            "duration_s": duration_s,
            "devices": {DEVICE: DEVICE},
            "ttft_tail": True,  # p99.9 and max TTFT: the cost of deferring
        }
        print(f"{t}: window [{start_s:.0f}, {start_s + duration_s:.0f}) s", flush=True)

    def sarathi(t: str) -> rb.ArmSpec:
        return rb.ArmSpec(f"sarathi@{SARATHI_BUDGET[t]}", "sarathi", budget=SARATHI_BUDGET[t])

    t_start = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        keys = [(t, DEVICE, a) for t in traces for a in (sarathi(t), *fb_arms())]
        print(f"== capacity searches ({len(keys)})", flush=True)
        rb.run_searches(
            [rb.Search(k, 1.0, args.rel_tol, args.max_probes) for k in keys], store, ctx, pool
        )
        extra = []
        for t in traces:
            rate = rb.capacity(store, t, DEVICE, sarathi(t).name)
            if rate is not None:
                extra += [rb.Search((t, DEVICE, a), rate, args.rel_tol, 1) for a in fb_arms()]
        print(f"== at Sarathi's capacity ({len(extra)})", flush=True)
        rb.run_searches(extra, store, ctx, pool)
    write_report(args, traces, ctx, store, sarathi, time.time() - t_start)
    return 0


def fb_arms() -> list[rb.ArmSpec]:
    return [rb.ArmSpec(v, "fairbatching", fb=tuple(o.items())) for v, o in VARIANTS.items()]


def write_report(args, traces, ctx, store, sarathi, wall_s: float) -> None:
    rows: list[dict[str, Any]] = []
    for t in traces:
        sar = sarathi(t).name
        sar_cap = rb.capacity(store, t, DEVICE, sar)
        for name in (sar, *VARIANTS):
            cap = rb.capacity(store, t, DEVICE, name)
            at = store.records.get((t, DEVICE, name, round(sar_cap, 6))) if sar_cap else None
            rows.append(
                {
                    "trace": t,
                    "arm": name,
                    "capacity_x": cap,
                    "capacity_vs_sarathi": cap / sar_cap if cap and sar_cap else math.nan,
                    "rate_at_sarathi_capacity": sar_cap,
                    **{
                        k: (at or {}).get(k, math.nan)
                        for k in (
                            "attainment",
                            "tpot_attainment",
                            "ttft_p99_ms",
                            "ttft_p999_ms",
                            "ttft_max_ms",
                        )
                    },
                }
            )
    import pandas as pd

    from fairbatching_sglang.profiles.device_spec import REALISTIC_PARAMS

    df = pd.DataFrame(rows)
    df.to_csv(args.out / "late_prefill.csv", index=False)
    cmd = "python scripts/bench_late_prefill.py " + " ".join(sys.argv[1:])
    lines = [
        "# SIMULATED: deferring late prefills (late_prefill_order) in FairBatching",
        "",
        f"Command: `{cmd}`",
        f"Python {platform.python_version()}, profile `{rb.PROFILE}` (the planner's offline "
        f"model), device `{DEVICE}` (= `profile:{REALISTIC_PARAMS}`, the planner is not "
        "told), TPOT SLO 50 ms, TTFT SLO per trace as results/robustness, target 90% "
        f"attainment, SimConfig(overlap_schedule=True), closed loop on in every FairBatching "
        f"row, wall {wall_s / 60:.0f} min.",
        "",
        "Windows (busiest 20 min by request count): "
        + "; ".join(
            f"{t} [{c['start_s']:.0f}, {c['start_s'] + c['duration_s']:.0f}) s"
            for t, c in ctx.items()
        ),
        "",
        "Rows: `fairbatching` = the shipped default (edf); `defer-Nslo` = "
        "`late_prefill_order=deprioritize, late_prefill_max_defer_slo=N` (arm "
        "`fairbatching-defer-late` is N = 3); `defer-unbounded` = no bound.",
        "",
        "| trace | arm | 90% capacity | vs Sarathi | at Sarathi's capacity: attainment "
        "| TPOT att | TTFT p99 ms | p99.9 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    for r in rows:
        lines.append(
            f"| {r['trace']} | {r['arm']} | {f(r['capacity_x'], '.3f')} | "
            f"{f(r['capacity_vs_sarathi'], '.2f')} | {f(r['attainment'], '.3f')} | "
            f"{f(r['tpot_attainment'], '.3f')} | {f(r['ttft_p99_ms'], '.0f')} | "
            f"{f(r['ttft_p999_ms'], '.0f')} | {f(r['ttft_max_ms'], '.0f')} |"
        )
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    (args.out / "run.json").write_text(
        json.dumps(
            {
                "command": cmd,
                "python": platform.python_version(),
                "profile": rb.PROFILE,
                "device_model": DEVICE,
                "variants": VARIANTS,
                "sarathi_budget": SARATHI_BUDGET,
                "windows": ctx,
                "wall_s": wall_s,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}/README.md")


if __name__ == "__main__":
    raise SystemExit(main())

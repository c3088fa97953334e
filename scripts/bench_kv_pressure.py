#!/usr/bin/env python3
"""KV-pressure benchmark (issue #13 item 3): does FairBatching retract more than stock?

With ignore_eos (how the harness replays traces) SGLang reserves every request's whole output,
so no arm overcommits the KV and none retracts. Real traffic stops at EOS: SGLang then reserves
only `new_token_ratio` of the remaining output, overcommits on purpose and retracts when it was
wrong. This runs that mode (SimConfig(ignore_eos=False)) on the busiest window of each trace,
under the realistic device, at the profile's KV and at a squeezed KV (a fraction of it: a
bigger model or longer contexts on the same GPU), over a grid of rates, for sglang-default,
sglang-mixed and fairbatching, and prints attainment and retractions per rate. Target:
fairbatching's retractions <= sglang-mixed's at every rate.

    python scripts/bench_kv_pressure.py --out results/kv-pressure [--traces azure-conv,...]
        [--kv-fractions 1,0.1] [--rates 0.5,1,1.5,2,2.5,3] [--jobs 2]

Every probe is a line of probes.jsonl in --out (a rerun resumes from it); the table goes to
kv_pressure.csv and README.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_robustness import PROFILE, TPOT_SLO_MS, TRACES, ProbeStore, busiest_window

ARMS = ("sglang-default", "sglang-mixed", "fairbatching")
DEVICE = "realistic"


def probe(task: dict[str, Any]) -> dict[str, Any]:
    from fairbatching_sglang.core import SloTable, SloTargets
    from fairbatching_sglang.profiles import load_profile
    from fairbatching_sglang.profiles.device_spec import parse_device_model
    from fairbatching_sglang.sim.config import SimConfig
    from fairbatching_sglang.sim.runner import run_simulation
    from fairbatching_sglang.workload import load_trace

    profile = load_profile(PROFILE)
    table = load_trace(
        TRACES[task["trace"]][0], start_s=task["start_s"], duration_s=task["duration_s"]
    )
    kv = max(1, int(profile.kv_capacity_tokens * task["kv_fraction"]))
    t0 = time.perf_counter()
    res = run_simulation(
        table,
        task["arm"],
        profile,
        slo_table=SloTable(SloTargets(TRACES[task["trace"]][1], TPOT_SLO_MS)),
        rate_scale=task["rate"],
        sim_config=SimConfig(overlap_schedule=True, ignore_eos=False, kv_capacity_tokens=kv),
        device_model=parse_device_model(DEVICE),
    )
    s = res.summary
    return {
        **task,
        "kv_capacity_tokens": kv,
        "attainment": s.get("slo_attainment", 0.0),
        "num_retractions": res.engine.num_retractions,
        "num_finished": res.engine.num_finished,
        "wall_s": time.perf_counter() - t0,
    }


def key(r: dict[str, Any]) -> tuple[str, float, str, float]:
    return (r["trace"], float(r["kv_fraction"]), r["arm"], float(r["rate"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/kv-pressure"))
    ap.add_argument("--traces", default="azure-conv,azure-code,synthetic-code")
    ap.add_argument("--kv-fractions", default="1,0.1")
    ap.add_argument("--rates", default="0.5,1,1.5,2,2.5,3")
    ap.add_argument("--slice-min", type=float, default=15.0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    traces = [t.strip() for t in args.traces.split(",") if t.strip()]
    bad = [t for t in traces if t not in TRACES]
    if bad:
        ap.error(f"--traces: unknown {bad}; known: {', '.join(TRACES)}")
    try:
        fractions = [float(x) for x in args.kv_fractions.split(",")]
        rates = [float(x) for x in args.rates.split(",")]
    except ValueError as exc:
        ap.error(f"--kv-fractions / --rates: {exc}")
    if any(not 0 < f <= 1 for f in fractions) or any(r <= 0 for r in rates):
        ap.error("--kv-fractions must be in (0, 1] and --rates > 0")
    for t in traces:
        if not TRACES[t][0].is_file():
            ap.error(f"--traces {t}: {TRACES[t][0]} not found (set TRACES_DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    store = ProbeStore(args.out / "probes.jsonl", key=key, name="bench_kv_pressure")
    done = store.records
    windows = {t: busiest_window(t, args.slice_min) for t in traces}
    tasks = [
        {"trace": t, "start_s": windows[t][0], "duration_s": windows[t][1], "kv_fraction": f,
         "arm": a, "rate": r}
        for t in traces for f in fractions for r in rates for a in ARMS
    ]  # fmt: skip
    todo = [x for x in tasks if key(x) not in done]
    print(f"{len(tasks)} probes, {len(tasks) - len(todo)} already in {store.path}", flush=True)
    t_start = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(probe, x) for x in todo]
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            store.add(r)
            print(
                f"  [{i}/{len(todo)} {time.time() - t_start:6.0f}s] {r['trace']:14s} "
                f"kv x{r['kv_fraction']:<5g} {r['arm']:15s} x{r['rate']:<5g} "
                f"att={r['attainment']:.3f} retr={r['num_retractions']}",
                flush=True,
            )
    write_report(args, traces, fractions, rates, windows, done)
    return 0


def write_report(args, traces, fractions, rates, windows, done) -> None:
    rows = []
    missed = []
    for t in traces:
        for f in fractions:
            for r in rates:
                cell = {a: done[(t, f, a, r)] for a in ARMS}
                fb, mixed = cell["fairbatching"], cell["sglang-mixed"]
                ok = fb["num_retractions"] <= mixed["num_retractions"]
                if not ok:
                    missed.append(
                        f"{t} kv x{f:g} rate x{r:g}: fairbatching {fb['num_retractions']} > "
                        f"sglang-mixed {mixed['num_retractions']}"
                    )
                rows.append(
                    {"trace": t, "kv_fraction": f, "kv_capacity_tokens": fb["kv_capacity_tokens"],
                     "rate": r, "target_met": ok,
                     **{f"{a}_attainment": cell[a]["attainment"] for a in ARMS},
                     **{f"{a}_retractions": cell[a]["num_retractions"] for a in ARMS}}
                )  # fmt: skip
    import pandas as pd

    from fairbatching_sglang.profiles.device_spec import REALISTIC_PARAMS

    pd.DataFrame(rows).to_csv(args.out / "kv_pressure.csv", index=False)
    lines = [
        "# SIMULATED KV pressure: retractions with EOS-style reservation (ignore_eos off)",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Python {platform.python_version()}, profile `{PROFILE}` (planner and device prices), "
        f"device model `{DEVICE}` (profile:{REALISTIC_PARAMS}), "
        "SimConfig(overlap_schedule=True, ignore_eos=False): SGLang reserves "
        "new_token_ratio of each running request's remaining output and retracts when the KV "
        "runs out. TPOT SLO 50 ms. Windows (busiest by request count): "
        + "; ".join(f"{t} [{w[0]:.0f}, {w[0] + w[1]:.0f}) s" for t, w in windows.items())
        + ".",
        "",
        "| trace | KV (tokens) | rate | attainment default / mixed / fb | retractions default / "
        "mixed / fb |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        att = " / ".join(f"{row[f'{a}_attainment']:.3f}" for a in ARMS)
        ret = " / ".join(str(row[f"{a}_retractions"]) for a in ARMS)
        lines.append(
            f"| {row['trace']} | {row['kv_capacity_tokens']} (x{row['kv_fraction']:g}) | "
            f"x{row['rate']:g} | {att} | {ret} |"
        )
    lines += ["", "## Target: fairbatching retractions <= sglang-mixed's at every rate", ""]
    lines += [f"- MISSED: {m}" for m in missed] or ["- met in every cell"]
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())

"""Cluster capacity report: markdown table, CSV, attainment-vs-rate plot, from the search's files.

Reads <dir>/cluster.json and <dir>/n<N>/<router>/<arm>.json (harness/cluster_capacity.py) and
writes report.md, capacity.csv, probes.csv and plots/attainment_n<N>.png into <dir>.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from fairbatching_sglang.report.tables import _ratio

BASELINES = (("round-robin", "sglang-mixed"), ("least-outstanding", "sglang-mixed"))


def load_docs(out_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    index = json.loads((out_dir / "cluster.json").read_text())
    docs = [json.loads(p.read_text()) for p in sorted(out_dir.glob("n*/*/*.json"))]
    return index, docs


def capacity_frame(index: dict[str, Any], docs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per combination: capacities, ratios vs the baselines, metrics at the common rate."""
    trace_rps = float(index.get("trace", {}).get("mean_rate_rps", float("nan")))
    rows = []
    for d in docs:
        n = d["num_replicas"]
        common = float(index.get("common_rate", {}).get(str(n), float("nan")))
        at = next((p for p in d["probes"] if math.isclose(p["rate_scale"], common)), {})
        row: dict[str, Any] = {
            "replicas": n,
            "router": d["router"],
            "arm": d["arm"],
            "cap90": d["capacity"].get("0.9"),
            "cap99": d["capacity"].get("0.99"),
            "common_rate": common,
        }
        row["cap90_rps_per_replica"] = _mul(row["cap90"], trace_rps)
        row["cap90_rps_cluster"] = _mul(row["cap90"], trace_rps * n)
        for key in (
            "slo_attainment",
            "ttft_attainment",
            "tpot_attainment",
            "ttft_ms_p50",
            "ttft_ms_p99",
            "tpot_ms_p50",
            "tpot_ms_p99",
            "num_router_queued",
        ):
            row[f"common_{key}"] = at.get(key)
        per = at.get("requests_per_replica")
        row["common_requests_per_replica"] = "/".join(str(x) for x in per) if per else None
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for router, arm in BASELINES:
        base = df[(df.router == router) & (df.arm == arm)].set_index("replicas")["cap90"]
        col = f"ratio_vs_{'rr' if router == 'round-robin' else 'lo'}_mixed"
        df[col] = [_ratio(c, base.get(n)) for c, n in zip(df["cap90"], df["replicas"], strict=True)]
    return df.sort_values(["replicas", "router", "arm"]).reset_index(drop=True)


def probes_frame(docs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for d in docs:
        for p in d["probes"]:
            rows.append(
                {
                    "replicas": d["num_replicas"],
                    "router": d["router"],
                    "arm": d["arm"],
                    "rate_scale": p["rate_scale"],
                    "slo_attainment": p.get("slo_attainment"),
                    "ttft_attainment": p.get("ttft_attainment"),
                    "tpot_attainment": p.get("tpot_attainment"),
                    "ttft_ms_p99": p.get("ttft_ms_p99"),
                    "tpot_ms_p99": p.get("tpot_ms_p99"),
                    "num_router_queued": p.get("num_router_queued"),
                    "wall_s": p.get("wall_s"),
                }
            )
    return pd.DataFrame(rows)


def _mul(a: Any, b: float) -> float | None:
    return None if a is None else float(a) * b


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def plot_attainment(probes: pd.DataFrame, n: int, path: Path, label: str) -> Path:
    sel = probes[probes.replicas == n]
    routers = sorted(sel.router.unique())
    arms = sorted(sel.arm.unique())
    styles = ["-", "--", ":", "-."]
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 5))
    for ri, router in enumerate(routers):
        for ai, arm in enumerate(arms):
            s = sel[(sel.router == router) & (sel.arm == arm)].sort_values("rate_scale")
            if len(s):
                ax.plot(
                    s.rate_scale,
                    s.slo_attainment,
                    ls=styles[ai % len(styles)],
                    color=cmap(ri % 10),
                    marker="o",
                    ms=2.5,
                    lw=1,
                    label=f"{router} / {arm}",
                )
    for t in (0.9, 0.99):
        ax.axhline(t, color="grey", lw=0.7, ls="--")
    ax.set_xlabel("per-replica rate scale (x trace rate per replica)")
    ax.set_ylabel("SLO attainment (TTFT and TPOT)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{n} replicas: attainment vs rate ({label})", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def build_cluster_report(out_dir: Path, title: str | None = None) -> Path:
    index, docs = load_docs(out_dir)
    cap = capacity_frame(index, docs)
    probes = probes_frame(docs)
    cap.to_csv(out_dir / "capacity.csv", index=False)
    probes.to_csv(out_dir / "probes.csv", index=False)
    label = "SIMULATED"
    for n in sorted(cap.replicas.unique()) if len(cap) else []:
        plot_attainment(probes, int(n), out_dir / "plots" / f"attainment_n{int(n)}.png", label)
    (out_dir / "report.md").write_text(render_markdown(index, cap, title))
    return out_dir / "report.md"


def _pivot(cap: pd.DataFrame, col: str, title: str) -> list[str]:
    arms = sorted(cap.arm.unique())
    heads = [f"{n} x {a}" for n in sorted(cap.replicas.unique()) for a in arms]
    lines = [f"## {title}", "", "| router | " + " | ".join(heads) + " |"]
    lines.append("|---|" + "---|" * len(heads))
    for router in sorted(cap.router.unique()):
        cells = []
        for n in sorted(cap.replicas.unique()):
            for a in arms:
                v = cap[(cap.router == router) & (cap.replicas == n) & (cap.arm == a)][col]
                cells.append(_fmt(v.iloc[0] if len(v) else None))
        lines.append(f"| {router} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _mix_lines(index: dict[str, Any]) -> list[str]:
    """The heterogeneous-replicas paragraph (empty for one profile)."""
    names = index.get("replica_profiles")
    if not names:
        return []
    details = index.get("replica_profile_details", {})
    lines = [
        "**Heterogeneous replicas**: replica i prices its steps with its own cost profile and "
        "holds its own KV capacity; FairBatching on it plans with that profile, and the "
        "admission-budget router estimates its budget with it. The other routers see only what "
        "they see on homogeneous replicas (counts, token loads, gen_throughput).",
        "",
        "| replica | profile | GPU | KV capacity (tokens) |",
        "|---|---|---|---|",
    ]
    for i, n in enumerate(names):
        d = details.get(n, {})
        lines.append(f"| {i} | `{n}` | {d.get('gpu', '-')} | {d.get('kv_capacity_tokens', '-')} |")
    lines += [
        "",
        "The rate scale keeps its definition (the trace compressed N*s times, N = "
        f"{len(names)}), but the replicas now differ in capacity, so s is the mean load per "
        "replica, not a load each replica can carry equally.",
        "",
    ]
    return lines


def _device_lines(index: dict[str, Any]) -> list[str]:
    """What steps really cost vs what the planners believe (DESIGN.md section 4)."""
    dev = index.get("device_model") or {}
    planner = index.get("planner_profile") or index.get("profile", {}).get("name")
    spec = dev.get("spec", "profile")
    seeds = dev.get("replica_seeds")
    seed_note = (
        f" Each replica has its own device; seeds {seeds} (replica 0: the spec's seed, replica "
        "i > 0: `SeedSequence([seed, i])`), so noise differs across replicas."
        if seeds and dev.get("kind") == "profile" and not _exact(dev)
        else ""
    )
    return [
        f"Device model (what a step really costs): `{spec}` "
        f"({dev.get('description') or 'the profile exactly'}); planner's profile: "
        f"`{planner}`.{seed_note}",
        "",
    ]


def _exact(dev: dict[str, Any]) -> bool:
    return not any(dev.get(k) for k in ("bias", "noise", "jitter_ms", "shift"))


def render_markdown(index: dict[str, Any], cap: pd.DataFrame, title: str | None) -> str:
    prof = index.get("profile", {})
    trace = index.get("trace", {})
    mix = bool(index.get("replica_profiles"))
    lines = [
        f"# {title or 'SIMULATED cluster capacity: routing x scheduling'}",
        "",
        "**SIMULATED** (virtual-time replay, `fairbatching_sglang.sim.cluster`, cost profile "
        f"`{prof.get('name')}`): not measured on a GPU.",
        "",
        *_device_lines(index),
        f"Command: `{index.get('command')}`",
        "",
        f"Trace: `{trace.get('source')}` ({trace.get('num_requests')} requests over "
        f"{_fmt(trace.get('span_s'), '.0f')} s, {_fmt(trace.get('mean_rate_rps'), '.2f')} req/s; "
        f"transformations: {trace.get('transformations')}). SLO: TTFT "
        f"{index.get('slo', {}).get('ttft_slo_ms')} ms, TPOT "
        f"{index.get('slo', {}).get('tpot_slo_ms')} ms; attainment = share of all requests "
        "meeting both (TTFT counted from arrival at the router).",
        "",
        "Rate scale s is **per replica**: N replicas replay the trace compressed N*s times, so "
        "each replica sees on average the load one instance sees at s, and capacities compare "
        "directly with the single-instance reports. Capacity = highest s with attainment >= "
        "target (doubling, then bisection; `-` = not found).",
        "",
        "Routers: `round-robin`; `least-outstanding` (fewest in-flight requests, the router's own "
        "count); `power-of-two` (SGLang-router-like, two seeded draws, lower token load = KV in "
        "use + waiting prompt tokens); `least-load` (smg's least_load: waiting uncached tokens + "
        "tokens dispatched since the poll over gen_throughput, plus a KV-pressure barrier; "
        "gen_throughput = SGLang's decode tokens/s over its last 40 decode steps); "
        "`admission-budget` (FairBatching: largest prefill admission budget that fits the "
        "prompt, else queue at the router). Loads are polled every "
        f"{index.get('load_poll_interval_ms')} ms (smg's default worker_load_check_interval); "
        "`@fresh` rows read every replica's state at each decision (an idealised bound).",
        "",
        *_mix_lines(index),
    ]
    if len(cap):
        lines += _pivot(cap, "cap90", "Capacity at 90% attainment (per-replica rate scale)")
        lines += _pivot(cap, "cap99", "Capacity at 99% attainment (per-replica rate scale)")
    for n in sorted(cap.replicas.unique()) if len(cap) else []:
        sel = cap[cap.replicas == n]
        common = sel.common_rate.iloc[0]
        lines += [
            f"## {n} replicas",
            "",
            "| router | arm | cap @90% | cap @99% | req/s per replica @90% | cluster req/s @90% "
            "| vs RR+mixed | vs LO+mixed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, r in sel.iterrows():
            lines.append(
                f"| {r.router} | {r.arm} | {_fmt(r.cap90)} | {_fmt(r.cap99)} | "
                f"{_fmt(r.cap90_rps_per_replica, '.2f')} | {_fmt(r.cap90_rps_cluster, '.1f')} | "
                f"{_fmt(r.ratio_vs_rr_mixed, '.2f')} | {_fmt(r.ratio_vs_lo_mixed, '.2f')} |"
            )
        lines += [
            "",
            f"At the common rate s = {common:g} (the 90% capacity of round-robin + sglang-mixed "
            f"at {n} replicas):",
            "",
            "| router | arm | attainment | TTFT att. | TPOT att. | TTFT p50 | TTFT p99 | "
            "TPOT p50 | TPOT p99 | router-queued |" + (" requests per replica |" if mix else ""),
            "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if mix else ""),
        ]
        for _, r in sel.iterrows():
            lines.append(
                f"| {r.router} | {r.arm} | {_fmt(r.common_slo_attainment)} | "
                f"{_fmt(r.common_ttft_attainment)} | {_fmt(r.common_tpot_attainment)} | "
                f"{_fmt(r.common_ttft_ms_p50, '.0f')} | {_fmt(r.common_ttft_ms_p99, '.0f')} | "
                f"{_fmt(r.common_tpot_ms_p50, '.1f')} | {_fmt(r.common_tpot_ms_p99, '.1f')} | "
                f"{_fmt(r.common_num_router_queued, '.0f')} |"
                + (f" {r.common_requests_per_replica or '-'} |" if mix else "")
            )
        lines += ["", f"![attainment vs rate](plots/attainment_n{n}.png)", ""]
    versions = index.get("versions", {})
    profiles = list(index.get("replica_profile_details", {}).values()) if mix else [prof]
    lines += [
        "## Provenance",
        "",
        f"- versions: {versions}",
        *(
            f"- profile: `{p.get('name')}` ({p.get('gpu')}, {p.get('model')}, TP "
            f"{p.get('tp_size')}), coefficients {p.get('coefficients')}"
            for p in profiles
        ),
        f"- capacity search: {index.get('capacity_search')}",
        "- files: `capacity.csv` (one row per combination), `probes.csv` (every probe), "
        "`n<N>/<router>/<arm>.json` (raw), `cluster.json` / `run.json` (configuration).",
        "",
    ]
    return "\n".join(lines)

"""Report tables as DataFrames, rendered to markdown or CSV by the caller."""

from __future__ import annotations

import math

import pandas as pd

from fairbatching_sglang.report.collect import AbData

LATENCY_KEYS = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
ATTAINMENT_KEYS = (
    "slo_attainment",
    "ttft_attainment",
    "tpot_attainment",
    "envelope_attainment",
    "goodput_rps",
    "throughput_rps",
    "num_failed",
)


def is_fairbatching(arm: str) -> bool:
    return arm.startswith("fairbatching")


def detail_table(data: AbData, rate: float) -> pd.DataFrame:
    """Latency percentiles, attainment and goodput of every arm at one rate."""
    rows = []
    for arm in data.arms:
        sel = data.runs[(data.runs["arm"] == arm) & (data.runs["rate_scale"] == rate)]
        row: dict[str, object] = {"arm": arm}
        if not len(sel):
            row["status"] = "missing"
            rows.append(row)
            continue
        r = sel.iloc[0]
        row["status"] = r["status"]
        for key in LATENCY_KEYS:
            for p in (50, 90, 99):
                row[f"{key}_p{p}"] = r.get(f"{key}_p{p}", math.nan)
        for key in ATTAINMENT_KEYS:
            row[key] = r.get(key, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def capacity_table(data: AbData) -> pd.DataFrame:
    """bound_at_T: "found", or "lower" / "unknown" when the search stopped at an invalid probe
    (then capacity_at_T is only a lower bound, or missing); note says where and why."""
    rows = []
    for arm in data.arms:
        doc = data.capacity.get(arm, {})
        caps = doc.get("capacity", {})
        bounds = doc.get("bounds", {})
        notes = doc.get("capacity_notes", {})
        rows.append(
            {
                "arm": arm,
                "status": doc.get("status", "missing"),
                "capacity_at_0.9": caps.get("0.9"),
                "bound_at_0.9": bounds.get("0.9", "found" if "0.9" in caps else None),
                "capacity_at_0.99": caps.get("0.99"),
                "bound_at_0.99": bounds.get("0.99", "found" if "0.99" in caps else None),
                "num_probes": len(doc.get("probes", [])),
                "note": "; ".join(
                    f"{t}: stopped at invalid x{n['invalid_rate']:g}" for t, n in notes.items()
                ),
            }
        )
    return pd.DataFrame(rows)


def _ratio(a: object, b: object) -> float:
    if a is None or b is None:
        return math.nan
    a, b = float(a), float(b)  # type: ignore[arg-type]
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def ratio_table(data: AbData, rate: float | None) -> pd.DataFrame:
    """FairBatching arm / stock arm for capacity (higher is better) and p99 TTFT at the common
    rate (lower is better)."""
    cap = capacity_table(data).set_index("arm")
    det = detail_table(data, rate).set_index("arm") if rate is not None else None
    rows = []
    for fb in [a for a in data.arms if is_fairbatching(a)]:
        for stock in [a for a in data.arms if not is_fairbatching(a)]:
            row: dict[str, object] = {"fairbatching_arm": fb, "stock_arm": stock}
            for t in ("0.9", "0.99"):
                # A lower bound on either side makes the ratio no measurement.
                found = all(cap.at[a, f"bound_at_{t}"] in ("found", None) for a in (fb, stock))
                row[f"capacity_ratio_at_{t}"] = (
                    _ratio(cap.at[fb, f"capacity_at_{t}"], cap.at[stock, f"capacity_at_{t}"])
                    if found
                    else math.nan
                )
            if det is not None and "ttft_ms_p99" in det.columns:
                row["ttft_p99_ratio"] = _ratio(
                    det.at[fb, "ttft_ms_p99"], det.at[stock, "ttft_ms_p99"]
                )
                row["tpot_p99_ratio"] = _ratio(
                    det.at[fb, "tpot_ms_p99"], det.at[stock, "tpot_ms_p99"]
                )
                row["slo_attainment_fb"] = det.at[fb, "slo_attainment"]
                row["slo_attainment_stock"] = det.at[stock, "slo_attainment"]
            rows.append(row)
    return pd.DataFrame(rows)


def sweep_table(data: AbData) -> pd.DataFrame:
    """Every run (fixed rates and capacity probes): attainment per arm and rate."""
    cols = ["arm", "rate_scale", "status", *ATTAINMENT_KEYS, "ttft_ms_p99", "tpot_ms_p99"]
    return data.runs.reindex(columns=cols)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """Plain markdown (no tabulate dependency)."""
    if df.empty:
        return "_(no rows)_\n"

    def fmt(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"

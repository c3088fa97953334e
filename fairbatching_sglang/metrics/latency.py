"""Latency metrics from per-request records (simulated or measured: the same columns).

Input columns: status, arrival_ms, output_tokens, first_token_ms, finish_ms, ttft_slo_ms,
tpot_slo_ms, token_times_ms (list of absolute token times, ms). Definitions:
- TTFT: first token - arrival (for measured runs, arrival is the scheduled send time).
- TPOT: mean per request, (last token - first token) / (output tokens - 1); requests with one
  output token have no TPOT and meet any TPOT SLO.
- ITL: every gap between consecutive tokens of a request.
- SLO attainment: share of ALL requests (failed and rejected ones count as misses) meeting both
  TTFT <= ttft_slo and TPOT <= tpot_slo. Envelope attainment: every token j by
  arrival + ttft_slo + j * tpot_slo (the deadline FairBatching schedules against).
- Goodput: requests meeting both SLOs per second of trace span (DistServe's definition).
- throughput_rps: completed requests per second of trace span, i.e. the offered rate when all
  complete (it cannot show saturation). makespan_s: first arrival to last finish;
  sustained_throughput_rps / sustained_output_tokens_per_s: completions (output tokens) per
  second of makespan, which fall below the offered rate once the device cannot keep up.
- drain_s: makespan - arrival span, how long the run took past its last arrival; it grows with
  the backlog once the device does not keep up, and with the slowest late answer.
- late_ttft_p50_s / late_e2e_p50_s: median TTFT / end-to-end latency of the last
  LATE_FRACTION of requests by arrival (the same requests at every rate scale); medians, so one
  long answer does not move them (harness/saturation.py judges the backlog by the TTFT one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 99)
LATE_FRACTION = 0.1


def request_latencies(records: pd.DataFrame) -> pd.DataFrame:
    """One row per request with ttft_ms, tpot_ms, e2e_ms, max_itl_ms and SLO flags."""
    ok = records["status"].eq("ok")
    ttft = (records["first_token_ms"] - records["arrival_ms"]).where(ok)
    n_out = records["output_tokens"]
    tpot = ((records["finish_ms"] - records["first_token_ms"]) / (n_out - 1)).where(
        ok & (n_out > 1)
    )
    e2e = (records["finish_ms"] - records["arrival_ms"]).where(ok)
    ttft_met = ok & (ttft <= records["ttft_slo_ms"])
    tpot_met = ok & (tpot.isna() | (tpot <= records["tpot_slo_ms"]))
    envelope_met = [
        _envelope_met(times, a, t, p) if status == "ok" else False
        for times, a, t, p, status in zip(
            records["token_times_ms"],
            records["arrival_ms"],
            records["ttft_slo_ms"],
            records["tpot_slo_ms"],
            records["status"],
            strict=True,
        )
    ]
    return pd.DataFrame(
        {
            "rid": records["rid"],
            "status": records["status"],
            "arrival_ms": records["arrival_ms"],
            "input_tokens": records["input_tokens"],
            "output_tokens": n_out,
            "ttft_ms": ttft,
            "tpot_ms": tpot,
            "e2e_ms": e2e,
            "ttft_met": ttft_met,
            "tpot_met": tpot_met,
            "slo_met": ttft_met & tpot_met,
            "envelope_met": envelope_met,
        }
    )


def _envelope_met(times: Any, arrival: float, ttft: float, tpot: float) -> bool:
    t = np.asarray(times, dtype=np.float64)
    if not len(t):
        return False
    due = arrival + ttft + tpot * np.arange(len(t))
    return bool(np.all(t <= due + 1e-9))


def itl_values(records: pd.DataFrame) -> np.ndarray:
    gaps = [
        np.diff(np.asarray(t, dtype=np.float64)) for t in records["token_times_ms"] if len(t) > 1
    ]
    return np.concatenate(gaps) if gaps else np.empty(0)


def _pcts(values: pd.Series | np.ndarray, prefix: str) -> dict[str, float]:
    v = np.asarray(pd.Series(values).dropna(), dtype=np.float64)
    out: dict[str, float] = {f"{prefix}_mean": float(v.mean()) if len(v) else float("nan")}
    for p in PERCENTILES:
        out[f"{prefix}_p{p}"] = float(np.percentile(v, p)) if len(v) else float("nan")
    return out


def _sustained(records: pd.DataFrame, ok: pd.Series) -> dict[str, float]:
    if not len(records) or not ok.any():
        nan = float("nan")
        return {"makespan_s": nan, "sustained_throughput_rps": nan,
                "sustained_output_tokens_per_s": nan, "drain_s": nan,
                "late_e2e_p50_s": nan, "late_ttft_p50_s": nan}  # fmt: skip
    start_ms = float(records["arrival_ms"].min())
    makespan_s = max((float(records.loc[ok, "finish_ms"].max()) - start_ms) / 1000.0, 1e-9)
    arrival_span_s = (float(records["arrival_ms"].max()) - start_ms) / 1000.0
    return {
        "makespan_s": makespan_s,
        "sustained_throughput_rps": float(ok.sum()) / makespan_s,
        "sustained_output_tokens_per_s": float(records.loc[ok, "output_tokens"].sum()) / makespan_s,
        "drain_s": makespan_s - arrival_span_s,
        **_late_p50s(records),
    }


def _late_p50s(records: pd.DataFrame) -> dict[str, float]:
    """late_ttft_p50_s / late_e2e_p50_s: medians (s) over the last LATE_FRACTION of requests by
    arrival; NaN when more than half of them failed (the median would then be a failure's)."""
    keys = ["arrival_ms", "rid"] if "rid" in records.columns else ["arrival_ms"]
    order = records.sort_values(keys, kind="stable")  # once for both figures
    late = order.iloc[len(order) - max(1, int(np.ceil(len(order) * LATE_FRACTION))) :]
    ok = late["status"].eq("ok")
    out: dict[str, float] = {}
    for name, until in (("late_ttft_p50_s", "first_token_ms"), ("late_e2e_p50_s", "finish_ms")):
        dt = (late[until] - late["arrival_ms"]).where(ok)
        # Failed late requests count as the slowest: dropping them would flatter an overload.
        out[name] = (
            math.nan
            if dt.isna().sum() * 2 > len(dt)
            else float(np.median(dt.fillna(np.inf).to_numpy(dtype=np.float64))) / 1000.0
        )
    return out


def summarize(records: pd.DataFrame, span_s: float | None = None) -> dict[str, float]:
    """Headline metrics of one run. span_s: the trace span for rates (default: arrivals' span)."""
    lat = request_latencies(records)
    n = len(lat)
    if span_s is None:
        span_s = (
            float((records["arrival_ms"].max() - records["arrival_ms"].min()) / 1000.0)
            if n
            else 0.0
        )
    span_s = max(span_s, 1e-9)
    ok = lat["status"].eq("ok")
    out_tokens_met = float(lat.loc[lat["slo_met"], "output_tokens"].sum())
    summary: dict[str, float] = {
        "num_requests": float(n),
        "num_completed": float(ok.sum()),
        "num_failed": float((~ok).sum()),
        "slo_attainment": float(lat["slo_met"].mean()) if n else float("nan"),
        "ttft_attainment": float(lat["ttft_met"].mean()) if n else float("nan"),
        "tpot_attainment": float(lat["tpot_met"].mean()) if n else float("nan"),
        "envelope_attainment": float(np.mean(lat["envelope_met"])) if n else float("nan"),
        "goodput_rps": float(lat["slo_met"].sum()) / span_s,
        "goodput_tokens_per_s": out_tokens_met / span_s,
        "throughput_rps": float(ok.sum()) / span_s,
    }
    summary.update(_sustained(records, ok))
    summary.update(_pcts(lat["ttft_ms"], "ttft_ms"))
    summary.update(_pcts(lat["tpot_ms"], "tpot_ms"))
    summary.update(_pcts(itl_values(records[ok]), "itl_ms"))
    summary.update(_pcts(lat["e2e_ms"], "e2e_ms"))
    return summary

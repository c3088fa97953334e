"""Policy metrics (Prometheus) and the optional JSONL step log used for cost calibration.

Metrics: SGLang runs prometheus_client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR is set
before the scheduler starts), so metrics created here in the scheduler process are exported by
the server's /metrics endpoint with no patch to SGLang's collectors. They are created only when
SGLang's --enable-metrics is on, and only on the rank that exports metrics.

Step log: one JSON line per formed batch, the measured time of the previous one included:
num_prefill_tokens, num_decode_reqs, decode_kv_tokens, prefill_attn_work, predicted_ms,
measured_ms, time_s. measured_ms is the wall time from this batch's formation to the next one's
while the engine stays busy: it includes scheduling overhead and, under the overlap scheduler,
approximates the GPU step time in steady state (the loop waits on the previous step's result).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import IO, Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    time_s: float
    num_prefill_tokens: int
    num_decode_reqs: int
    decode_kv_tokens: int
    prefill_attn_work: float
    predicted_ms: float
    measured_ms: float | None = None
    num_parked: int = 0
    budget_ms: float | None = None
    fallback: bool = False


class StepLog:
    """Buffered JSONL writer; a record is written once its measured time is known.

    Flushed at most once a second (a line per step would cost a syscall per step), so a live
    reader or a killed server loses at most the last second. A step followed by an idle period
    has no measured time (its end is not observed): `measured_ms` is null there, and
    profiles/step_log.read_step_log skips such lines."""

    FLUSH_INTERVAL_S = 1.0

    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._pending: StepRecord | None = None
        self._last_flush_s = 0.0

    def record(self, rec: StepRecord | None, now_s: float) -> None:
        pending = self._pending
        if pending is not None:
            measured = (now_s - pending.time_s) * 1000.0 if rec is not None else None
            self._file.write(json.dumps({**asdict(pending), "measured_ms": measured}) + "\n")
            if rec is None or now_s - self._last_flush_s >= self.FLUSH_INTERVAL_S:
                self._file.flush()
                self._last_flush_s = now_s
        self._pending = rec

    def close(self) -> None:
        self.record(None, 0.0)
        self._file.close()


class PolicyMetrics:
    """Gauges/counters/histograms for the policy; all no-ops when prometheus is unavailable."""

    def __init__(self, labels: dict[str, str]) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        names = list(labels)
        self._labels = labels

        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, names, multiprocess_mode="mostrecent").labels(**labels)

        self.budget_ms = gauge("sglang:fairbatching_budget_ms", "Step time budget (ms)")
        self.parked = gauge("sglang:fairbatching_parked_decodes", "Decodes parked this step")
        self.admission = gauge(
            "sglang:fairbatching_prefill_admission_tokens",
            "Prefill tokens still admissible within the TTFT SLO",
        )
        self.predicted = gauge("sglang:fairbatching_predicted_step_ms", "Predicted step time")
        self.margin = gauge(
            "sglang:fairbatching_planning_margin",
            "Closed-loop planning margin (0.05: steps planned 5% longer than predicted)",
        )
        self.fallbacks = Counter(
            "sglang:fairbatching_fallbacks", "Steps that fell back to stock scheduling", names
        ).labels(**labels)
        buckets = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000)
        self.measured_hist = Histogram(
            "sglang:fairbatching_measured_step_ms",
            "Measured step time (ms)",
            names,
            buckets=buckets,
        ).labels(**labels)
        self.error_hist = Histogram(
            "sglang:fairbatching_step_time_error_ms",
            "Measured minus predicted step time (ms)",
            names,
            buckets=(-50, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50),
        ).labels(**labels)


def make_metrics(enabled: bool, labels: dict[str, str]) -> PolicyMetrics | None:
    if not enabled:
        return None
    try:
        return PolicyMetrics(labels)
    except Exception:  # metrics must never stop the server
        logger.exception("FairBatching metrics disabled: could not create them")
        return None

"""Per-request records -> TTFT/TPOT/ITL/E2E, SLO attainment, goodput."""

from fairbatching_sglang.metrics.latency import request_latencies, summarize

__all__ = ["request_latencies", "summarize"]

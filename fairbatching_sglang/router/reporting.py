"""The router's read-only views: `/v1/loads` (every worker's ranks) and `/metrics` (Prometheus).

Workers are labelled by their index in `--worker-url` order, not by URL: these answers go to
any client of the router, and worker addresses are the operator's business (they are in the
router's log at start-up).
"""

from __future__ import annotations

import time
from typing import Any

from fairbatching_sglang.router.state import AdmissionState


def loads_json(state: AdmissionState) -> dict[str, Any]:
    ranks = []
    for i, w in enumerate(state.workers):
        for rank in (w.last_loads or {}).get("loads", []):
            if isinstance(rank, dict):
                ranks.append({**rank, "worker": i, "worker_healthy": w.healthy})
    return {
        "timestamp": time.time(),
        "version": "fairbatching-router",
        "loads": ranks,
        "router": {"queue_length": len(state.queue)},
    }


def prometheus_text(s: dict[str, Any], counts: dict[str, int]) -> str:
    """s: `AdmissionState.stats()`; counts: the server's request counters."""
    lines = [
        "# TYPE fairbatching_router_queue_length gauge",
        f"fairbatching_router_queue_length {s['queue_length']}",
        "# TYPE fairbatching_router_queued_tokens gauge",
        f"fairbatching_router_queued_tokens {s['queued_tokens']}",
        "# TYPE fairbatching_router_requests_total counter",
        f"fairbatching_router_requests_total {counts['requests']}",
        "# TYPE fairbatching_router_rejected_total counter",
        f"fairbatching_router_rejected_total {counts['rejected']}",
        "# TYPE fairbatching_router_upstream_errors_total counter",
        f"fairbatching_router_upstream_errors_total {counts['upstream_errors']}",
        "# TYPE fairbatching_router_client_gone_total counter",
        f"fairbatching_router_client_gone_total {counts['client_gone']}",
    ]
    per_worker = {
        "healthy": ("gauge", lambda w: int(w["healthy"])),
        "admission_budget_tokens": ("gauge", lambda w: w["effective_budget"]),
        "in_flight": ("gauge", lambda w: w["in_flight"]),
        "dispatched_total": ("counter", lambda w: w["num_dispatched"]),
        "poll_failures_total": ("counter", lambda w: w["num_poll_failures"]),
    }
    for name, (kind, get) in per_worker.items():
        lines.append(f"# TYPE fairbatching_router_worker_{name} {kind}")
        for w in s["workers"]:
            value = get(w)
            if value is not None:
                lines.append(f'fairbatching_router_worker_{name}{{worker="{w["worker"]}"}} {value}')
    return "\n".join(lines) + "\n"

"""Which replica served which request of a cluster run, from the replicas' own request logs.

Neither router tells the client where it sent a request, but every replica runs with
`--log-requests --log-requests-level 0` and so logs each received request's rid; the replay's
rids are f"{run_token}-{i:08d}" (client.py), unique per run, so one scan per log finds them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# Level 0 logs metadata only (no prompt ids), one short line per received and finished request.
LOG_REQUEST_FLAGS: tuple[str, ...] = ("--log-requests", "--log-requests-level", "0")


def attribute(logs: list[Path], run_token: str, num_requests: int) -> np.ndarray:
    """replica index per request (trace order); -1 where no log names it."""
    out = np.full(num_requests, -1, dtype=np.int64)
    pattern = re.compile(re.escape(run_token) + r"-(\d{8})")
    for k, path in enumerate(logs):
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                for m in pattern.finditer(line):
                    i = int(m.group(1))
                    if 0 <= i < num_requests and out[i] < 0:
                        out[i] = k
    return out

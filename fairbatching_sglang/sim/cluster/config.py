"""Router settings of a simulated cluster.

load_poll_interval_ms: how often the router refreshes its per-replica load snapshot, as real
routers poll `/v1/loads` (smg: `worker_load_check_interval`, default 10 s; sglang-router's
power-of-two: 5 s). Between polls a router sees the snapshot of the last poll; 0 = fresh (the
router reads every replica's state at each decision, an idealised bound). Only the load-reading
routers (power-of-two, least-load, admission-budget) use it; round-robin reads nothing and
least-outstanding counts its own dispatches and completions (always current, as smg's
per-worker in-flight counter).

Between polls the routers correct the stale snapshot as their real counterparts do:
- least-load (smg): adds the prompt tokens it dispatched to each replica since the last poll
  (smg's `inflight_tokens`, reset by each poll);
- power-of-two (sglang-router / smg): no correction (they compare the cached token loads only);
- admission-budget (ours): subtracts the prompt tokens dispatched since the poll from the
  replica's budget and lets the queued prefill drain at the replica's prefill capacity rate
  (capacity / TTFT horizon) since the poll, so a budget spent between polls refills as the
  replica works instead of waiting up to a whole interval (`drain_between_polls`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUTER_NAMES = (
    "round-robin",
    "least-outstanding",
    "power-of-two",
    "least-load",
    "admission-budget",
)
SMG_LOAD_POLL_INTERVAL_MS = 10_000.0  # smg RouterConfig.worker_load_check_interval = 10 (s)


@dataclass(frozen=True)
class RouterConfig:
    """seed: power-of-two's RNG. kv_pressure_weight_s / default_throughput_tps: smg least_load
    defaults (0.15 s, 2000 tok/s). decode_log_interval: a replica's reported gen_throughput is
    SGLang's: decode tokens generated over the wall time of its last completed log interval of
    this many decode steps (SGLang's --decode-log-interval, default 40); 0 before the first."""

    name: str = "admission-budget"
    load_poll_interval_ms: float = SMG_LOAD_POLL_INTERVAL_MS
    seed: int = 0
    kv_pressure_weight_s: float = 0.15
    default_throughput_tps: float = 2000.0
    decode_log_interval: int = 40
    drain_between_polls: bool = True

    def __post_init__(self) -> None:
        if self.name not in ROUTER_NAMES:
            raise ValueError(
                f"unknown router {self.name!r}; choose one of: {', '.join(ROUTER_NAMES)}"
            )
        if self.load_poll_interval_ms < 0:
            raise ValueError("load_poll_interval_ms must be >= 0")
        if self.decode_log_interval < 1:
            raise ValueError("decode_log_interval must be >= 1")

    @property
    def fresh_loads(self) -> bool:
        return self.load_poll_interval_ms == 0


_REPEAT = re.compile(r"^(\d+)\s*[xX*]\s*(\S.*)$")


def parse_replica_profiles(spec: str) -> list[str]:
    """One profile name (or JSON path) per replica from a comma-separated list in which an item
    `KxNAME` stands for K replicas of NAME: "2xh100-llama3.1-8b,2xh200-llama3.1-8b" ==
    "h100-llama3.1-8b,h100-llama3.1-8b,h200-llama3.1-8b,h200-llama3.1-8b"."""
    out: list[str] = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        m = _REPEAT.match(item)
        if m:
            k = int(m.group(1))
            if k < 1:
                raise ValueError(f"replica profile {item!r}: count must be >= 1")
            out += [m.group(2).strip()] * k
        else:
            out.append(item)
    if not out:
        raise ValueError(f"no replica profiles in {spec!r}")
    return out


def mix_label(names: list[str]) -> str:
    """The compact form of a per-replica profile list: consecutive repeats as KxNAME."""
    parts: list[str] = []
    i = 0
    while i < len(names):
        j = i
        while j < len(names) and names[j] == names[i]:
            j += 1
        parts.append(f"{j - i}x{names[i]}")
        i = j
    return ",".join(parts)

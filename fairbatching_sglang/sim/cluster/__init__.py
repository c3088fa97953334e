"""Multi-replica simulator: N single-instance engines behind a router in one virtual time."""

from fairbatching_sglang.sim.cluster.config import (
    ROUTER_NAMES,
    RouterConfig,
    parse_replica_profiles,
)
from fairbatching_sglang.sim.cluster.engine import ClusterSimulator, ClusterSummary
from fairbatching_sglang.sim.cluster.runner import ClusterRunResult, run_cluster_simulation

__all__ = [
    "ROUTER_NAMES",
    "ClusterRunResult",
    "ClusterSimulator",
    "ClusterSummary",
    "RouterConfig",
    "parse_replica_profiles",
    "run_cluster_simulation",
]

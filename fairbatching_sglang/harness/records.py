"""Measured per-request records: the simulator's requests.parquet columns plus client extras.

Sharing the simulator's columns lets `metrics.summarize` and the report code serve both backends.
Extras: request_id (the rid sent to SGLang: unique per run, fixed width), send_ms (actual send,
relative to t0), dispatch_lag_ms (send - scheduled) and error.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fairbatching_sglang.sim.records import REQUEST_SCHEMA

MEASURED_SCHEMA = pa.schema(
    [
        *REQUEST_SCHEMA,
        pa.field("request_id", pa.string()),
        pa.field("send_ms", pa.float64()),
        pa.field("dispatch_lag_ms", pa.float64()),
        pa.field("error", pa.string()),
    ]
)
STATUSES = ("ok", "failed", "timeout")


def write_measured_records(records: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(records, schema=MEASURED_SCHEMA, preserve_index=False)
    pq.write_table(table, path)


# Cluster runs: the replica that served each request (from the replicas' request logs; -1 =
# not found there).
CLUSTER_MEASURED_SCHEMA = MEASURED_SCHEMA.append(pa.field("replica", pa.int64()))


def write_cluster_records(records: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(records, schema=CLUSTER_MEASURED_SCHEMA, preserve_index=False)
    pq.write_table(table, path)

"""Where finished requests and step traces go: memory (tests) or streaming Parquet (runs).

Streaming keeps a long replay's memory flat: nothing about a finished request stays in the
simulator once its row is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

REQUEST_SCHEMA = pa.schema(
    [
        ("rid", pa.int64()),
        ("status", pa.string()),
        ("arrival_ms", pa.float64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("ttft_slo_ms", pa.float64()),
        ("tpot_slo_ms", pa.float64()),
        ("first_token_ms", pa.float64()),
        ("finish_ms", pa.float64()),
        ("num_retractions", pa.int64()),
        ("total_parked_steps", pa.int64()),
        ("token_times_ms", pa.list_(pa.float64())),
    ]
)

STEP_SCHEMA = pa.schema(
    [
        ("start_ms", pa.float64()),
        ("end_ms", pa.float64()),
        ("num_steps", pa.int64()),
        ("num_decodes", pa.int64()),
        ("num_parked", pa.int64()),
        ("num_prefill_reqs", pa.int64()),
        ("num_prefill_tokens", pa.int64()),
        ("num_waiting", pa.int64()),
        ("num_running", pa.int64()),
        ("kv_used_tokens", pa.int64()),
        ("budget_ms", pa.float64()),
        ("step_ms", pa.float64()),
    ]
)

# The cluster simulator's records: the same columns plus where each request ran and how long it
# waited at the router (arrival_ms stays the arrival at the router, so TTFT includes that wait).
CLUSTER_REQUEST_SCHEMA = REQUEST_SCHEMA.append(pa.field("replica", pa.int64())).append(
    pa.field("router_queue_ms", pa.float64())
)
CLUSTER_STEP_SCHEMA = STEP_SCHEMA.append(pa.field("replica", pa.int64()))


class RecordSink(Protocol):
    def add_request(self, row: dict[str, Any]) -> None: ...

    def add_step(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    def __init__(self, keep_steps: bool = True) -> None:
        self.requests: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.keep_steps = keep_steps

    def add_request(self, row: dict[str, Any]) -> None:
        self.requests.append(row)

    def add_step(self, row: dict[str, Any]) -> None:
        if self.keep_steps:
            self.steps.append(row)

    def close(self) -> None:
        pass


class _BatchedParquet:
    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int) -> None:
        self.path = path
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows: list[dict[str, Any]] = []
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


class ParquetSink:
    """requests.parquet (one row per request, every token's virtual time) and steps.parquet."""

    def __init__(
        self,
        out_dir: Path,
        batch_rows: int = 2000,
        request_schema: pa.Schema = REQUEST_SCHEMA,
        step_schema: pa.Schema = STEP_SCHEMA,
    ) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.requests = _BatchedParquet(out_dir / "requests.parquet", request_schema, batch_rows)
        self.steps = _BatchedParquet(out_dir / "steps.parquet", step_schema, batch_rows * 10)

    def add_request(self, row: dict[str, Any]) -> None:
        self.requests.add(row)

    def add_step(self, row: dict[str, Any]) -> None:
        self.steps.add(row)

    def close(self) -> None:
        self.requests.close()
        self.steps.close()

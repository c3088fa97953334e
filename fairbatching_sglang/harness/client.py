"""Open-loop trace replay against SGLang's native streaming `/generate`.

Each request is sent at its absolute scheduled time t0 + arrival / rate_scale (never paced by
earlier responses), with exactly its trace input length (`input_ids`) and output length
(`max_new_tokens` + `ignore_eos`). Every output token gets a timestamp (a chunk that carries k new
tokens stamps all k at its arrival time); TTFT counts from the scheduled time, so client lag is
charged to the system under test and reported separately as dispatch_lag_ms. Every request ends
in exactly one record with status ok / failed / timeout.

Every request carries an explicit `rid` f"{run_token}-{i:08d}": unique per run (the token is
per replay) and fixed width, because SGLang aborts by rid *prefix* (scheduler.py ~5715): with
SGLang's own or short ids a late abort of `req-1` killed `req-10..req-199`.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd

from fairbatching_sglang.core import SloTable
from fairbatching_sglang.harness.sse import BadChunk, parse_chunk
from fairbatching_sglang.harness.tokens import TokenConfig, prompt_ids
from fairbatching_sglang.sim.runner import workload_from_table
from fairbatching_sglang.workload import RequestTable


@dataclass(frozen=True)
class ClientConfig:
    """request_timeout_s bounds one request from send to its last token.

    max_in_flight is a safety cap on open connections, not a concurrency knob: the replay is open
    loop, and a request that finds the cap full waits (its TTFT still counts from its scheduled
    time) and is counted in num_cap_waits.
    start_delay_s: t0 is this far after the call, so the first requests are not late by setup.
    prepare_ahead_s: a request's body is built this long before its send time (long prompts take
    milliseconds to serialise; building them at send time would show up as dispatch lag).
    run_token: prefix of the request ids (default: a fresh one per replay, new_run_token()).
    """

    base_url: str
    rate_scale: float = 1.0
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_in_flight: int = 4096
    start_delay_s: float = 0.5
    prepare_ahead_s: float = 0.25
    tokens: TokenConfig = field(default_factory=TokenConfig)
    run_token: str | None = None


def new_run_token() -> str:
    """Time + 6 random hex digits: distinct across runs, replicas and retries."""
    return f"fb{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(3)}"


def request_id(run_token: str, i: int) -> str:
    # Fixed width: no id is a prefix of another (SGLang aborts by rid prefix).
    return f"{run_token}-{i:08d}"


@dataclass(frozen=True)
class ReplayResult:
    records: pd.DataFrame
    span_s: float
    wall_s: float
    num_cap_waits: int
    max_in_flight_seen: int
    run_token: str = ""
    # Wall clock (time.time()) of t0, the origin of arrival_ms / send_ms: lines other processes
    # stamp with time.time() (the emulated scheduler's receive log) map onto the replay with it.
    t0_wall_s: float = math.nan

    def counts(self) -> dict[str, int]:
        vc = self.records["status"].value_counts()
        return {s: int(vc.get(s, 0)) for s in ("ok", "failed", "timeout")}


class _Replay:
    def __init__(
        self,
        table: RequestTable,
        slo_table: SloTable,
        cfg: ClientConfig,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.cfg = cfg
        self.table = table
        self.work = workload_from_table(table, slo_table, cfg.rate_scale)
        self.n = table.num_requests
        self.rows: list[dict[str, Any] | None] = [None] * self.n
        self.progress = progress
        self.done = 0
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.num_cap_waits = 0
        self.t0 = 0.0
        self.t0_wall_s = math.nan
        self.run_token = cfg.run_token or new_run_token()

    def _ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    def _body(self, i: int) -> bytes:
        hashes = self.work.hash_ids[i] if self.work.hash_ids is not None else None
        ids = prompt_ids(self.cfg.tokens, i, int(self.work.input_tokens[i]), hashes)
        payload = {
            "rid": request_id(self.run_token, i),
            "input_ids": ids,
            "sampling_params": {
                "max_new_tokens": int(self.work.output_tokens[i]),
                "ignore_eos": True,
                "temperature": 0,
            },
            "stream": True,
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    async def run(self) -> None:
        cfg = self.cfg
        self.sem = asyncio.Semaphore(cfg.max_in_flight)
        limits = httpx.Limits(
            max_connections=cfg.max_in_flight, max_keepalive_connections=min(256, cfg.max_in_flight)
        )
        timeout = httpx.Timeout(
            connect=cfg.connect_timeout_s, read=cfg.request_timeout_s, write=60.0, pool=None
        )
        async with httpx.AsyncClient(
            base_url=cfg.base_url, limits=limits, timeout=timeout
        ) as client:
            self.client = client
            # httpx's first request loads anyio's asyncio backend (tens of ms of imports on a
            # cold disk); load it now, before t0, so it is not the first requests' dispatch lag.
            await anyio.sleep(0)
            self.t0 = time.perf_counter() + cfg.start_delay_s
            self.t0_wall_s = time.time() + (self.t0 - time.perf_counter())
            tasks: list[asyncio.Task[None]] = []
            try:
                for i in range(self.n):
                    # Create each task shortly before its send time: the pending set stays small.
                    wake = self.t0 + self.work.arrival_ms[i] / 1000.0 - cfg.prepare_ahead_s
                    delay = wake - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(self._one(i)))
            except asyncio.CancelledError:  # Ctrl-C: stop now, requests in flight included
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                # Even when the loop above fails, the requests already sent finish their records.
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, i: int) -> None:
        try:
            await self._one_unguarded(i)
        except Exception as exc:  # a bug or odd input for one request must not end the run
            if self.rows[i] is None:
                self._record_lost(i, f"client: {type(exc).__name__}: {exc}")

    def _record_lost(self, i: int, error: str) -> None:
        self._record(i, float(self.work.arrival_ms[i]), math.nan, [], 0, "failed", error)

    async def _one_unguarded(self, i: int) -> None:
        sched_ms = float(self.work.arrival_ms[i])
        try:
            body = self._body(i)
        except Exception as exc:  # never lose a request from the record
            self._record(i, sched_ms, math.nan, [], 0, "failed", f"client: {exc!r}")
            return
        wait = self.t0 + sched_ms / 1000.0 - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        if self.sem.locked():
            self.num_cap_waits += 1
        async with self.sem:
            self.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
            send_ms = self._ms()
            try:
                times, cached, status, error = await self._send(i, body)
            finally:
                self.in_flight -= 1
        self._record(i, sched_ms, send_ms, times, cached, status, error)

    async def _send(self, i: int, body: bytes) -> tuple[list[float], int, str, str | None]:
        expected = int(self.work.output_tokens[i])
        times: list[float] = []
        cached = 0
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                async with self.client.stream(
                    "POST", "/generate", content=body, headers={"content-type": "application/json"}
                ) as resp:
                    if resp.status_code != 200:
                        text = (await resp.aread())[:300].decode(errors="replace")
                        return times, cached, "failed", f"HTTP {resp.status_code}: {text}"
                    done = False
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            done = True
                            break
                        chunk = parse_chunk(data, expected, int(self.work.input_tokens[i]))
                        if chunk.error is not None:
                            return times, cached, "failed", f"server: {chunk.error}"
                        count = chunk.completion_tokens
                        if count is not None and count > len(times):
                            times.extend([self._ms()] * (count - len(times)))
                        cached = chunk.cached_tokens or cached
                    if not done:
                        return times, cached, "failed", "stream broken: ended without [DONE]"
                    if len(times) != expected:
                        return times, cached, "failed", f"incomplete: {len(times)}/{expected}"
                    return times, cached, "ok", None
        except TimeoutError:
            return times, cached, "timeout", f"timeout after {self.cfg.request_timeout_s:g} s"
        except httpx.TimeoutException as exc:
            return times, cached, "timeout", f"{type(exc).__name__}: {exc}"
        except httpx.ConnectError as exc:
            return times, cached, "failed", f"connect error: {exc}"
        except httpx.TransportError as exc:
            return times, cached, "failed", f"stream broken: {type(exc).__name__}: {exc}"
        except BadChunk as exc:
            return times, cached, "failed", f"bad chunk: {exc}"
        except Exception as exc:  # one request's fault, whatever it is, is that request's record
            return times, cached, "failed", f"client: {type(exc).__name__}: {exc}"

    def _record(
        self,
        i: int,
        sched_ms: float,
        send_ms: float,
        times: list[float],
        cached: int,
        status: str,
        error: str | None,
    ) -> None:
        end_ms = self._ms()
        self.rows[i] = {
            "rid": i,
            "request_id": request_id(self.run_token, i),
            "status": status,
            "arrival_ms": sched_ms,
            "input_tokens": int(self.work.input_tokens[i]),
            "output_tokens": int(self.work.output_tokens[i]),
            "cached_tokens": cached,
            "ttft_slo_ms": float(self.work.ttft_slo_ms[i]),
            "tpot_slo_ms": float(self.work.tpot_slo_ms[i]),
            "first_token_ms": times[0] if times else math.nan,
            "finish_ms": times[-1] if status == "ok" and times else end_ms,
            # Not observable from the client (server-side scheduling facts): -1 = unknown.
            "num_retractions": -1,
            "total_parked_steps": -1,
            "token_times_ms": times,
            "send_ms": send_ms,
            "dispatch_lag_ms": send_ms - sched_ms,
            "error": error,
        }
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.n)


async def replay_async(
    table: RequestTable,
    slo_table: SloTable,
    cfg: ClientConfig,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    r = _Replay(table, slo_table, cfg, progress)
    start = time.perf_counter()
    why = "client: request never completed its record"
    try:
        await r.run()
    except Exception as exc:  # keep every record the replay has; the rest fail with the reason
        why = f"client: replay aborted: {type(exc).__name__}: {exc}"
    wall_s = time.perf_counter() - start
    for i, row in enumerate(r.rows):
        if row is None:  # every request ends in exactly one record, whatever happened
            r._record_lost(i, why)
    records = pd.DataFrame(r.rows)
    return ReplayResult(
        records=records,
        span_s=table.span_s / cfg.rate_scale,
        wall_s=wall_s,
        num_cap_waits=r.num_cap_waits,
        max_in_flight_seen=r.max_in_flight_seen,
        run_token=r.run_token,
        t0_wall_s=r.t0_wall_s,
    )


def replay(
    table: RequestTable,
    slo_table: SloTable,
    cfg: ClientConfig,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    return asyncio.run(replay_async(table, slo_table, cfg, progress))


def dispatch_lag_summary(records: pd.DataFrame) -> dict[str, float]:
    lag = records["dispatch_lag_ms"].dropna().to_numpy(dtype=np.float64)
    if not len(lag):
        return {"dispatch_lag_ms_p50": math.nan, "dispatch_lag_ms_p99": math.nan}
    return {
        "dispatch_lag_ms_mean": float(lag.mean()),
        "dispatch_lag_ms_p50": float(np.percentile(lag, 50)),
        "dispatch_lag_ms_p99": float(np.percentile(lag, 99)),
        "dispatch_lag_ms_max": float(lag.max()),
    }

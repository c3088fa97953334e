"""A small asyncio client for /generate with exact input_ids and output lengths (SSE or not)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


class LogGate:
    """Opens at the first JSONL record written to `path` after the gate was made that matches
    `pred` (e.g. the device log's first step that parked most decodes): requests held by it are
    sent on an event of the server rather than at a fixed time, which a slower machine would
    shift. Read incrementally; one gate is shared by the requests it holds."""

    def __init__(self, path: Path, pred: Callable[[dict[str, Any]], bool], wait_s: float = 30.0):
        self.path = path
        self.pred = pred
        self.since_s = time.time()
        self.deadline = time.perf_counter() + wait_s
        self.opened_at: float | None = None  # perf_counter time it opened (or gave up)
        self._offset = 0

    def _poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only
        self._offset += end
        for line in data[:end].splitlines():
            if not line.startswith(b"{"):
                continue  # the log's "# ..." header lines
            rec = json.loads(line)
            if rec.get("start_s", self.since_s) >= self.since_s and self.pred(rec):
                self.opened_at = time.perf_counter()
                return
        if time.perf_counter() > self.deadline:
            self.opened_at = time.perf_counter()  # give up: the test's own check then fails

    async def wait(self) -> float:
        while self.opened_at is None:
            self._poll()
            if self.opened_at is None:
                await asyncio.sleep(0.005)
        return self.opened_at


@dataclass
class Request:
    rid: str
    input_ids: list[int]
    max_new_tokens: int
    stream: bool = True
    sampling: dict[str, Any] = field(default_factory=dict)  # extra sampling params
    body: dict[str, Any] = field(default_factory=dict)  # extra top-level fields
    delay_s: float = 0.0  # send this long after the batch starts (or after its gate opens)
    gate: LogGate | None = None  # hold the request until the server's log shows an event
    disconnect_after: int | None = None  # close the stream after this many chunks


@dataclass
class Result:
    rid: str
    status: int | None = None
    error: str | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    send_s: float = 0.0  # wall clock (time.time: the device step log's clock)
    done_s: float = 0.0

    @property
    def final(self) -> dict[str, Any]:
        return self.chunks[-1] if self.chunks else {}

    @property
    def meta(self) -> dict[str, Any]:
        return self.final.get("meta_info", {})

    @property
    def output_ids(self) -> list[int]:
        return list(self.final.get("output_ids", []))

    @property
    def finish_reason(self) -> dict[str, Any] | None:
        return self.meta.get("finish_reason")


def prompt(rng: random.Random, n: int) -> list[int]:
    """n ordinary token ids (never the tiny config's special ids 0-2), distinct per call."""
    return [rng.randrange(100, 30000) for _ in range(n)]


def rid_of(prefix: str, i: int) -> str:
    # Fixed width: the scheduler aborts by rid prefix (DESIGN.md section 6 pitfalls).
    return f"{prefix}-{i:06d}"


async def _one(
    session: aiohttp.ClientSession, url: str, req: Request, t0: float, timeout_s: float
) -> Result:
    res = Result(req.rid)
    if req.gate is not None:
        t0 = await req.gate.wait()
    if req.delay_s > 0:
        await asyncio.sleep(max(0.0, t0 + req.delay_s - time.perf_counter()))
    body = {
        "rid": req.rid,
        "input_ids": req.input_ids,
        "sampling_params": {
            "max_new_tokens": req.max_new_tokens,
            "ignore_eos": True,
            **req.sampling,
        },
        "stream": req.stream,
        **req.body,
    }
    res.send_s = time.time()
    try:
        async with session.post(
            url + "/generate", json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            res.status = resp.status
            if resp.status != 200:
                res.error = (await resp.text())[:500]
            elif not req.stream:
                res.chunks.append(await resp.json())
            else:
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    res.chunks.append(json.loads(data))
                    if req.disconnect_after is not None and len(res.chunks) >= req.disconnect_after:
                        break  # leaving the context closes the connection: a client abort
    except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    res.done_s = time.time()
    return res


async def _all(url: str, reqs: list[Request], timeout_s: float) -> list[Result]:
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        return list(await asyncio.gather(*(_one(session, url, r, t0, timeout_s) for r in reqs)))


def run_requests(url: str, reqs: list[Request], timeout_s: float = 120.0) -> list[Result]:
    """Send every request concurrently (each after its delay_s); one Result per request."""
    return asyncio.run(_all(url, reqs, timeout_s))


def check_exact(req: Request, res: Result) -> list[str]:
    """Problems with a request that should have produced exactly max_new_tokens tokens."""
    if res.error or res.status != 200:
        return [f"{req.rid}: status {res.status} error {res.error}"]
    n = req.max_new_tokens
    problems = []
    meta = res.meta
    if meta.get("completion_tokens") != n:
        problems.append(f"{req.rid}: completion_tokens {meta.get('completion_tokens')} != {n}")
    if len(res.output_ids) != n:
        problems.append(f"{req.rid}: {len(res.output_ids)} output ids != {n}")
    if meta.get("prompt_tokens") != len(req.input_ids):
        problems.append(f"{req.rid}: prompt_tokens {meta.get('prompt_tokens')}")
    reason = res.finish_reason or {}
    if reason.get("type") != "length" or reason.get("length") != n:
        problems.append(f"{req.rid}: finish_reason {reason}")
    return problems

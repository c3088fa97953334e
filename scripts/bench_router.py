#!/usr/bin/env python3
"""Loopback figures for the admission router (issue #14, items 8-10): added latency against a
direct connection, a 500-connection burst (a router tree given by --base-tree vs this tree),
requests lost / duplicated when a worker is killed mid-stream, and router RSS under a large body.

Everything runs on 127.0.0.1, ports 31400-31499, in bounded loops. The upstream is a fake SGLang
worker in its own process (this file, `worker` sub-command): /v1/loads with a huge admission
budget (nothing queues) and streaming /generate (SSE, chunked, keep-alive), logging each
request's `rid` with one unbuffered write so a SIGKILL loses none. The machine may be shared and
noisy: arms alternate inside every repeat, and each figure is reported as min / median over the
repeats of that repeat's percentile.

    git worktree add /tmp/router-base HEAD      # the version to compare with
    python scripts/bench_router.py --base-tree /tmp/router-base [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
PORTS = {"w0": 31401, "w1": 31402, "base": 31410, "new": 31411}
HERE_TREE = Path(__file__).resolve().parents[1]
BUDGET = 10**9


# -- fake worker ---------------------------------------------------------------------------------
async def _worker_conn(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    tokens: int,
    delay_s: float,
    log_fd: int | None,
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            hdrs = {
                k.strip().lower(): v.strip()
                for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)
            }
            n = int(hdrs.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
            keep = hdrs.get("connection", "").lower() != "close"
            if target.startswith("/v1/loads"):
                rank = {"dp_rank": 0, "fairbatching_prefill_admission_tokens": BUDGET}
                out = json.dumps({"version": "bench", "loads": [rank]}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(out), out)
                )
            elif target == "/generate":
                rid = json.loads(body).get("rid", "")
                if log_fd is not None:
                    os.write(log_fd, f"{rid}\n".encode())
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for k in range(1, tokens + 1):
                    ev = b'data: {"text":"x","meta_info":{"completion_tokens":%d}}\n\n' % k
                    writer.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                    await writer.drain()
                    await asyncio.sleep(delay_s)
                done = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
        pass
    finally:
        writer.close()


async def _worker_main(port: int, tokens: int, delay_s: float, log: str | None) -> None:
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if log else None
    server = await asyncio.start_server(
        lambda r, w: _worker_conn(r, w, tokens, delay_s, log_fd), HOST, port, backlog=4096
    )
    async with server:
        await server.serve_forever()


# -- client --------------------------------------------------------------------------------------
@dataclass
class Result:
    outcome: str  # ok | error_event | http_<status> | broken | connect_error | timeout
    ttft_s: float
    total_s: float


async def request(port: int, rid: str, timeout_s: float = 30.0) -> Result:
    body = json.dumps(
        {"rid": rid, "input_ids": [1] * 16, "sampling_params": {"max_new_tokens": 4}}
    ).encode()
    t0 = time.perf_counter()
    ttft = float("nan")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(
                b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            data = b""
            try:
                while chunk := await reader.read(65536):
                    data += chunk
                    if ttft != ttft and b"data:" in data:
                        ttft = time.perf_counter() - t0
            except ConnectionError:
                pass
            writer.close()
    except TimeoutError:
        return Result("timeout", ttft, time.perf_counter() - t0)
    except OSError:
        return Result("connect_error", ttft, time.perf_counter() - t0)
    total = time.perf_counter() - t0
    status = data[9:12].decode("latin-1", "replace")
    if status != "200":
        outcome = f"http_{status or 'none'}"
    elif b'"error"' in data:
        outcome = "error_event"
    elif data.endswith(b"0\r\n\r\n") and b"[DONE]" in data:
        outcome = "ok"
    else:
        outcome = "broken"
    return Result(outcome, ttft, total)


async def http_get(port: int, path: str) -> int:
    try:
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
            head = await reader.read(64)
            writer.close()
            return int(head[9:12])
    except (OSError, TimeoutError, ValueError):
        return 0


# -- processes -----------------------------------------------------------------------------------
def start_worker(
    port: int, tokens: int, delay_ms: float, log: Path | None = None
) -> subprocess.Popen:
    args = [sys.executable, __file__, "worker", "--port", str(port), "--tokens", str(tokens)]
    args += ["--delay-ms", str(delay_ms)] + (["--log", str(log)] if log else [])
    proc = subprocess.Popen(args)
    _wait(lambda: asyncio.run(http_get(port, "/v1/loads")) == 200, f"worker :{port}")
    return proc


def start_router(tree: Path, port: int, workers: list[int]) -> subprocess.Popen:
    args = [sys.executable, "-m", "fairbatching_sglang.router", "serve", "--port", str(port)]
    for w in workers:
        args += ["--worker-url", f"http://{HOST}:{w}"]
    args += ["--poll-interval-s", "0.1", "--log-level", "error"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(args, env=env, cwd=tree)
    _wait(lambda: asyncio.run(http_get(port, "/health")) == 200, f"router :{port}")
    return proc


def _wait(cond, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up within {timeout_s:g} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            fields[k] = int(v.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


# -- figures -------------------------------------------------------------------------------------
def pct(xs: list[float], p: float) -> float:
    s = sorted(x for x in xs if x == x)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def summarise(name: str, per_repeat: list[float], unit: str = "ms", scale: float = 1e3) -> str:
    v = [x * scale for x in per_repeat]
    return f"{name:<44} min {min(v):8.2f}  median {statistics.median(v):8.2f} {unit}"


async def sequential(port: int, n: int) -> list[Result]:
    return [await request(port, f"s{i}") for i in range(n)]


async def burst(port: int, n: int) -> list[Result]:
    return list(await asyncio.gather(*(request(port, f"b{i}") for i in range(n))))


def bench_latency(arms: dict[str, int], n: int, repeats: int) -> None:
    print(f"\n== added latency: {n} sequential streaming requests (4 tokens), {repeats} repeats")
    rows: dict[str, dict[str, list[float]]] = {a: {} for a in arms}
    for r in range(repeats):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            res = asyncio.run(sequential(arms[arm], n))
            assert all(x.outcome == "ok" for x in res), Counter(x.outcome for x in res)
            for key, vals in (
                ("ttft", [x.ttft_s for x in res]),
                ("total", [x.total_s for x in res]),
            ):
                for p in (50, 99):
                    rows[arm].setdefault(f"{key} p{p}", []).append(pct(vals, p))
    for arm, d in rows.items():
        for key, v in d.items():
            print(summarise(f"{arm} {key}", v))
    if "direct" in rows:
        for arm in (a for a in rows if a != "direct"):
            for key in rows[arm]:
                added = [a - b for a, b in zip(rows[arm][key], rows["direct"][key], strict=True)]
                print(summarise(f"added by {arm} ({key})", added))


def bench_burst(arms: dict[str, int], n: int, repeats: int) -> None:
    print(f"\n== burst: {n} simultaneous connections, total latency, {repeats} repeats")
    rows: dict[str, dict[str, list[float]]] = {a: {"p50": [], "p99": []} for a in arms}
    bad: Counter[str] = Counter()
    for r in range(repeats):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            res = asyncio.run(burst(arms[arm], n))
            bad.update(f"{arm}:{x.outcome}" for x in res if x.outcome != "ok")
            totals = [x.total_s for x in res]
            rows[arm]["p50"].append(pct(totals, 50))
            rows[arm]["p99"].append(pct(totals, 99))
            time.sleep(0.5)
    for arm, d in rows.items():
        for key, v in d.items():
            print(summarise(f"{arm} burst {key}", v))
    if bad:
        print("  non-ok outcomes:", dict(bad))


async def _kill_run(port: int, n: int, victim: subprocess.Popen, log: Path) -> list[Result]:
    tasks = [asyncio.ensure_future(request(port, f"k{i}", timeout_s=60)) for i in range(n)]
    # Kill once the victim holds a good share of streams (a fixed delay may fire before the
    # router dispatched anything on a busy machine); bounded at 20 s.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < n // 4 * 5):
        await asyncio.sleep(0.01)
    victim.kill()  # SIGKILL: mid-stream for the requests it holds
    return list(await asyncio.gather(*tasks))


def bench_kill(tree: Path, label: str, n: int, repeats: int, tmp: Path) -> None:
    print(f"\n== kill ({label}): {n} concurrent streams, 2 workers, one SIGKILLed mid-stream")
    for r in range(repeats):
        logs = [tmp / f"{label}-{r}-w{k}.log" for k in range(2)]
        for p in logs:
            p.unlink(missing_ok=True)
        ws = [start_worker(PORTS[f"w{k}"], tokens=20, delay_ms=50, log=logs[k]) for k in range(2)]
        router = start_router(tree, PORTS[label], [PORTS["w0"], PORTS["w1"]])
        try:
            res = asyncio.run(_kill_run(PORTS[label], n, ws[1], logs[1]))
            _, hwm = rss_mb(router.pid)
        finally:
            for p in (router, *ws):
                stop(p)
        outcomes = Counter(x.outcome for x in res)
        served = Counter(line for p in logs if p.exists() for line in p.read_text().split() if line)
        dup = sum(c - 1 for c in served.values() if c > 1)
        at_victim = len(logs[1].read_text().split()) if logs[1].exists() else 0
        print(
            f"  repeat {r}: {at_victim} reached the killed worker; outcomes {dict(outcomes)}; "
            f"lost (no answer in 60 s) {outcomes['timeout']}; served twice {dup}; "
            f"router peak RSS {hwm:.0f} MB"
        )


async def _big_body(port: int, size: int, chunked: bool) -> tuple[str, float]:
    reader, writer = await asyncio.open_connection(HOST, port)
    frame = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % size
    writer.write(b"POST /generate HTTP/1.1\r\nhost: x\r\n" + frame + b"\r\n\r\n")
    block = b"[" + b"1," * (1 << 19)  # ~1 MiB of JSON-ish bytes
    answer = asyncio.ensure_future(reader.read(64))
    sent = 0
    try:
        while sent < size and not answer.done():
            part = block[: min(len(block), size - sent)]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
            sent += len(part)
        if chunked and not answer.done():
            writer.write(b"0\r\n\r\n")
        async with asyncio.timeout(120):
            head = await answer
    except (ConnectionError, TimeoutError):
        head = answer.result() if answer.done() and not answer.exception() else b""
    writer.close()
    return head[9:12].decode() or "none", sent / 1e6


def bench_rss(trees: dict[str, Path], size_mb: dict[str, int]) -> None:
    print("\n== router RSS while a client sends one large body (1 worker)")
    w = start_worker(PORTS["w0"], tokens=1, delay_ms=0)
    try:
        for arm, tree in trees.items():
            for chunked in (False, True):
                router = start_router(tree, PORTS[arm], [PORTS["w0"]])
                try:
                    before, _ = rss_mb(router.pid)
                    size = size_mb[arm] << 20
                    status, sent = asyncio.run(_big_body(PORTS[arm], size, chunked))
                    _, hwm = rss_mb(router.pid)
                finally:
                    stop(router)
                kind = "chunked" if chunked else "content-length"
                print(
                    f"  {arm}: {size_mb[arm]} MB body ({kind}): answer {status} after "
                    f"{sent:.0f} MB sent; RSS {before:.0f} MB before, peak {hwm:.0f} MB"
                )
    finally:
        stop(w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    wk = sub.add_parser("worker")
    wk.add_argument("--port", type=int, required=True)
    wk.add_argument("--tokens", type=int, default=4)
    wk.add_argument("--delay-ms", type=float, default=1.0)
    wk.add_argument("--log")
    ap.add_argument("--base-tree", type=Path, help="router tree to compare with (e.g. HEAD)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="latency,burst,kill,rss")
    args = ap.parse_args()
    if args.cmd == "worker":
        asyncio.run(_worker_main(args.port, args.tokens, args.delay_ms / 1e3, args.log))
        return
    repeats = 3 if args.quick else 5
    only = set(args.only.split(","))
    tmp = Path("/tmp/bench_router")
    tmp.mkdir(exist_ok=True)
    trees = {"new": HERE_TREE} | ({"base": args.base_tree} if args.base_tree else {})
    print(f"trees: {', '.join(f'{k}={v}' for k, v in trees.items())}; {os.cpu_count()} CPUs")
    if only & {"latency", "burst"}:
        w = start_worker(PORTS["w0"], tokens=4, delay_ms=1)
        routers = {arm: start_router(t, PORTS[arm], [PORTS["w0"]]) for arm, t in trees.items()}
        try:
            arms = {"direct": PORTS["w0"]} | {f"router-{a}": PORTS[a] for a in trees}
            if "latency" in only:
                bench_latency(arms, 100 if args.quick else 200, repeats)
            if "burst" in only:
                bench_burst(arms, 500, repeats)
        finally:
            for p in (*routers.values(), w):
                stop(p)
    if "kill" in only:
        for arm, tree in trees.items():
            bench_kill(tree, arm, 1000, 1 if args.quick else 2, tmp)
    if "rss" in only:
        bench_rss(trees, {"new": 400, "base": 100})


if __name__ == "__main__":
    main()

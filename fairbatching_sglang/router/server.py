"""The router's HTTP side: an asyncio HTTP/1.1 server (h11, which httpx already brings) in front
of the workers, httpx towards them. No framework dependency.

Routes
- POST /generate, /v1/completions, /v1/chat/completions: routed by admission budget
  (`state.AdmissionState`), then proxied; the answer streams through chunk by chunk as the
  worker sends it (SSE token chunks are not buffered).
- POST /flush_cache: sent to every healthy worker.
- GET /health: 200 while at least one worker answers its polls, else 503.
- GET /stats: JSON (queue length, per-worker budget / consumed tokens / in-flight / errors).
- GET /metrics: the same numbers in Prometheus text format.
- GET /v1/loads: every worker's last polled ranks, each tagged with "worker" (the harness's
  load sampler reads it like a single server's).
- any other GET: forwarded to the first healthy worker (model info, /v1/models, ...).

Failures: a worker that refuses the connection leaves routing and the request is re-routed (at
most max_attempts tries, then 502); a stream that breaks after the answer started ends with an SSE
`data: {"error": ...}` event (the replay client records it as failed); a request that waited
queue_timeout_s for room gets 503. Every request gets exactly one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import h11
import httpx

from fairbatching_sglang.router.config import RouterConfig
from fairbatching_sglang.router.request_tokens import request_prefill_tokens
from fairbatching_sglang.router.state import AdmissionState

logger = logging.getLogger(__name__)

ROUTED_PATHS = frozenset({"/generate", "/v1/completions", "/v1/chat/completions"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
LOADS_PATH = "/v1/loads?include=core"


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class RouterServer:
    """Start with `await start()`, stop with `await stop()`; or `serve_in_thread()`."""

    def __init__(self, cfg: RouterConfig) -> None:
        self.cfg = cfg
        self.state = AdmissionState(
            list(cfg.worker_urls),
            settle_s=cfg.settle_s,
            max_admission_tokens=cfg.max_admission_tokens,
        )
        self.port = cfg.port
        # ok: answered 2xx/3xx in full; upstream_http_errors: the worker answered >= 400;
        # upstream_errors: no answer or a broken one; rejected: 400/503 from the router itself.
        self.counts = dict.fromkeys(
            ("requests", "ok", "rejected", "upstream_http_errors", "upstream_errors"), 0
        )
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout_s, read=cfg.request_timeout_s, write=60.0, pool=None
            ),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
        )
        self.poll_client = httpx.AsyncClient(timeout=cfg.poll_timeout_s)
        self._server = await asyncio.start_server(self._handle_conn, cfg.host, cfg.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._poll_loop(i)) for i in range(len(cfg.worker_urls))]
        logger.info(
            "router on http://%s:%d -> %s (poll every %g s)",
            cfg.host,
            self.port,
            ", ".join(cfg.worker_urls),
            cfg.poll_interval_s,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        await self.client.aclose()
        await self.poll_client.aclose()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- polling --------------------------------------------------------------------------------
    async def _poll_loop(self, i: int) -> None:
        url = self.cfg.worker_urls[i].rstrip("/") + LOADS_PATH
        interval = self.cfg.poll_interval_s
        while True:
            sent = time.monotonic()
            try:
                resp = await self.poll_client.get(url)
                if resp.status_code != 200:
                    self.state.on_poll_failed(i, f"/v1/loads answered HTTP {resp.status_code}")
                else:
                    with contextlib.suppress(ValueError):  # on_poll_ok marks it down itself
                        self.state.on_poll_ok(i, resp.json(), sent)
            except httpx.HTTPError as exc:
                self.state.on_poll_failed(i, f"/v1/loads: {type(exc).__name__}: {exc}")
            self._drain()
            await asyncio.sleep(max(0.0, sent + interval - time.monotonic()))

    def _drain(self) -> None:
        for fut, i in self.state.drain(time.monotonic(), alive=lambda f: not f.done()):
            fut.set_result(i)

    async def _acquire(self, tokens: int, front: bool) -> int:
        if not front:
            i = self.state.pick(tokens, time.monotonic())
            if i is not None:
                return i
            if self.cfg.max_queue and len(self.state.queue) >= self.cfg.max_queue:
                raise _Reject(503, "router_queue_full", "router queue is full")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.state.enqueue(fut, tokens, front=front)
        self._drain()
        try:
            return await asyncio.wait_for(fut, self.cfg.queue_timeout_s)
        except TimeoutError:
            raise _Reject(
                503,
                "no_worker_room",
                f"no worker had room for {tokens} prompt tokens within "
                f"{self.cfg.queue_timeout_s:g} s",
            ) from None
        finally:
            self.state.remove(fut)

    # -- HTTP server ----------------------------------------------------------------------------
    async def _handle_conn(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = await self._next_event(conn, reader)
                if not isinstance(event, h11.Request):
                    break
                if conn.they_are_waiting_for_100_continue:
                    await self._send(
                        conn, writer, h11.InformationalResponse(status_code=100, headers=[])
                    )
                body = bytearray()
                while True:
                    ev = await self._next_event(conn, reader)
                    if isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    else:
                        return
                await self._route(conn, writer, event, bytes(body))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(Exception):
                await self._reply(conn, writer, 400, {"error": {"message": str(exc)}})
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            pass
        except Exception as exc:  # a router bug: log it, answer 500 if nothing was sent yet
            logger.exception("router: request failed")
            with contextlib.suppress(Exception):
                await self._reply(conn, writer, 500, {"error": {"message": f"router: {exc!r}"}})
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(1 << 16))
                continue
            return event

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: Any) -> None:
        data = conn.send(event)
        if data:
            writer.write(data)
            await writer.drain()

    async def _reply(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        obj: Any,
        content_type: str = "application/json",
    ) -> None:
        body = obj if isinstance(obj, bytes) else _json_bytes(obj)
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        await self._send(conn, writer, h11.Response(status_code=status, headers=headers))
        await self._send(conn, writer, h11.Data(data=body))
        await self._send(conn, writer, h11.EndOfMessage())

    async def _route(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, req: h11.Request, body: bytes
    ) -> None:
        method = req.method.decode()
        target = req.target.decode()
        path = target.split("?", 1)[0]
        if method == "POST" and path in ROUTED_PATHS:
            await self._proxy_routed(conn, writer, target, req.headers, body)
        elif method == "POST" and path == "/flush_cache":
            await self._flush_cache(conn, writer)
        elif method == "GET" and path == "/health":
            n = sum(w.healthy for w in self.state.workers)
            await self._reply(conn, writer, 200 if n else 503, {"healthy_workers": n})
        elif method == "GET" and path == "/stats":
            await self._reply(conn, writer, 200, self.stats())
        elif method == "GET" and path == "/metrics":
            text = self.prometheus_text().encode()
            await self._reply(conn, writer, 200, text, "text/plain; version=0.0.4")
        elif method == "GET" and path == "/v1/loads":
            await self._reply(conn, writer, 200, self.loads_json())
        elif method == "GET":
            await self._forward_get(conn, writer, target, req.headers)
        else:
            await self._reply(
                conn, writer, 404, {"error": {"message": f"no route {method} {path}"}}
            )

    @staticmethod
    def _forward_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        return [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in headers
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]

    async def _proxy_routed(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        self.counts["requests"] += 1
        try:
            parsed = json.loads(body) if body else {}
        except ValueError as exc:
            self.counts["rejected"] += 1
            await self._reply(conn, writer, 400, {"error": {"message": f"bad JSON: {exc}"}})
            return
        tokens = request_prefill_tokens(parsed, self.cfg.chars_per_token)
        fwd = self._forward_headers(headers)
        front = False
        for _attempt in range(self.cfg.max_attempts):
            try:
                i = await self._acquire(tokens, front)
            except _Reject as rej:
                self.counts["rejected"] += 1
                err = {"error": {"code": rej.code, "message": rej.message}}
                await self._reply(conn, writer, rej.status, err)
                return
            url = self.cfg.worker_urls[i].rstrip("/") + target
            try:
                request = self.client.build_request("POST", url, content=body, headers=fwd)
                resp = await self.client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                logger.warning("worker %s refused a request (%s); re-routing", url, exc)
                self.state.on_dispatch_failed(i, f"dispatch: {type(exc).__name__}: {exc}")
                front = True
                continue
            except httpx.HTTPError as exc:
                self.state.on_finished(i)
                self.counts["upstream_errors"] += 1
                msg = f"worker {self.cfg.worker_urls[i]}: {type(exc).__name__}: {exc}"
                await self._reply(conn, writer, 502, {"error": {"message": msg}})
                return
            try:
                await self._stream_back(conn, writer, resp, i)
            finally:
                await resp.aclose()
                self.state.on_finished(i)
            return
        self.counts["upstream_errors"] += 1
        msg = f"no worker accepted the connection after {self.cfg.max_attempts} attempts"
        await self._reply(conn, writer, 502, {"error": {"message": msg}})

    async def _stream_back(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, resp: httpx.Response, i: int
    ) -> None:
        headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP]
        await self._send(conn, writer, h11.Response(status_code=resp.status_code, headers=headers))
        is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
        try:
            async for chunk in resp.aiter_raw():
                await self._send(conn, writer, h11.Data(data=chunk))
        except httpx.HTTPError as exc:
            self.counts["upstream_errors"] += 1
            msg = f"router: stream from {self.cfg.worker_urls[i]} broke: {type(exc).__name__}"
            logger.warning("%s: %s", msg, exc)
            if not is_sse:
                raise ConnectionError(msg) from exc  # cut the answer: the client sees it short
            event = b"data: " + _json_bytes({"error": {"message": msg}}) + b"\n\n"
            await self._send(conn, writer, h11.Data(data=event))
        else:
            self.counts["ok" if resp.status_code < 400 else "upstream_http_errors"] += 1
        await self._send(conn, writer, h11.EndOfMessage())

    async def _flush_cache(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        results: dict[str, Any] = {}
        for w in self.state.workers:
            if not w.healthy:
                results[w.url] = "skipped (unhealthy)"
                continue
            try:
                r = await self.client.post(w.url.rstrip("/") + "/flush_cache")
                results[w.url] = r.status_code
            except httpx.HTTPError as exc:
                results[w.url] = f"{type(exc).__name__}: {exc}"
        ok = all(v == 200 or str(v).startswith("skipped") for v in results.values())
        await self._reply(conn, writer, 200 if ok else 502, {"workers": results})

    async def _forward_get(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        healthy = [w for w in self.state.workers if w.healthy]
        if not healthy:
            await self._reply(conn, writer, 503, {"error": {"message": "no healthy worker"}})
            return
        try:
            r = await self.client.get(
                healthy[0].url.rstrip("/") + target, headers=self._forward_headers(headers)
            )
        except httpx.HTTPError as exc:
            await self._reply(conn, writer, 502, {"error": {"message": str(exc)}})
            return
        ctype = r.headers.get("content-type", "application/octet-stream")
        await self._reply(conn, writer, r.status_code, r.content, ctype)

    # -- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self._started, 3),
            "poll_interval_s": self.cfg.poll_interval_s,
            **self.counts,
            **self.state.stats(),
        }

    def loads_json(self) -> dict[str, Any]:
        ranks = []
        for w in self.state.workers:
            for rank in (w.last_loads or {}).get("loads", []):
                ranks.append({**rank, "worker": w.url, "worker_healthy": w.healthy})
        return {
            "timestamp": time.time(),
            "version": "fairbatching-router",
            "loads": ranks,
            "router": {"queue_length": len(self.state.queue)},
        }

    def prometheus_text(self) -> str:
        s = self.state.stats()
        lines = [
            "# TYPE fairbatching_router_queue_length gauge",
            f"fairbatching_router_queue_length {s['queue_length']}",
            "# TYPE fairbatching_router_queued_tokens gauge",
            f"fairbatching_router_queued_tokens {s['queued_tokens']}",
            "# TYPE fairbatching_router_requests_total counter",
            f"fairbatching_router_requests_total {self.counts['requests']}",
            "# TYPE fairbatching_router_rejected_total counter",
            f"fairbatching_router_rejected_total {self.counts['rejected']}",
            "# TYPE fairbatching_router_upstream_errors_total counter",
            f"fairbatching_router_upstream_errors_total {self.counts['upstream_errors']}",
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
                    lines.append(
                        f'fairbatching_router_worker_{name}{{worker="{w["url"]}"}} {value}'
                    )
        return "\n".join(lines) + "\n"


class RouterThread:
    """The router on its own event loop in a daemon thread (tests, notebooks)."""

    def __init__(self, cfg: RouterConfig) -> None:
        self.server = RouterServer(cfg)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.server.cfg.host}:{self.server.port}"

    def call(self, fn: Any) -> Any:
        """Run fn() on the router's loop and return its result (to read state race-free)."""
        assert self._loop is not None
        done = threading.Event()
        box: list[Any] = []
        self._loop.call_soon_threadsafe(lambda: (box.append(fn()), done.set()))
        assert done.wait(10)
        return box[0]

    def __enter__(self) -> RouterThread:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "router did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

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
queue_timeout_s for room gets 503. Every request gets exactly one answer; a client that leaves
while its request is queued is not dispatched (counted in `client_gone`).

Exposure: answers name workers by index (`worker 0`), never by URL, and carry exception type
names, not their text (which may quote worker URLs); the log has the details. The client-side
limits (body size, timeouts) are in `request_reader.py`; upstream URLs and headers in
`upstream.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import h11
import httpx

from fairbatching_sglang.router import reporting
from fairbatching_sglang.router.client_shards import ShardedClient
from fairbatching_sglang.router.client_watch import wait_client_gone
from fairbatching_sglang.router.config import RouterConfig
from fairbatching_sglang.router.request_reader import (
    Limits,
    RequestError,
    has_both_framings,
    read_body,
    read_head,
)
from fairbatching_sglang.router.request_tokens import request_prefill_tokens
from fairbatching_sglang.router.state import AdmissionState, parse_loads_body
from fairbatching_sglang.router.upstream import (
    is_origin_form,
    request_headers,
    response_headers,
    upstream_url,
)

logger = logging.getLogger(__name__)

ROUTED_PATHS = frozenset({"/generate", "/v1/completions", "/v1/chat/completions"})
LOADS_PATH = b"/v1/loads?include=core"
LINGER_S = 2.0  # after a 408/413: read and drop the rest so the client sees the answer, not RST


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _ClientGone(Exception):
    """The client closed its connection while its request waited for room."""


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message} if code is None else {"code": code, "message": message}}


@dataclass
class _Exchange:
    """One client connection. close: answer with `Connection: close` and end it afterwards."""

    conn: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    close: bool = False


class RouterServer:
    """Start with `await start()`, stop with `await stop()`; or `serve_in_thread()`."""

    def __init__(self, cfg: RouterConfig) -> None:
        self.cfg = cfg
        self.state = AdmissionState(
            list(cfg.worker_urls),
            settle_s=cfg.settle_s,
            max_admission_tokens=cfg.max_admission_tokens,
        )
        self.bases = [httpx.URL(u) for u in cfg.worker_urls]
        self.limits = Limits(
            max_body_bytes=cfg.max_body_bytes,
            idle_timeout_s=cfg.idle_timeout_s,
            header_timeout_s=cfg.header_timeout_s,
            body_timeout_s=cfg.body_timeout_s,
        )
        self.port = cfg.port
        # ok: answered 2xx/3xx in full; upstream_http_errors: the worker answered >= 400;
        # upstream_errors: no answer or a broken one; rejected: 4xx/503 from the router itself;
        # client_gone: the client left while queued (never dispatched).
        self.counts = dict.fromkeys(
            (
                "requests",
                "ok",
                "rejected",
                "upstream_http_errors",
                "upstream_errors",
                "client_gone",
            ),
            0,
        )
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        self.clients = ShardedClient(
            httpx.Timeout(
                connect=cfg.connect_timeout_s, read=cfg.request_timeout_s, write=60.0, pool=None
            ),
            max_keepalive=512,
        )
        self.poll_client = httpx.AsyncClient(timeout=cfg.poll_timeout_s)
        self._server = await asyncio.start_server(
            self._handle_conn, cfg.host, cfg.port, backlog=cfg.backlog
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._poll_loop(i)) for i in range(len(cfg.worker_urls))]
        logger.info(
            "router on http://%s:%d -> %s (poll every %g s)",
            cfg.host,
            self.port,
            ", ".join(f"worker {i}: {u}" for i, u in enumerate(cfg.worker_urls)),
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
        await self.clients.aclose()
        await self.poll_client.aclose()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- polling --------------------------------------------------------------------------------
    async def _poll_loop(self, i: int) -> None:
        url = upstream_url(self.bases[i], LOADS_PATH)
        interval = self.cfg.poll_interval_s
        while True:
            sent = time.monotonic()
            try:
                await self._poll_once(i, url, sent)
            except Exception as exc:  # a bug or an answer nobody foresaw: this loop must live on
                logger.exception("worker %d: poll failed unexpectedly", i)
                self.state.on_poll_failed(i, f"poll: {type(exc).__name__}")
            self._drain()
            await asyncio.sleep(max(0.0, sent + interval - time.monotonic()))

    async def _poll_once(self, i: int, url: httpx.URL, sent: float) -> None:
        try:
            resp = await self.poll_client.get(url)
        except httpx.HTTPError as exc:
            logger.debug("worker %d: poll %s: %r", i, url, exc)
            self.state.on_poll_failed(i, f"poll: {type(exc).__name__}")
            return
        if resp.status_code != 200:
            self.state.on_poll_failed(i, f"poll: HTTP {resp.status_code}")
            return
        try:
            payload = parse_loads_body(resp.content)
        except ValueError as exc:
            logger.warning("worker %d: /v1/loads is not strict JSON: %s", i, exc)
            self.state.on_poll_failed(i, "poll: invalid JSON")
            return
        with contextlib.suppress(ValueError):  # on_poll_ok marks the worker down itself
            self.state.on_poll_ok(i, payload, sent)

    def _drain(self) -> None:
        for fut, i in self.state.drain(time.monotonic(), alive=lambda f: not f.done()):
            fut.set_result(i)

    async def _acquire(self, ex: _Exchange, tokens: int, front: bool) -> int:
        if not front:
            i = self.state.pick(tokens, time.monotonic())
            if i is not None:
                return i
            if self.cfg.max_queue and len(self.state.queue) >= self.cfg.max_queue:
                raise _Reject(503, "router_queue_full", "router queue is full")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.state.enqueue(fut, tokens, front=front)
        self._drain()
        if fut.done():
            self.state.remove(fut)
            return fut.result()
        gone = asyncio.ensure_future(wait_client_gone(ex.conn, ex.reader))
        try:
            await asyncio.wait(
                {fut, gone}, timeout=self.cfg.queue_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if gone.done():
                raise _ClientGone
            if fut.done():
                return fut.result()
            raise _Reject(
                503,
                "no_worker_room",
                f"no worker had room for {tokens} prompt tokens within "
                f"{self.cfg.queue_timeout_s:g} s",
            )
        except BaseException:
            # Assigned just as the client left (or as we timed out / were cancelled): undo it.
            if fut.done() and not fut.cancelled():
                self.state.on_finished(fut.result())
            raise
        finally:
            gone.cancel()
            if not fut.done():
                fut.cancel()
            self.state.remove(fut)

    # -- HTTP server ----------------------------------------------------------------------------
    async def _handle_conn(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ex = _Exchange(h11.Connection(h11.SERVER), reader, writer)
        try:
            while True:
                req = await read_head(ex.conn, reader, self.limits)
                if req is None:
                    break
                ex.close = has_both_framings(req)
                body = await read_body(ex.conn, reader, req, self.limits, self._continue(ex))
                await self._route(ex, req, body)
                if ex.close or ex.conn.our_state is not h11.DONE:
                    break
                if ex.conn.their_state is not h11.DONE:
                    break
                ex.conn.start_next_cycle()
        except RequestError as err:  # 408/413: the request cannot be framed any further
            self.counts["rejected"] += 1
            with contextlib.suppress(Exception):
                await self._raw_reply(writer, err.status, _error(err.message, err.code))
                await self._linger(reader, writer)
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(Exception):
                await self._raw_reply(writer, exc.error_status_hint, _error(str(exc)))
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError, _ClientGone):
            pass
        except Exception:  # a router bug: log it, answer 500 if nothing was sent yet
            logger.exception("router: request failed")
            with contextlib.suppress(Exception):
                await self._reply(ex, 500, _error("router: internal error (see its log)"))
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _continue(self, ex: _Exchange) -> Any:
        if not ex.conn.they_are_waiting_for_100_continue:
            return None

        async def send() -> None:
            await self._send(ex, h11.InformationalResponse(status_code=100, headers=[]))

        return send

    @staticmethod
    async def _raw_reply(writer: asyncio.StreamWriter, status: int, obj: Any) -> None:
        """An answer outside h11's state machine (the request head may be incomplete)."""
        body = _json_bytes(obj)
        reason = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then drop what the client still sends for a while: closing with unread
        bytes makes the kernel send RST, and the client may lose the 413 it has not read yet."""
        with contextlib.suppress(Exception):
            writer.write_eof()
            async with asyncio.timeout(LINGER_S):
                while await reader.read(1 << 16):
                    pass

    @staticmethod
    async def _send(ex: _Exchange, event: Any) -> None:
        data = ex.conn.send(event)
        if data:
            ex.writer.write(data)
            await ex.writer.drain()

    def _response(self, ex: _Exchange, status: int, headers: list[tuple[str, str]]) -> Any:
        if ex.close:
            headers = [*headers, ("connection", "close")]
        return h11.Response(status_code=status, headers=headers)

    async def _reply(
        self,
        ex: _Exchange,
        status: int,
        obj: Any,
        content_type: str = "application/json",
    ) -> None:
        body = obj if isinstance(obj, bytes) else _json_bytes(obj)
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        await self._send(ex, self._response(ex, status, headers))
        await self._send(ex, h11.Data(data=body))
        await self._send(ex, h11.EndOfMessage())

    async def _route(self, ex: _Exchange, req: h11.Request, body: bytes) -> None:
        method = req.method.decode()
        if not is_origin_form(req.target):
            self.counts["rejected"] += 1
            ex.close = True
            await self._reply(ex, 400, _error("request target must be a path ('/...')"))
            return
        path = req.target.split(b"?", 1)[0].decode("latin-1")
        if method == "POST" and path in ROUTED_PATHS:
            await self._proxy_routed(ex, req, body)
        elif method == "POST" and path == "/flush_cache":
            await self._flush_cache(ex)
        elif method == "GET" and path == "/health":
            n = sum(w.healthy for w in self.state.workers)
            await self._reply(ex, 200 if n else 503, {"healthy_workers": n})
        elif method == "GET" and path == "/stats":
            await self._reply(ex, 200, self.stats())
        elif method == "GET" and path == "/metrics":
            text = self.prometheus_text().encode()
            await self._reply(ex, 200, text, "text/plain; version=0.0.4")
        elif method == "GET" and path == "/v1/loads":
            await self._reply(ex, 200, self.loads_json())
        elif method == "GET":
            await self._forward_get(ex, req)
        else:
            await self._reply(ex, 404, _error(f"no route {method} {path}"))

    async def _proxy_routed(self, ex: _Exchange, req: h11.Request, body: bytes) -> None:
        self.counts["requests"] += 1
        try:
            parsed = json.loads(body) if body else {}
        except ValueError as exc:
            self.counts["rejected"] += 1
            await self._reply(ex, 400, _error(f"bad JSON: {exc}"))
            return
        tokens = request_prefill_tokens(parsed, self.cfg.chars_per_token)
        fwd = request_headers(req.headers)
        front = False
        for _attempt in range(self.cfg.max_attempts):
            try:
                i = await self._acquire(ex, tokens, front)
            except _Reject as rej:
                self.counts["rejected"] += 1
                await self._reply(ex, rej.status, _error(rej.message, rej.code))
                return
            except _ClientGone:
                self.counts["client_gone"] += 1
                raise
            url = upstream_url(self.bases[i], req.target)
            try:
                client = self.clients.pick()
                request = client.build_request("POST", url, content=body, headers=fwd)
                resp = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                logger.warning("worker %d (%s) refused a request (%r); re-routing", i, url, exc)
                self.state.on_dispatch_failed(i, f"dispatch: {type(exc).__name__}")
                front = True
                continue
            except httpx.HTTPError as exc:
                logger.warning("worker %d (%s) failed a request: %r", i, url, exc)
                self.state.on_finished(i)
                self.counts["upstream_errors"] += 1
                msg = f"worker {i} failed before answering ({type(exc).__name__})"
                await self._reply(ex, 502, _error(msg, "upstream_error"))
                return
            try:
                await self._stream_back(ex, resp, i)
            finally:
                await resp.aclose()
                self.state.on_finished(i)
            return
        self.counts["upstream_errors"] += 1
        msg = f"no worker accepted the connection after {self.cfg.max_attempts} attempts"
        await self._reply(ex, 502, _error(msg, "upstream_unreachable"))

    async def _stream_back(self, ex: _Exchange, resp: httpx.Response, i: int) -> None:
        await self._send(ex, self._response(ex, resp.status_code, response_headers(resp.headers)))
        is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
        try:
            async for chunk in resp.aiter_raw():
                await self._send(ex, h11.Data(data=chunk))
        except httpx.HTTPError as exc:
            self.counts["upstream_errors"] += 1
            msg = f"router: stream from worker {i} broke: {type(exc).__name__}"
            logger.warning("%s (%s): %r", msg, self.cfg.worker_urls[i], exc)
            if not is_sse:
                raise ConnectionError(msg) from exc  # cut the answer: the client sees it short
            event = b"data: " + _json_bytes(_error(msg)) + b"\n\n"
            await self._send(ex, h11.Data(data=event))
        else:
            self.counts["ok" if resp.status_code < 400 else "upstream_http_errors"] += 1
        await self._send(ex, h11.EndOfMessage())

    async def _flush_cache(self, ex: _Exchange) -> None:
        results: dict[str, Any] = {}
        for i, w in enumerate(self.state.workers):
            if not w.healthy:
                results[str(i)] = "skipped (unhealthy)"
                continue
            try:
                r = await self.clients.pick().post(upstream_url(self.bases[i], b"/flush_cache"))
                results[str(i)] = r.status_code
            except httpx.HTTPError as exc:
                logger.warning("worker %d: /flush_cache: %r", i, exc)
                results[str(i)] = type(exc).__name__
        ok = all(v == 200 or str(v).startswith("skipped") for v in results.values())
        await self._reply(ex, 200 if ok else 502, {"workers": results})

    async def _forward_get(self, ex: _Exchange, req: h11.Request) -> None:
        healthy = [i for i, w in enumerate(self.state.workers) if w.healthy]
        if not healthy:
            await self._reply(ex, 503, _error("no healthy worker"))
            return
        i = healthy[0]
        url = upstream_url(self.bases[i], req.target)
        try:
            r = await self.clients.pick().get(url, headers=request_headers(req.headers))
        except httpx.HTTPError as exc:
            logger.warning("worker %d: GET %s: %r", i, url, exc)
            await self._reply(ex, 502, _error(f"worker {i} failed ({type(exc).__name__})"))
            return
        ctype = r.headers.get("content-type", "application/octet-stream")
        await self._reply(ex, r.status_code, r.content, ctype)

    # -- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self._started, 3),
            "poll_interval_s": self.cfg.poll_interval_s,
            **self.counts,
            **self.state.stats(),
        }

    def loads_json(self) -> dict[str, Any]:
        return reporting.loads_json(self.state)

    def prometheus_text(self) -> str:
        return reporting.prometheus_text(self.state.stats(), self.counts)


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

"""A tiny HTTP/1.1 server speaking SGLang's HTTP API (enough of it for the replay client, the
SGLang router `smg` and our admission router), in a thread.

POST /generate streams chunked SSE. behavior(body) picks what a request gets: "ok", "500",
"broken" (stream cut mid-way), "hang" (headers, then nothing), "error_chunk" (an SSE chunk with an
"error" key), "raw:<data>" (one chunk `data: <data>` as given, then a token and [DONE]). A body
with "stream": false gets one JSON answer instead.

GET /v1/loads answers like the patched SGLang 0.5.23 (`entrypoints/v1_loads.py`, one DP rank);
set `srv.load` (a dict of per-rank fields, e.g. fairbatching_prefill_admission_tokens or
num_waiting_uncached_tokens) at any time to change what the next poll sees. `srv.num_load_polls`
counts polls and `srv.poll_event` is set at each one (tests wait on it instead of sleeping).
Also served: /health, /health_generate, /get_server_info, /server_info, /get_model_info,
/model_info, /v1/models, /version, /flush_cache. Every request line is logged in `srv.log`.

hold (a threading.Event): when given, a streaming /generate sends its first token chunk and then
waits until the event is set before sending the rest (tests check pass-through, not buffering).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _sse(obj: Any) -> bytes:
    return _chunk(
        b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
    )


HEAD_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)

MODEL = "fake-model"

# Per-rank fields of SGLang 0.5.23's LoadSnapshot "core" section (+ the FairBatching patch field).
DEFAULT_LOAD: dict[str, Any] = {
    "dp_rank": 0,
    "num_running_reqs": 0,
    "num_waiting_reqs": 0,
    "num_waiting_uncached_tokens": 0,
    "num_used_tokens": 0,
    "num_total_tokens": 0,
    "num_active_tokens": 0,
    "num_prealloc_ready_tokens": 0,
    "max_total_num_tokens": 100000,
    "max_running_requests": 256,
    "token_usage": 0.0,
    "gen_throughput": 0.0,
    "cache_hit_rate": 0.0,
    "utilization": 0.0,
    "total_prefill_uncached_tokens": 0,
    "total_prefill_busy_us": 0,
    "decode_moments": None,
    "fairbatching_prefill_admission_tokens": None,
}


def _json_response(obj: Any, status: str = "200 OK") -> bytes:
    body = json.dumps(obj).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class FakeServer:
    def __init__(
        self,
        behavior: Callable[[dict[str, Any]], str] = lambda body: "ok",
        token_delay_s: float = 0.001,
        tokens_per_chunk: int = 1,
        load: dict[str, Any] | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        self.behavior = behavior
        self.token_delay_s = token_delay_s
        self.tokens_per_chunk = tokens_per_chunk
        self.load: dict[str, Any] = dict(load or {})
        self.hold = hold
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.log: list[tuple[float, str, str]] = []
        self.num_load_polls = 0
        self.poll_event = threading.Event()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServer:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening (a worker that goes down); idempotent."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def wait_polls(self, num: int, timeout_s: float = 10.0) -> None:
        """Block until at least `num` /v1/loads polls have arrived in total."""
        deadline = time.monotonic() + timeout_s
        while self.num_load_polls < num:
            left = deadline - time.monotonic()
            assert left > 0, f"only {self.num_load_polls}/{num} load polls within {timeout_s} s"
            self.poll_event.wait(left)
            self.poll_event.clear()

    def loads_json(self) -> dict[str, Any]:
        return {
            "timestamp": datetime.now(UTC).isoformat(),
            "version": "0.5.23",
            "accelerator": None,
            "num_accelerators": 1,
            "loads": [{**DEFAULT_LOAD, "timestamp": time.time(), **self.load}],
        }

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            # Drop open connections too: a stopped worker must look dead, not slow.
            for task in list(self._tasks):
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target = lines[0].split(" ")[:2]
            path = target.split("?", 1)[0]
            self.log.append((time.perf_counter(), method, target))
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            raw = await reader.readexactly(length) if length else b""
            if method == "POST" and path == "/generate":
                await self._generate(json.loads(raw), writer)
            else:
                writer.write(self._get(method, path))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _get(self, method: str, path: str) -> bytes:
        if path == "/v1/loads":
            self.num_load_polls += 1
            self.poll_event.set()
            return _json_response(self.loads_json())
        if path in ("/health", "/health_generate", "/flush_cache"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        if path in ("/get_model_info", "/model_info"):
            return _json_response(
                {"model_path": MODEL, "tokenizer_path": None, "is_generation": True}
            )
        if path in ("/get_server_info", "/server_info"):
            return _json_response(
                {"model_path": MODEL, "served_model_name": MODEL, "version": "0.5.23"}
            )
        if path == "/v1/models":
            return _json_response(
                {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]}
            )
        if path == "/version":
            return _json_response({"version": "0.5.23"})
        return _json_response({"error": f"no route {method} {path}"}, "404 Not Found")

    async def _generate(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        self.received.append((time.perf_counter(), body))
        mode = self.behavior(body)
        n = int(body["sampling_params"]["max_new_tokens"])
        if mode == "500":
            writer.write(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                b"Connection: close\r\n\r\nboom"
            )
            return
        if not body.get("stream", False) and mode == "ok":
            meta = {"completion_tokens": n, "prompt_tokens": len(body.get("input_ids") or [])}
            writer.write(_json_response({"text": "x" * n, "meta_info": meta}))
            return
        if mode == "hang":
            writer.write(HEAD_OK)
            await writer.drain()
            await asyncio.sleep(30)
            return
        writer.write(HEAD_OK)
        if mode.startswith("raw:"):  # one chunk with this data, then a first token and [DONE]
            writer.write(_sse(mode[4:].encode()))
            writer.write(_sse({"text": "x", "meta_info": {"completion_tokens": 1}}))
            writer.write(_sse(b"[DONE]"))
        elif mode == "error_chunk":
            writer.write(_sse({"error": {"message": "engine failure"}}))
        else:
            sent = 0
            while sent < n:
                sent = min(n, sent + self.tokens_per_chunk)
                writer.write(_sse({"text": "x", "meta_info": {"completion_tokens": sent}}))
                await writer.drain()
                if mode == "broken" and sent >= 1:
                    writer.transport.abort()  # cut the stream without the final chunk
                    return
                if self.hold is not None and sent == self.tokens_per_chunk:
                    await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 30)
                await asyncio.sleep(self.token_delay_s)
            writer.write(_sse(b"[DONE]"))
        writer.write(b"0\r\n\r\n")


class FakeServerProcess:
    """A default FakeServer in a child process: for timing tests, where a server thread in the
    test's own process competes with the replay client for the GIL and shows up as dispatch lag
    that is the test's, not the client's. `received` (the /generate bodies) is filled on exit."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServerProcess:
        import subprocess
        import sys
        from pathlib import Path

        code = (
            "import json, sys\n"
            "from tests.harness.fake_server import FakeServer\n"
            "with FakeServer() as srv:\n"
            "    print(srv.port, flush=True)\n"
            "    sys.stdin.read()\n"
            "print(json.dumps([b for _, b in srv.received]), flush=True)\n"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self._proc.kill()
            raise RuntimeError(f"fake server process did not start: {line!r}")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._proc.communicate(input="", timeout=30)
        self.received = json.loads(out.strip().splitlines()[-1]) if out.strip() else []

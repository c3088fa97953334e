"""A tiny HTTP/1.1 server speaking SGLang's streaming /generate (chunked SSE), in a thread.

behavior(body) picks what a request gets: "ok", "500", "broken" (stream cut mid-way), "hang"
(headers, then nothing), "error_chunk" (an SSE chunk with an "error" key).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
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


class FakeServer:
    def __init__(
        self,
        behavior: Callable[[dict[str, Any]], str] = lambda body: "ok",
        token_delay_s: float = 0.001,
        tokens_per_chunk: int = 1,
    ) -> None:
        self.behavior = behavior
        self.token_delay_s = token_delay_s
        self.tokens_per_chunk = tokens_per_chunk
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServer:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = json.loads(await reader.readexactly(length))
            self.received.append((time.perf_counter(), body))
            mode = self.behavior(body)
            n = int(body["sampling_params"]["max_new_tokens"])
            if mode == "500":
                writer.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                    b"Connection: close\r\n\r\nboom"
                )
            elif mode == "hang":
                writer.write(HEAD_OK)
                await writer.drain()
                await asyncio.sleep(30)
            else:
                writer.write(HEAD_OK)
                if mode == "error_chunk":
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
                        await asyncio.sleep(self.token_delay_s)
                    writer.write(_sse(b"[DONE]"))
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

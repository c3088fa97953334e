"""Reading one HTTP/1.1 request off a client connection, with limits.

Without limits one client could hold the router's memory (a 400 MB body is buffered whole, then
parsed as JSON) or its connections (a slow-loris sender that never finishes its headers is never
closed). So:
- idle_timeout_s: a connection with no byte of a new request for this long is closed quietly
  (keep-alive idle; nothing was asked, so nothing is answered).
- header_timeout_s: once a request's first byte has arrived, its head must be complete within
  this long, else 408.
- body_timeout_s: the whole body must arrive within this long after the head, else 408.
- max_body_bytes: a larger Content-Length is refused before reading (and before "100 Continue");
  a chunked body is refused as soon as it grows past the limit; 413 either way.
After a 408/413 the connection is closed (the rest of the request cannot be framed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11

READ_SIZE = 1 << 16


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    idle_timeout_s: float
    header_timeout_s: float
    body_timeout_s: float


class RequestError(Exception):
    """The request cannot be served as sent: answer `status` and close the connection."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Idle(Exception):
    """No byte of a new request within idle_timeout_s."""


def _buffered(conn: h11.Connection) -> int:
    return len(conn.trailing_data[0])


async def _receive(conn: h11.Connection, reader: asyncio.StreamReader, deadline: float) -> None:
    async with asyncio.timeout_at(deadline):
        conn.receive_data(await reader.read(READ_SIZE))


def declared_length(req: h11.Request) -> int | None:
    for name, value in req.headers:
        if name == b"content-length":
            return int(value)  # h11 has validated it
    return None


def has_both_framings(req: h11.Request) -> bool:
    """Content-Length and Transfer-Encoding together: h11 frames by the latter, but a front proxy
    may have used the former (request smuggling); the connection is closed after the answer."""
    names = {name for name, _ in req.headers}
    return b"content-length" in names and b"transfer-encoding" in names


async def read_head(
    conn: h11.Connection, reader: asyncio.StreamReader, lim: Limits
) -> h11.Request | None:
    """The next request's head; None when the client closed or idled out between requests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lim.idle_timeout_s
    started = _buffered(conn) > 0  # pipelined bytes already here
    if started:
        deadline = min(deadline, loop.time() + lim.header_timeout_s)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                await _receive(conn, reader, deadline)
            except TimeoutError:
                if not started and _buffered(conn) == 0:
                    return None
                raise RequestError(
                    408, "header_timeout", "request head not received in time"
                ) from None
            if not started and _buffered(conn) > 0:
                started = True
                deadline = min(deadline, loop.time() + lim.header_timeout_s)
            continue
        if isinstance(event, h11.Request):
            return event
        return None  # ConnectionClosed (or a stray event): nothing to answer


async def read_body(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    req: h11.Request,
    lim: Limits,
    send_continue: Callable[[], Awaitable[None]] | None = None,
) -> bytes:
    """The request's body, within max_body_bytes and body_timeout_s (RequestError otherwise).
    send_continue: sends "100 Continue" to a client waiting for it, once the size is accepted."""
    n = declared_length(req)
    if n is not None and n > lim.max_body_bytes:
        raise RequestError(
            413, "body_too_large", f"request body of {n} bytes exceeds {lim.max_body_bytes}"
        )
    if send_continue is not None:
        await send_continue()
    deadline = asyncio.get_running_loop().time() + lim.body_timeout_s
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                await _receive(conn, reader, deadline)
            except TimeoutError:
                raise RequestError(
                    408, "body_timeout", "request body not received in time"
                ) from None
            continue
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > lim.max_body_bytes:
                raise RequestError(
                    413, "body_too_large", f"request body exceeds {lim.max_body_bytes} bytes"
                )
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:  # the client closed mid-body
            raise ConnectionError("client closed the connection mid-body")

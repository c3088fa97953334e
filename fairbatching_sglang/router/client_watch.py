"""Noticing that a client went away while its request waits at the router.

A queued request has nothing to write to its client, so a closed connection would only show
when the answer is written, after the request was dispatched and a worker spent a prefill on it.
While waiting, the router therefore keeps reading the connection: bytes that arrive are handed
to h11's buffer (a pipelined next request, parsed after this answer), EOF means the client left.
"""

from __future__ import annotations

import asyncio

import h11

# Past this many pipelined bytes the watch stops reading (h11 would buffer them unbounded).
MAX_PIPELINED_BYTES = 1 << 16


async def wait_client_gone(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
    """Returns when the client closed its side; never returns for a live client (cancel it).
    A client that half-closes (shutdown(SHUT_WR)) after its request counts as gone."""
    while len(conn.trailing_data[0]) < MAX_PIPELINED_BYTES:
        try:
            data = await reader.read(MAX_PIPELINED_BYTES)
        except ConnectionError:
            return
        if not data:
            return
        conn.receive_data(data)
    await asyncio.Event().wait()  # stopped watching: wait to be cancelled

"""Several httpx clients towards the workers, used in turn, instead of one.

Why: httpcore 1.0's connection pool re-scans every connection for every waiting request each
time a request starts or ends (`ConnectionPool._assign_requests_to_connections`), which is
quadratic in the requests in flight. Profiled on a 500-connection burst through one client:
15 s of the router's CPU went there (22M `is_idle` calls), every answer arrived after ~17 s.
With the load spread over SHARDS pools the scans stay short (~(n / SHARDS)^2 each).
"""

from __future__ import annotations

import itertools

import httpx

SHARDS = 32


class ShardedClient:
    def __init__(self, timeout: httpx.Timeout, max_keepalive: int, shards: int = SHARDS) -> None:
        per = max(1, max_keepalive // shards)
        tls = httpx.create_ssl_context()  # one for all: loading the CA bundle costs ~0.1 s each
        self.clients = [
            httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=per),
                verify=tls,
            )
            for _ in range(shards)
        ]
        self._next = itertools.cycle(range(shards))

    def pick(self) -> httpx.AsyncClient:
        return self.clients[next(self._next)]

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()

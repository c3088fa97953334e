"""Sample the server's `GET /v1/loads` every second into loads.jsonl while a replay runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import httpx


async def sample_loads(
    base_url: str, path: Path, stop: asyncio.Event, period_s: float = 1.0
) -> int:
    """Append one JSON line per sample until stop is set; returns the number of samples.

    A failed poll is recorded too (a server that stops answering is part of the story)."""
    num = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=period_s * 2) as client:
        with path.open("a") as f:
            while not stop.is_set():
                row: dict[str, object] = {"time_s": time.time()}
                try:
                    resp = await client.get("/v1/loads")
                    row["http_status"] = resp.status_code
                    row["loads"] = resp.json() if resp.status_code == 200 else resp.text[:300]
                except (httpx.HTTPError, ValueError) as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                f.write(json.dumps(row) + "\n")
                f.flush()
                num += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=period_s)
    return num

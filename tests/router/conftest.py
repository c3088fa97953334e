"""Helpers for router tests: fake SGLang workers on loopback (tests/harness/fake_server.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll a condition (state is read, not slept on); fail with `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def generate_body(num_tokens: int = 8, max_new_tokens: int = 3, stream: bool = True) -> dict:
    return {
        "input_ids": list(range(1000, 1000 + num_tokens)),
        "sampling_params": {"max_new_tokens": max_new_tokens, "ignore_eos": True},
        "stream": stream,
    }


def stream_generate(base_url: str, body: dict[str, Any], timeout_s: float = 20.0) -> list[Any]:
    """POST /generate and return the decoded SSE events ("[DONE]" kept as the string)."""
    events: list[Any] = []
    with httpx.stream("POST", base_url + "/generate", json=body, timeout=timeout_s) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data:"):
                data = line[5:].strip()
                events.append(data if data == "[DONE]" else json.loads(data))
    return events

"""Router settings (frozen; the CLI builds one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterConfig:
    """worker_urls: base URLs of the patched SGLang servers (http://host:port).

    poll_interval_s: each worker's /v1/loads is read this often (smg: whole seconds, >= 1).
    poll_timeout_s: a poll slower than this counts as failed; the worker leaves routing until a
        poll succeeds again.
    settle_s: a dispatch made less than this before a poll was sent may not be visible in that
        poll yet (IPC to the scheduler); its tokens stay counted as consumed after the poll.
    max_admission_tokens: an idle replica's budget (`core.load_estimate.idle_admission_tokens`);
        a prompt larger than it needs only that much (`core.routing.choose_by_admission_budget`).
        None: use the largest budget any replica has reported so far.
    queue_timeout_s: a request that waited this long at the router for room gets 503.
    max_queue: requests beyond this many waiting get 503 at once (0 = unbounded).
    chars_per_token: prompt-size estimate for requests without input_ids (text / chars_per_token).
    max_attempts: a request whose worker refuses the connection is re-routed at most this many
        times in total (then 502).
    max_body_bytes, idle_timeout_s, header_timeout_s, body_timeout_s: client-side limits
        (`request_reader.py`): 413 beyond the body size, 408 for a head or body that is too slow,
        idle keep-alive connections closed.
    backlog: the listen queue. asyncio's default of 100 overflows on a burst of simultaneous
        connections; the kernel then drops SYNs and clients retry after 1, 3, 7 s.
    """

    worker_urls: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 30000
    poll_interval_s: float = 0.1
    poll_timeout_s: float = 2.0
    settle_s: float = 0.05
    max_admission_tokens: int | None = None
    queue_timeout_s: float = 600.0
    max_queue: int = 0
    chars_per_token: float = 4.0
    connect_timeout_s: float = 10.0
    request_timeout_s: float | None = None
    max_attempts: int = 3
    max_body_bytes: int = 64 << 20
    idle_timeout_s: float = 75.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    backlog: int = 4096

    def __post_init__(self) -> None:
        if not self.worker_urls:
            raise ValueError("at least one worker URL is needed")
        if len(set(self.worker_urls)) != len(self.worker_urls):
            raise ValueError("worker URLs must be distinct")
        if self.poll_interval_s <= 0 or self.poll_timeout_s <= 0:
            raise ValueError("poll interval and timeout must be > 0")
        if self.chars_per_token <= 0:
            raise ValueError("chars_per_token must be > 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.max_body_bytes < 1 or self.backlog < 1:
            raise ValueError("max_body_bytes and backlog must be >= 1")
        if min(self.idle_timeout_s, self.header_timeout_s, self.body_timeout_s) <= 0:
            raise ValueError("client timeouts must be > 0")

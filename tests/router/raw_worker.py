"""A worker whose every answer the test writes by hand (invalid JSON, odd headers, a dropped
connection), recording each request's method, target and headers. http.server in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, target, headers) -> (status, headers, body), or None to drop the connection unanswered
Answer = Callable[[str, str, dict[str, str]], tuple[int, list[tuple[str, str]], bytes] | None]


def loads_body(budget: str) -> bytes:
    """A /v1/loads answer with the budget spelled as given (e.g. "Infinity", "5000")."""
    return (
        '{"version": "0.5.23", "loads": [{"dp_rank": 0, '
        f'"fairbatching_prefill_admission_tokens": {budget}}}]}}'
    ).encode()


class RawWorker:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                if n:
                    self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers))
                out = outer.answer(self.command, self.path, headers)
                if out is None:
                    self.close_connection = True
                    return
                status, extra, body = out
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            do_GET = do_POST = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawWorker:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

"""What the router sends towards a worker: the URL and the headers, built from parsed parts only.

URL: the old `worker_url + target` string concatenation let a client pick the host: the target
`@127.0.0.1:31699/secret` turned `http://w:30001` into `http://w:30001@127.0.0.1:31699/secret`
(userinfo `w:30001`, sent as an `Authorization: Basic` header, to another port). Now only
origin-form targets (`/path?query`) are accepted, and they only ever replace the path of the
parsed worker URL; host and port come from the configuration alone.

Headers: hop-by-hop headers (RFC 9110 section 7.6.1), including every header *named* in a
`Connection:` header, apply to one connection and are not forwarded, either way.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",  # httpx frames the body it sends itself
        "host",
    }
)


class BadTarget(ValueError):
    """A request target that is not origin-form (absolute URL, authority, `*`, ...)."""


def is_origin_form(target: bytes) -> bool:
    # "//x" stays on the worker too: only the path is replaced, never the authority.
    return target.startswith(b"/")


def upstream_url(base: httpx.URL, target: bytes) -> httpx.URL:
    """The worker URL `base` with its path replaced by base path + the client's `target`."""
    if not is_origin_form(target):
        raise BadTarget(f"request target must start with '/': {target[:80]!r}")
    return base.copy_with(raw_path=base.raw_path.rstrip(b"/") + target)


def _connection_named(pairs: list[tuple[str, str]]) -> set[str]:
    names: set[str] = set()
    for k, v in pairs:
        if k.lower() == "connection":
            names.update(t.strip().lower() for t in v.split(",") if t.strip())
    return names


def filter_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers minus hop-by-hop ones and those the Connection header names."""
    pairs = list(headers)
    drop = HOP_BY_HOP | _connection_named(pairs)
    return [(k, v) for k, v in pairs if k.lower() not in drop]


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """A client's (h11, lower-cased bytes) headers as forwarded to a worker."""
    return filter_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


def response_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """A worker's answer headers as passed back to the client."""
    return filter_headers(headers.multi_items())

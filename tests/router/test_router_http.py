"""The admission router end to end on loopback: fake patched-SGLang workers serve /v1/loads
(with fairbatching_prefill_admission_tokens) and streaming /generate."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from fairbatching_sglang.router.config import RouterConfig
from fairbatching_sglang.router.server import RouterThread
from tests.harness.fake_server import FakeServer
from tests.router.conftest import generate_body, stream_generate, wait_until

BUDGET = "fairbatching_prefill_admission_tokens"


def _router(*workers: FakeServer, **kw) -> RouterThread:
    cfg = RouterConfig(
        worker_urls=tuple(w.base_url for w in workers),
        port=0,
        poll_interval_s=kw.pop("poll_interval_s", 0.01),
        **kw,
    )
    return RouterThread(cfg)


def _healthy(router: RouterThread, n: int) -> None:
    wait_until(
        lambda: router.call(lambda: sum(w.healthy for w in router.server.state.workers)) == n,
        what=f"{n} healthy workers",
    )


def _stats(router: RouterThread) -> dict:
    return httpx.get(router.base_url + "/stats", timeout=5).json()


def test_routes_to_the_largest_budget_and_streams() -> None:
    with (
        FakeServer(load={BUDGET: 1000}) as a,
        FakeServer(load={BUDGET: 5000}) as b,
        _router(a, b) as router,
    ):
        _healthy(router, 2)
        for _ in range(3):
            events = stream_generate(router.base_url, generate_body(num_tokens=1500))
            assert [e["meta_info"]["completion_tokens"] for e in events[:-1]] == [1, 2, 3]
            assert events[-1] == "[DONE]"
        assert (len(a.received), len(b.received)) == (0, 3)
        assert len(b.received[0][1]["input_ids"]) == 1500  # the body passes through untouched
        # Budgets flip: the next request follows the new poll.
        a.load[BUDGET], b.load[BUDGET] = 9000, 10
        wait_until(lambda: _stats(router)["workers"][0]["budget"] == 9000, what="new poll")
        r = httpx.post(router.base_url + "/generate", json=generate_body(stream=False), timeout=10)
        assert r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] == 3
        assert len(a.received) == 1


def test_queues_fifo_until_a_poll_shows_room() -> None:
    with (
        FakeServer(load={BUDGET: 0}) as a,
        FakeServer(load={BUDGET: 100}) as b,
        _router(a, b, max_admission_tokens=100_000) as router,
        ThreadPoolExecutor(4) as pool,
    ):
        _healthy(router, 2)
        first = pool.submit(stream_generate, router.base_url, generate_body(num_tokens=500))
        wait_until(lambda: _stats(router)["queue_length"] == 1, what="first request queued")
        # A small request that b could take must still wait behind the queued one (FIFO).
        second = pool.submit(stream_generate, router.base_url, generate_body(num_tokens=50))
        wait_until(lambda: _stats(router)["queue_length"] == 2, what="second request queued")
        assert not a.received and not b.received
        metrics = httpx.get(router.base_url + "/metrics", timeout=5).text
        assert "fairbatching_router_queue_length 2" in metrics
        a.load[BUDGET] = 10_000  # room appears on the next poll
        assert first.result(10)[-1] == "[DONE]" and second.result(10)[-1] == "[DONE]"
        assert [len(body["input_ids"]) for _, body in a.received] == [500, 50]
        s = _stats(router)
        assert s["queue_length"] == 0 and s["num_queued_total"] == 2 and s["ok"] == 2


def test_queue_timeout_answers_503() -> None:
    with (
        FakeServer(load={BUDGET: 10}) as a,
        _router(a, queue_timeout_s=0.2, max_admission_tokens=100) as router,
    ):
        _healthy(router, 1)
        r = httpx.post(router.base_url + "/generate", json=generate_body(num_tokens=11), timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_worker_room"
        assert not a.received and _stats(router)["queue_length"] == 0


def test_token_chunks_pass_through_unbuffered() -> None:
    hold = threading.Event()
    with FakeServer(load={BUDGET: 10_000}, hold=hold) as a, _router(a) as router:
        _healthy(router, 1)
        body = generate_body(max_new_tokens=4)
        with httpx.stream("POST", router.base_url + "/generate", json=body, timeout=20) as resp:
            lines = resp.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            # The worker is still holding the rest of its answer: this chunk was not buffered.
            assert not hold.is_set()
            assert json.loads(first[5:])["meta_info"]["completion_tokens"] == 1
            hold.set()
            rest = [line for line in lines if line.startswith("data:")]
        assert [json.loads(x[5:])["meta_info"]["completion_tokens"] for x in rest[:-1]] == [2, 3, 4]
        assert rest[-1] == "data: [DONE]"


def test_worker_down_is_skipped_and_refused_requests_rerouted() -> None:
    with FakeServer(load={BUDGET: 100}) as a, FakeServer(load={BUDGET: 5000}) as b:
        # Slow polls: b goes down between two polls, so the dispatch itself finds it dead.
        with _router(a, b, poll_interval_s=3600) as router:
            _healthy(router, 2)
            b.stop()
            events = stream_generate(router.base_url, generate_body(num_tokens=10))
            assert events[-1] == "[DONE]" and len(a.received) == 1
            w = _stats(router)["workers"][1]
            assert w["num_dispatch_failures"] == 1 and not w["healthy"]
            assert "ConnectError" in w["last_error"]
        # Fast polls: the failed poll alone takes it out of routing; /health tracks the fleet.
        with _router(a, b) as router:
            wait_until(lambda: _stats(router)["workers"][1]["num_poll_failures"] > 0, what="poll")
            assert stream_generate(router.base_url, generate_body())[-1] == "[DONE]"
            assert httpx.get(router.base_url + "/health", timeout=5).json()["healthy_workers"] == 1
            a.stop()
            wait_until(lambda: httpx.get(router.base_url + "/health").status_code == 503)


def test_broken_worker_stream_ends_with_an_error_event() -> None:
    with (
        FakeServer(lambda body: "broken", load={BUDGET: 10_000}) as a,
        _router(a) as router,
    ):
        _healthy(router, 1)
        events = stream_generate(router.base_url, generate_body(max_new_tokens=5))
        assert events[0]["meta_info"]["completion_tokens"] == 1
        assert "broke" in events[-1]["error"]["message"]
        assert _stats(router)["upstream_errors"] == 1


def test_no_request_lost_under_concurrency() -> None:
    n = 60
    with (
        FakeServer(load={BUDGET: 3000}) as a,
        FakeServer(load={BUDGET: 2000}) as b,
        FakeServer(load={BUDGET: None}) as dark,  # publishes no budget: not routed to
        _router(a, b, dark, max_admission_tokens=4000) as router,
        ThreadPoolExecutor(16) as pool,
    ):
        _healthy(router, 3)
        sizes = [(i * 37) % 900 + 1 for i in range(n)]
        futs = [
            pool.submit(stream_generate, router.base_url, generate_body(num_tokens=s))
            for s in sizes
        ]
        results = [f.result(30) for f in futs]
        assert all(r[-1] == "[DONE]" and len(r) == 4 for r in results)
        assert len(a.received) + len(b.received) == n and not dark.received
        got = sorted(len(body["input_ids"]) for _, body in a.received + b.received)
        assert got == sorted(sizes)
        s = _stats(router)
        assert s["requests"] == s["ok"] == n and s["rejected"] == 0 and s["queue_length"] == 0
        assert all(w["in_flight"] == 0 for w in s["workers"])


def test_fleet_without_budgets_falls_back_and_aggregates_loads() -> None:
    hold = threading.Event()
    with (
        FakeServer(hold=hold) as a,
        FakeServer(hold=hold) as b,
        _router(a, b) as router,
        ThreadPoolExecutor(2) as pool,
    ):
        _healthy(router, 2)
        # No budget anywhere (stock servers): least in-flight. The first stays in flight on a.
        first = pool.submit(stream_generate, router.base_url, generate_body())
        wait_until(lambda: len(a.received) == 1, what="first request at a")
        second = pool.submit(stream_generate, router.base_url, generate_body())
        wait_until(lambda: len(b.received) == 1, what="second request at b")
        hold.set()
        assert first.result(10)[-1] == second.result(10)[-1] == "[DONE]"
        assert _stats(router)["num_fallback_picks"] == 2
        loads = httpx.get(router.base_url + "/v1/loads", timeout=5).json()
        assert {x["worker"] for x in loads["loads"]} == {0, 1}
        assert httpx.get(router.base_url + "/get_model_info").json()["model_path"] == "fake-model"
        r = httpx.post(router.base_url + "/flush_cache", timeout=5)
        assert r.status_code == 200 and set(r.json()["workers"].values()) == {200}


def test_cli_serves() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FakeServer(load={BUDGET: 10_000}) as a:
        code = "from fairbatching_sglang.cli import app; app()"
        args = ["router", "serve", "--worker-url", a.base_url, "--port", str(port)]
        proc = subprocess.Popen([sys.executable, "-c", code, *args])
        try:
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(url + "/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    assert proc.poll() is None, "router exited"
                    return False

            wait_until(up, timeout_s=30, what="router CLI /health")
            assert stream_generate(url, generate_body())[-1] == "[DONE]"
        finally:
            proc.terminate()
            proc.wait(10)


def test_worker_errors_pass_through_and_expect_100_continue() -> None:
    with (
        FakeServer(lambda body: "500" if body.get("fail") else "ok", load={BUDGET: 10_000}) as a,
        _router(a) as router,
    ):
        _healthy(router, 1)
        r = httpx.post(router.base_url + "/generate", json={**generate_body(), "fail": 1})
        assert r.status_code == 500 and r.text == "boom"
        # A client that waits for "100 Continue" before sending its body (curl on large bodies).
        body = json.dumps(generate_body(stream=False)).encode()
        with socket.create_connection(("127.0.0.1", router.server.port), timeout=10) as sk:
            sk.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            assert sk.recv(1024).startswith(b"HTTP/1.1 100 ")
            sk.sendall(body)
            answer = b""
            while chunk := sk.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"completion_tokens": 3' in answer
        s = _stats(router)
        assert (s["upstream_http_errors"], s["ok"], s["upstream_errors"]) == (1, 1, 0)

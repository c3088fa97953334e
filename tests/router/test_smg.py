"""The maintained SGLang router `smg` (PyPI `smg==1.13.0`, extra `cluster`) against fake workers
on loopback: it proxies and streams /generate, polls /v1/loads, and its load-aware policy reads
SGLang's own load fields, but it drops FairBatching's admission budget (see
fairbatching_sglang/router/README.md). Skipped when the smg binary is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.harness.fake_server import FakeServer
from tests.router.conftest import generate_body, stream_generate, wait_until

BUDGET = "fairbatching_prefill_admission_tokens"


def _smg() -> str | None:
    local = Path(sys.executable).parent / "smg"
    return str(local) if local.exists() else shutil.which("smg")


SMG = _smg()
pytestmark = pytest.mark.skipif(
    SMG is None, reason="smg not installed (pip install -e '.[cluster]' or smg==1.13.0)"
)


@contextmanager
def smg(workers: list[FakeServer], *args: str, log: Path) -> Iterator[str]:
    assert SMG is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [SMG, "launch", "--host", "127.0.0.1", "--port", str(port), "--worker-urls"]
    argv += [w.base_url for w in workers]
    argv += ["--load-monitor-interval", "1", "--log-level", "warn", *args]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"smg exited ({proc.returncode}): {log.read_text()[-2000:]}"
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout_s=30, what="smg /health")
        # Two polls each: the first poll's answer has reached the policy by the second.
        for w in workers:
            w.wait_polls(w.num_load_polls + 2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its graceful stop waits 5 s for load balancers
        proc.wait(10)


def test_round_robin_proxies_and_streams(tmp_path: Path) -> None:
    hold = threading.Event()
    hold.set()  # no holding until the pass-through check below
    with FakeServer(hold=hold) as a, FakeServer(hold=hold) as b:
        with smg([a, b], "--policy", "round_robin", log=tmp_path / "smg.log") as url:
            for _ in range(6):
                events = stream_generate(url, generate_body(num_tokens=100, max_new_tokens=4))
                assert [e["meta_info"]["completion_tokens"] for e in events[:-1]] == [1, 2, 3, 4]
                assert events[-1] == "[DONE]"
            hold.clear()
            body = generate_body(max_new_tokens=3)
            with httpx.stream("POST", url + "/generate", json=body, timeout=20) as resp:
                lines = resp.iter_lines()
                first = next(line for line in lines if line.startswith("data:"))
                assert not hold.is_set()  # smg streamed the first chunk while the worker held
                hold.set()
                assert [x for x in lines if x.startswith("data:")][-1] == "data: [DONE]"
            assert json.loads(first[5:])["meta_info"]["completion_tokens"] == 1
        assert len(a.received) + len(b.received) == 7 and min(len(a.received), len(b.received)) >= 3
        assert len(a.received[0][1]["input_ids"]) == 100
        # What smg polls: SGLang's load endpoint with these sections.
        assert any(t == "/v1/loads?include=core,disagg,queues,memory" for _, _, t in a.log)


def test_least_load_follows_sglang_fields_not_the_admission_budget(tmp_path: Path) -> None:
    # a: long waiting queue (below smg's overload veto of 8 waiting requests) but a huge
    # FairBatching budget; b: idle queue, no budget. smg's least_load scores queued tokens /
    # throughput, so b gets everything; the budget never reaches it.
    with (
        FakeServer(
            load={"num_waiting_uncached_tokens": 50_000, "num_waiting_reqs": 2, BUDGET: 10**6}
        ) as a,
        FakeServer(load={BUDGET: 0}) as b,
    ):
        with smg([a, b], "--policy", "least_load", log=tmp_path / "smg.log") as url:
            for _ in range(6):
                assert stream_generate(url, generate_body(num_tokens=100))[-1] == "[DONE]"
            exported = httpx.get(url + "/get_loads", timeout=5).json()
        assert (len(a.received), len(b.received)) == (0, 6)
    ranks = {x["worker"]: x for x in exported["loads"]}
    assert ranks[a.base_url]["num_waiting_uncached_tokens"] == 50_000  # parsed...
    assert BUDGET not in ranks[a.base_url]  # ...while the FairBatching field is dropped


def test_all_workers_over_the_cap_are_refused_not_queued(tmp_path: Path) -> None:
    # smg has no wait-for-room: with least_load's waiting cap every worker is vetoed -> 503.
    loaded = {"num_waiting_reqs": 20}
    with FakeServer(load=loaded) as a, FakeServer(load=loaded) as b:
        args = ["--policy", "least_load", "--least-load-max-waiting-requests", "5"]
        args += ["--disable-worker-overload-protection"]
        with smg([a, b], *args, log=tmp_path / "smg.log") as url:
            r = httpx.post(url + "/generate", json=generate_body(stream=False), timeout=10)
        assert r.status_code == 503 and not a.received and not b.received

"""Serving checks on the four main emulated servers (stock / FairBatching x normal / overlap):
exact token counts under concurrency, aborts freeing KV, logprobs, KV pressure, /v1/loads and
/metrics over HTTP."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from fairbatching_sglang.emulator.worker import FAKE_TOKEN_LOW, FAKE_TOKEN_SPAN  # noqa: E402
from tests.emulator.client import (  # noqa: E402
    Request,
    check_exact,
    prompt,
    rid_of,
    run_requests,
)
from tests.emulator.conftest import MAIN, SPECS  # noqa: E402
from tests.emulator.server import (  # noqa: E402
    KV_TOKENS,
    ServerProcess,
    get_load,
    get_metrics,
    read_jsonl,
    wait_settled,
)

main_servers = pytest.mark.parametrize("server", MAIN, indirect=True)


def expected_ids(prompt_len: int, n: int) -> list[int]:
    """The emulated forward's token for the row at sequence length s (worker.py), so token i
    comes out at s = prompt_len + i: a row that skipped or repeated a position shows here."""
    return [FAKE_TOKEN_LOW + ((prompt_len + i) * 7919) % FAKE_TOKEN_SPAN for i in range(n)]


def _assert_settled(server: ServerProcess) -> None:
    load = wait_settled(server)
    assert load["num_running_reqs"] == 0, load
    assert load["num_waiting_reqs"] == 0, load
    assert load["num_used_tokens"] == 0, f"KV not freed: {load}"


@main_servers
def test_concurrent_streams_exact_lengths(server: ServerProcess) -> None:
    rng = random.Random(1)
    reqs = [
        Request(rid_of(f"cc-{server.spec.name}", i), prompt(rng, rng.randint(4, 600)), n)
        # max_new_tokens 1 finishes in the prefill step; 2 on the first decode.
        for i, n in enumerate([1, 2, 3] + [rng.randint(1, 120) for _ in range(53)])
    ]
    t0 = time.time()
    results = run_requests(server.url, reqs)
    t1 = time.time()
    problems = [p for q, r in zip(reqs, results, strict=True) for p in check_exact(q, r)]
    assert not problems, problems[:10]
    # The scheduler noted taking in each request exactly once, while the test ran.
    mine = {q.rid for q in reqs}
    received = [
        r
        for r in read_jsonl(server.device_log.with_name("requests_received.jsonl"))
        if r["rid"] in mine
    ]
    assert sorted(r["rid"] for r in received) == sorted(mine)
    assert all(t0 - 1.0 <= r["received_s"] <= t1 + 1.0 for r in received)
    for q, r in zip(reqs, results, strict=True):
        assert r.output_ids == expected_ids(len(q.input_ids), q.max_new_tokens), q.rid
        # Streaming: every chunk extends the previous one (output ids are cumulative).
        lens = [len(c.get("output_ids", [])) for c in r.chunks]
        assert lens == sorted(lens) and lens[-1] == q.max_new_tokens, (q.rid, lens)
    _assert_settled(server)


@main_servers
def test_client_disconnect_frees_kv(server: ServerProcess) -> None:
    """Streams closed by the client mid-generation are aborted and their KV freed."""
    rng = random.Random(2)
    # ~2 min of decoding each: only the abort ends them before the settle timeout (30 s).
    streams = [
        Request(rid_of(f"dc-{server.spec.name}", i), prompt(rng, 300), 20_000, disconnect_after=30)
        for i in range(6)
    ]
    t0 = time.time()
    results = run_requests(server.url, streams, timeout_s=90.0)
    for q, r in zip(streams, results, strict=True):
        assert r.error is None and len(r.chunks) == 30, (q.rid, r.error, len(r.chunks))
    # They did hold KV and decode together before the disconnect.
    steps = [s for s in read_jsonl(server.device_log) if s["time_s"] >= t0]
    assert max((s["num_decode_reqs"] for s in steps), default=0) >= 2
    assert max((s["decode_kv_tokens"] for s in steps), default=0) > 300
    _assert_settled(server)


@main_servers
def test_abort_request_frees_kv(server: ServerProcess) -> None:
    """POST /abort_request by rid ends running and queued requests and frees their KV."""
    rng = random.Random(3)
    reqs = [
        Request(rid_of(f"ar-{server.spec.name}", i), prompt(rng, 300), 20_000, stream=False)
        for i in range(4)
    ]
    box: dict[str, list[Any]] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("res", run_requests(server.url, reqs, 90.0))
    )
    worker.start()
    max_used = 0
    try:
        # Abort once all four are in the scheduler and some decode (SGLang's admission may
        # keep some queued: it reserves KV for their long outputs).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            load = get_load(server)
            max_used = max(max_used, load["num_used_tokens"])
            inside = load["num_running_reqs"] + load["num_waiting_reqs"]
            if inside == len(reqs) and load["num_running_reqs"] > 0 and max_used > 0:
                break
            time.sleep(0.1)
        for q in reqs:
            resp = requests.post(server.url + "/abort_request", json={"rid": q.rid}, timeout=10)
            assert resp.status_code == 200, resp.text
    finally:
        worker.join(120)
    assert not worker.is_alive(), "requests did not return after the abort"
    assert max_used > 0
    for q, r in zip(reqs, box["res"], strict=True):
        assert r.status == 200 and (r.finish_reason or {}).get("type") == "abort", (
            q.rid,
            r.status,
            r.finish_reason,
            r.error,
        )
        assert len(r.output_ids) < q.max_new_tokens
    _assert_settled(server)


@main_servers
def test_logprobs_are_zero_and_sized(server: ServerProcess) -> None:
    rng = random.Random(3)
    n, top = 12, 3
    tag = f"lp-{server.spec.name}"
    lp = {"return_logprob": True, "top_logprobs_num": top}
    lp_ids = {**lp, "token_ids_logprob": [5, 9]}
    lp_in = {"return_logprob": True, "logprob_start_len": 0}
    lp_in5 = {"logprob_start_len": 5}
    reqs = [
        Request(rid_of(tag, 0), prompt(rng, 50), n, stream=True, body=lp),
        Request(rid_of(tag, 1), prompt(rng, 70), n, stream=False, body=lp),
        # token_ids_logprob: the logprob of given ids at every output position
        Request(rid_of(tag, 2), prompt(rng, 30), n, stream=False, body=lp_ids),
        # Input logprobs: the whole prompt, and from position 5 with top-k.
        Request(rid_of(tag, 3), prompt(rng, 200), n, stream=False, body=lp_in),
        Request(rid_of(tag, 4), prompt(rng, 60), n, stream=False, body={**lp, **lp_in5}),
    ]
    # Plain requests alongside, so logprob rows share batches with others.
    reqs += [Request(rid_of(tag, 10 + i), prompt(rng, 40), 20) for i in range(8)]
    results = run_requests(server.url, reqs)
    problems = [p for q, r in zip(reqs, results, strict=True) for p in check_exact(q, r)]
    assert not problems, problems
    for q, r in zip(reqs[:3] + reqs[4:5], results[:3] + results[4:5], strict=True):
        meta = r.meta
        out = meta["output_token_logprobs"]
        assert len(out) == n, q.rid
        assert [t[1] for t in out] == r.output_ids, q.rid
        assert all(t[0] == 0.0 for t in out), q.rid
        tops = meta["output_top_logprobs"]
        assert len(tops) == n and all(len(t) == top for t in tops), q.rid
        assert all(v[0] == 0.0 for t in tops for v in t), q.rid
    ids = results[2].meta["output_token_ids_logprobs"]
    assert len(ids) == n and all([v[1] for v in t] == [5, 9] for t in ids), ids[:2]
    for q, r, start in ((reqs[3], results[3], 0), (reqs[4], results[4], 5)):
        inp = r.meta["input_token_logprobs"]
        assert [t[1] for t in inp] == q.input_ids[start:], q.rid
        # The first position has no logprob (nothing before it), the rest are zero.
        assert inp[0][0] is None and all(t[0] == 0.0 for t in inp[1:]), q.rid
        assert len(r.meta["output_token_logprobs"]) == n, q.rid
    tops_in = results[4].meta["input_top_logprobs"]
    assert len(tops_in) == len(reqs[4].input_ids) - 5
    assert all(len(t) == top for t in tops_in[1:]), tops_in[:2]
    _assert_settled(server)


@main_servers
def test_kv_pressure_queues_and_completes(server: ServerProcess) -> None:
    """Demand ~2.8x the KV pool: requests wait for memory (maybe retract), all finish exactly."""
    rng = random.Random(4)
    prompt_len, out = 700, 250
    tag = f"kv-{server.spec.name}"
    reqs = [
        Request(rid_of(tag, i), prompt(rng, prompt_len), out, stream=i % 2 == 0) for i in range(48)
    ]
    assert len(reqs) * (prompt_len + out) > 2.5 * KV_TOKENS
    t0 = time.time()
    results = run_requests(server.url, reqs, timeout_s=180.0)
    t1 = time.time()
    problems = [p for q, r in zip(reqs, results, strict=True) for p in check_exact(q, r)]
    assert not problems, problems[:10]
    for q, r in zip(reqs, results, strict=True):
        assert r.output_ids == expected_ids(prompt_len, out), q.rid
    steps = [s for s in read_jsonl(server.device_log) if t0 <= s["time_s"] <= t1 + 1]
    assert steps, "no device steps logged"
    # Memory, not the request cap (1024), limited the batch: never all 48 decoding at once,
    # while the running rows held most of the pool at the peak.
    max_batch = max(s["num_decode_reqs"] for s in steps)
    max_kv = max(s["decode_kv_tokens"] for s in steps)
    assert max_batch < len(reqs), max_batch
    assert max_kv > 0.5 * KV_TOKENS, max_kv
    assert max(s["num_waiting"] for s in steps) > 0
    retractions = sum(r.meta.get("num_retractions", 0) for r in results)
    print(f"{server.spec.name}: max batch {max_batch}, peak KV {max_kv}, {retractions} retractions")
    _assert_settled(server)


@main_servers
def test_loads_and_metrics_over_http(server: ServerProcess) -> None:
    rng = random.Random(5)
    # Some traffic first, so every gauge has been set at least once.
    reqs = [Request(rid_of(f"lm-{server.spec.name}", i), prompt(rng, 500), 30) for i in range(8)]
    results = run_requests(server.url, reqs)
    assert not [p for q, r in zip(reqs, results, strict=True) for p in check_exact(q, r)]
    load = get_load(server)
    metrics = get_metrics(server)
    assert "sglang:num_running_reqs" in metrics and "sglang:token_usage" in metrics
    fb_series = {k for k in metrics if k.startswith("sglang:fairbatching_")}
    if SPECS[server.spec.name].fairbatching:
        admission = load.get("fairbatching_prefill_admission_tokens")
        assert isinstance(admission, int) and admission > 0, load
        expected = {
            "sglang:fairbatching_budget_ms",
            "sglang:fairbatching_parked_decodes",
            "sglang:fairbatching_predicted_step_ms",
            "sglang:fairbatching_prefill_admission_tokens",
            "sglang:fairbatching_fallbacks_total",
            "sglang:fairbatching_measured_step_ms_count",
            "sglang:fairbatching_step_time_error_ms_count",
        }
        assert expected <= fb_series, sorted(expected - fb_series)
        assert metrics["sglang:fairbatching_measured_step_ms_count"] > 0
        assert metrics["sglang:fairbatching_predicted_step_ms"] > 0
    else:
        # No estimate from stock SGLang: the key is there as null (LoadSnapshot.to_dict copies
        # every field; patches/README.md, 04-load_snapshot).
        assert "fairbatching_prefill_admission_tokens" in load, load
        assert load["fairbatching_prefill_admission_tokens"] is None, load
        assert not fb_series, sorted(fb_series)

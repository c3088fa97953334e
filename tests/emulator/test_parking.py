"""Issue #12 bug (a) on the real server: penalized requests arriving while FairBatching has
decode rows parked.

The scenario: 64 decodes far ahead of their TPOT envelope on a slow device, then a surge of
long prompts; the policy fills each step's budget with prefill chunks and parks the decodes
that banked slack. Once the device log shows a step that parked most decodes (an event, not a
fixed time, which a slower machine would shift), requests with frequency / presence / repetition
penalties arrive, are admitted next to the parked rows and later merge with them (the merge
once prepared penalizer tensors for the wrong rows and killed the scheduler). All must finish
exactly and the server must stay up; the device step log must show that parking did happen
meanwhile (steps with prefill that left decode rows out, `num_sat_out`), or the test proves
nothing and fails.
"""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from tests.emulator.client import (  # noqa: E402
    LogGate,
    Request,
    check_exact,
    prompt,
    rid_of,
    run_requests,
)
from tests.emulator.conftest import PARK  # noqa: E402
from tests.emulator.server import ServerProcess, read_jsonl, wait_settled  # noqa: E402

PENALTIES = (
    {"frequency_penalty": 0.5},
    {"presence_penalty": 0.5},
    {"repetition_penalty": 1.2},
    {"frequency_penalty": 0.3, "presence_penalty": 0.2, "repetition_penalty": 1.1},
)
SURGE_AT_S = 1.5  # the decodes have banked slack by then
NUM_PENALIZED = 24
NUM_DECODES = 64


def _scenario(tag: str, gate: LogGate) -> tuple[list[Request], list[Request]]:
    rng = random.Random(6)
    decodes = [Request(rid_of(tag + "-dec", i), prompt(rng, 64), 500) for i in range(NUM_DECODES)]
    surge = [
        Request(rid_of(tag + "-long", i), prompt(rng, 3000), 4, delay_s=SURGE_AT_S + 0.05 * i)
        for i in range(12)
    ]
    penalized = [
        Request(
            rid_of(tag + "-pen", i),
            prompt(rng, 40),
            16,
            stream=i % 2 == 0,
            sampling=dict(PENALTIES[i % len(PENALTIES)]),
            # Sent once the device has parked most decodes (a fixed time would miss the parking
            # period on a slower machine), then spread over the next ~0.5 s.
            delay_s=0.02 * i,
            gate=gate,
        )
        for i in range(NUM_PENALIZED)
    ]
    return decodes + surge, penalized


def _parking_step(step: dict) -> bool:
    # Most decodes parked: the surge, not the ramp-up (where one decode can be parked for a step
    # while the 64 are admitted; a CI run's gate opened on that one, before the surge).
    return step["num_sat_out"] >= NUM_DECODES // 2 and step["num_prefill_tokens"] > 0


@pytest.mark.parametrize("server", PARK, indirect=True)
def test_penalized_requests_while_parked(server: ServerProcess) -> None:
    gate = LogGate(server.device_log, _parking_step)
    plain, penalized = _scenario(f"pk-{server.spec.name}", gate)
    results = run_requests(server.url, plain + penalized, timeout_s=150.0)
    by_rid = {q.rid: r for q, r in zip(plain + penalized, results, strict=True)}
    assert server.alive(), "server died:\n" + server.log_tail()
    problems = [p for q in plain + penalized for p in check_exact(q, by_rid[q.rid])]
    assert not problems, problems[:10]
    # Parking happened while the penalized requests were in the server: mixed steps that left
    # decode rows out (the FairBatching step log is buffered, the device's is line by line).
    first = min(by_rid[q.rid].send_s for q in penalized)
    last = max(by_rid[q.rid].done_s for q in penalized)
    steps = [s for s in read_jsonl(server.device_log) if s["num_prefill_tokens"] > 0]
    parked = [s for s in steps if s["num_sat_out"] > 0]
    during = [s for s in parked if first <= s["start_s"] <= last]
    print(
        f"{server.spec.name}: {len(during)} parking steps while penalized requests ran, "
        f"{len(parked)} in all, up to {max((s['num_sat_out'] for s in parked), default=0)} rows"
    )
    assert during, f"no parking step while penalized requests ran ({len(parked)} in all)"
    load = wait_settled(server)
    assert load["num_used_tokens"] == 0 and load["num_running_reqs"] == 0, load


@pytest.mark.parametrize("server", PARK, indirect=True)
def test_min_new_tokens_refused_without_tokenizer(server: ServerProcess) -> None:
    """min_new_tokens needs the tokenizer's eos id: with --skip-tokenizer-init (the emulated
    server) SGLang refuses it with a 400 before it reaches the scheduler, so it cannot meet
    parked rows here (the CPU harness in tests/sglang_adapter covers that case)."""
    rng = random.Random(7)
    tag = f"mn-{server.spec.name}"
    reqs = [
        Request(rid_of(tag, 0), prompt(rng, 40), 8, stream=False, sampling={"min_new_tokens": 3}),
        Request(rid_of(tag, 1), prompt(rng, 40), 8, stream=False),
    ]
    refused, ok = run_requests(server.url, reqs)
    assert refused.status == 400, (refused.status, refused.error)
    assert "min_new_tokens" in (refused.error or "") and "skip_tokenizer_init" in (
        refused.error or ""
    )
    assert not check_exact(reqs[1], ok)
    assert server.alive()

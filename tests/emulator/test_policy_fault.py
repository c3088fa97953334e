"""A raising policy falls back and the server stays up: fb-normal runs with the emulator's
test-only fault injection (FAIRBATCHING_EMULATED_POLICY_FAULT, every Nth decision raises);
fb-overlap, without it, is the control that counts no fallback."""

from __future__ import annotations

import random
import re

import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from tests.emulator.client import Request, check_exact, prompt, rid_of, run_requests  # noqa: E402
from tests.emulator.conftest import POLICY_FAULT_EVERY, get_server  # noqa: E402
from tests.emulator.server import ServerFarm, get_metrics, read_jsonl, wait_settled  # noqa: E402

FALLBACKS = "sglang:fairbatching_fallbacks_total"


@pytest.mark.emulated_servers("fb-normal", "fb-overlap")
def test_raising_policy_falls_back(farm: ServerFarm) -> None:
    faulty = get_server(farm, "fb-normal")
    control = get_server(farm, "fb-overlap")
    rng = random.Random(8)
    reqs = [
        Request(rid_of("fault", i), prompt(rng, rng.randint(16, 900)), rng.randint(1, 80))
        for i in range(40)
    ]
    results = run_requests(faulty.url, reqs)
    problems = [p for q, r in zip(reqs, results, strict=True) for p in check_exact(q, r)]
    assert not problems, problems[:10]
    assert faulty.alive(), faulty.log_tail()
    fallbacks = get_metrics(faulty).get(FALLBACKS, 0)
    assert fallbacks > 0
    # The adapter logs the first five with their traceback: decisions N, 2N, ... raised.
    log = faulty.log_path.read_text(errors="replace")
    assert "this step runs stock scheduling" in log
    logged = re.findall(r"injected policy fault \(decision (\d+), every (\d+)\)", log)
    n = POLICY_FAULT_EVERY
    want = [(str(k * n), str(n)) for k in range(1, min(5, int(fallbacks)) + 1)]
    assert logged[: len(want)] == want, logged
    # The other decisions ran FairBatching: steps with prefill far outnumber the fallbacks.
    steps = [s for s in read_jsonl(faulty.device_log) if s["num_prefill_tokens"] > 0]
    assert len(steps) > fallbacks, (len(steps), fallbacks)
    load = wait_settled(faulty)
    assert load["num_used_tokens"] == 0, load
    assert get_metrics(control).get(FALLBACKS, 0) == 0

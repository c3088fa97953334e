"""Scheduling time the FairBatching hook adds per step, vs stock SGLang, on the same queue.

Real (patched) SGLang objects on CPU (tests/sglang_adapter/cpu_harness.py): the timed call is
the scheduler's `get_next_batch_to_run` (batch formation: merge, filter, prefill adder,
prepare_for_extend/decode, mix), with `--running` decoding requests and a refilled queue of
prefills. Stock = SGLang 0.5.23 with --enable-mixed-chunk (FairBatching's baseline: the only
stock mode that mixes decodes into prefill steps); FairBatching = the same code with the hook.
Both see the same virtual clock (advanced a fixed step time) and the same request stream.

    .venv-sglang/bin/python scripts/bench_hook.py --running 256 --steps 300

Needs the CPU install (scripts/install_sglang_cpu.sh). Target: FairBatching <= 1.3x stock.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sglang_adapter"))

from conftest import FakeClock
from cpu_harness import CpuScheduler

from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings


def _timed_hook(cs: CpuScheduler, spent: list[float]) -> None:
    """Accumulate the time spent inside the hook's methods (per step, in `spent`)."""
    hook = cs.s.fairbatching
    for name in ("plan_prefill", "apply_adder", "split_running", "on_batch_formed"):
        fn = getattr(hook, name)

        def wrapped(*args: Any, _fn: Any = fn) -> Any:
            t0 = time.perf_counter()
            try:
                return _fn(*args)
            finally:
                spent[-1] += time.perf_counter() - t0

        setattr(hook, name, wrapped)


def run(
    fairbatching: bool, args: argparse.Namespace, workdir: Path
) -> tuple[list[float], list[float], int]:
    clock = FakeClock()
    settings = FairBatchingSettings() if fairbatching else None
    cs = CpuScheduler(
        workdir / ("fb" if fairbatching else "stock"),
        fairbatching=settings,
        clock=clock,
        chunked_prefill_size=args.chunk,
        max_running_requests=args.running + 64,
        kv_tokens=args.kv_tokens,
    )
    # Warm up: the running set (outputs long enough never to finish within the run).
    for _ in range(args.running):
        cs.add_request(args.decode_prompt, args.steps + 400)
    while (
        len(cs.s.running_batch.reqs) + (len(cs.s.last_batch.reqs) if cs.s.last_batch else 0)
        < args.running
        or cs.s.waiting_queue
    ):
        cs.step()
        clock.advance_ms(args.step_ms)
    formation: list[float] = []
    hook_spent: list[float] = []
    if fairbatching:
        _timed_hook(cs, hook_spent)
    for _ in range(args.steps):
        while len(cs.s.waiting_queue) < args.queue:
            cs.add_request(args.prefill_prompt, 1)  # finishes at its first token
        hook_spent.append(0.0)
        t0 = time.perf_counter()
        batch = cs.form_batch()
        formation.append(time.perf_counter() - t0)
        if batch is not None:
            cs.commit(batch)
        cs.s.last_batch = batch
        clock.advance_ms(args.step_ms)
    parked = cs.s.fairbatching.num_steps if fairbatching else 0
    return formation, hook_spent, parked


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--running", type=int, default=256)
    p.add_argument("--queue", type=int, default=64, help="waiting prefills kept queued")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--chunk", type=int, default=2048, help="chunked_prefill_size")
    p.add_argument("--decode-prompt", type=int, default=512)
    p.add_argument("--prefill-prompt", type=int, default=1024)
    p.add_argument("--step-ms", type=float, default=15.0, help="virtual time per step")
    p.add_argument("--kv-tokens", type=int, default=2_000_000)
    args = p.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        stock, _, _ = run(False, args, Path(tmp))
        fb, hook, _ = run(True, args, Path(tmp))

    def ms(xs: list[float]) -> float:
        return statistics.median(xs) * 1000.0

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(0.9 * len(xs))] * 1000.0

    print(f"running={args.running} queue={args.queue} steps={args.steps} chunk={args.chunk}")
    print(
        f"stock (mixed-chunk) batch formation: median {ms(stock):.3f} ms  p90 {p90(stock):.3f} ms"
    )
    print(f"FairBatching batch formation:        median {ms(fb):.3f} ms  p90 {p90(fb):.3f} ms")
    print(f"  of which inside the hook:          median {ms(hook):.3f} ms")
    ratio = ms(fb) / ms(stock)
    verdict = "OK" if ratio <= 1.3 else "OVER"
    print(f"ratio FairBatching / stock: {ratio:.2f}x (target <= 1.30x): {verdict}")


if __name__ == "__main__":
    main()

"""Scheduling time the FairBatching hook adds per step, vs stock SGLang, on the same queue.

Real (patched) SGLang objects on CPU (tests/sglang_adapter/cpu_harness.py): the timed call is
the scheduler's `get_next_batch_to_run` (batch formation: merge, filter, prefill adder,
prepare_for_extend/decode, mix), with `--running` decoding requests and a refilled queue of
prefills. Stock = SGLang 0.5.23 with --enable-mixed-chunk (FairBatching's baseline: the only
stock mode that mixes decodes into prefill steps); FairBatching = the same code with the hook.
Both see the same virtual clock (advanced a fixed step time) and the same request stream.

    .venv-sglang/bin/python scripts/bench_hook.py --running 256 --steps 300

Prints the median formation time per step for both and their ratio. Each arm runs in a fresh
Python process (a run later in one process is measurably slower, ~3-6% per earlier run, which
would favour whichever arm went first), `--repeats` times, alternating stock / FairBatching; an
arm's figure is the median of its runs' medians. Both are timed the same way, nothing else
wrapped. The time inside the hook's four calls (total and per call: plan_prefill = snapshot +
policy + plan, apply_adder, split_running, on_batch_formed = per-request accounting) comes from
one more, instrumented FairBatching run (its timers make it a little slower; its total is
printed too). Needs the CPU install (scripts/install_sglang_cpu.sh). Target: FairBatching
<= 1.3x stock.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sglang_adapter"))

from conftest import FakeClock
from cpu_harness import CpuScheduler

from fairbatching_sglang.sglang_adapter.settings import FairBatchingSettings

HOOK_CALLS = ("plan_prefill", "apply_adder", "split_running", "on_batch_formed")


def _timed_hook(cs: CpuScheduler, spent: list[float], parts: dict[str, list[float]]) -> None:
    """Accumulate the time spent inside the hook's methods: per step in `spent`, per step and
    method in `parts`."""
    hook = cs.s.fairbatching
    for name in HOOK_CALLS:
        fn = getattr(hook, name)

        def wrapped(*args: Any, _fn: Any = fn, _part: list[float] = parts[name]) -> Any:
            t0 = time.perf_counter()
            try:
                return _fn(*args)
            finally:
                dt = time.perf_counter() - t0
                spent[-1] += dt
                _part[-1] += dt

        setattr(hook, name, wrapped)


def run(
    fairbatching: bool, args: argparse.Namespace, workdir: Path, *, instrument: bool = False
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Per-step formation times; with `instrument` (FairBatching only) also the hook's."""
    clock = FakeClock()
    settings = FairBatchingSettings() if fairbatching else None
    cs = CpuScheduler(
        workdir / ("fb-timed" if instrument else "fb" if fairbatching else "stock"),
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
    parts: dict[str, list[float]] = {name: [] for name in HOOK_CALLS}
    if instrument:
        _timed_hook(cs, hook_spent, parts)
    for _ in range(args.steps):
        while len(cs.s.waiting_queue) < args.queue:
            cs.add_request(args.prefill_prompt, 1)  # finishes at its first token
        hook_spent.append(0.0)
        for part in parts.values():
            part.append(0.0)
        t0 = time.perf_counter()
        batch = cs.form_batch()
        formation.append(time.perf_counter() - t0)
        if batch is not None:
            cs.commit(batch)
        cs.s.last_batch = batch
        clock.advance_ms(args.step_ms)
    return formation, hook_spent, parts


ARMS = ("stock", "fairbatching", "fairbatching-timed")
RESULT_TAG = "bench_hook result: "


def _run_arm(arm: str) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """One arm in a fresh interpreter, with this invocation's arguments."""
    done = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--arm", arm], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench_hook: the {arm} run failed (exit {done.returncode})")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(RESULT_TAG))
    formation, hook_spent, parts = json.loads(line[len(RESULT_TAG) :])
    return formation, hook_spent, parts


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
    p.add_argument("--repeats", type=int, default=2, help="processes per arm (alternating)")
    p.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in this process
    args = p.parse_args()
    if args.arm is not None:
        logging.disable(logging.WARNING)
        with tempfile.TemporaryDirectory() as tmp:
            formation, hook_spent, parts = run(
                args.arm != "stock", args, Path(tmp), instrument=args.arm == "fairbatching-timed"
            )
        print(RESULT_TAG + json.dumps([formation, hook_spent, parts]))
        return
    stock_runs, fb_runs = [], []
    for _ in range(max(1, args.repeats)):
        stock_runs.append(_run_arm("stock")[0])
        fb_runs.append(_run_arm("fairbatching")[0])
    fb_timed, hook, parts = _run_arm("fairbatching-timed")

    def ms(xs: list[float]) -> float:
        return statistics.median(xs) * 1000.0

    def runs_ms(runs: list[list[float]]) -> float:
        return statistics.median(ms(xs) for xs in runs)

    def runs_p90(runs: list[list[float]]) -> float:
        return statistics.median(p90(xs) for xs in runs)

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(0.9 * len(xs))] * 1000.0

    print(
        f"running={args.running} queue={args.queue} steps={args.steps} chunk={args.chunk} "
        f"repeats={len(stock_runs)}"
    )
    for name, runs in (("stock (mixed-chunk)", stock_runs), ("FairBatching", fb_runs)):
        print(
            f"{name + ' batch formation:':36s} median {runs_ms(runs):.3f} ms  "
            f"p90 {runs_p90(runs):.3f} ms  (runs: {' '.join(f'{ms(r):.3f}' for r in runs)})"
        )
    print(
        f"instrumented FairBatching run:       median {ms(fb_timed):.3f} ms, inside the hook "
        f"{ms(hook):.3f} ms:"
    )
    print("    " + "  ".join(f"{name} {ms(part):.3f}" for name, part in parts.items()))
    ratio = runs_ms(fb_runs) / runs_ms(stock_runs)
    verdict = "OK" if ratio <= 1.3 else "OVER"
    print(f"ratio FairBatching / stock: {ratio:.2f}x (target <= 1.30x): {verdict}")


if __name__ == "__main__":
    main()

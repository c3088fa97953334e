"""Bad --fairbatching-* flags and bad emulator settings through the real launcher
(`python -m sglang.launch_server` on the emulated device): it exits non-zero quickly with the
message, and no server is left running."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from fairbatching_sglang.emulator.launch import EmulatedServerConfig  # noqa: E402
from tests.emulator.conftest import SPECS, sglang_patched  # noqa: E402
from tests.emulator.server import (  # noqa: E402
    LAUNCH_PORTS,
    NCCL_OFFSET,
    ServerFarm,
    group_alive,
    launch_argv,
    port_free,
    stop_group,
)

EXIT_WITHIN_S = 150.0  # import time of the launcher on 2 busy cores (the farm is starting too)


@dataclass(frozen=True)
class Refusal:
    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    messages: tuple[str, ...]  # every one must be in the output
    needs_patch: bool = True


CASES = (
    # The chunked-prefill check and the settings check report together, in one message.
    Refusal(
        "no-chunked-prefill+bad-json",
        (
            "--enable-fairbatching",
            "--chunked-prefill-size",
            "-1",
            "--fairbatching-config",
            "{not json",
        ),
        (),
        (
            "FairBatchingArgsError",
            "FairBatching needs chunked prefill",
            "--fairbatching-config is not valid JSON",
        ),
    ),
    Refusal(
        "unknown-profile",
        ("--enable-fairbatching", "--fairbatching-profile", "no-such-profile"),
        (),
        ("FairBatchingArgsError", "unknown profile 'no-such-profile'"),
    ),
    Refusal(
        "bad-slo",
        ("--enable-fairbatching", "--fairbatching-tpot-slo-ms", "-5"),
        (),
        ("FairBatchingArgsError", "tpot_slo_ms must be > 0"),
    ),
    # A bad emulator variable stops the launcher at plugin load (test_settings.py covers the
    # other variables' validation without a launch).
    Refusal(
        "emulated-device",
        (),
        (("FAIRBATCHING_EMULATED_DEVICE", "warp:drive=9"),),
        ("FAIRBATCHING_EMULATED_DEVICE", "unknown device model 'warp'"),
        needs_patch=False,
    ),
)


# Requests the farm, so these launches overlap the servers' start-up instead of adding to it.
def test_launcher_refuses_bad_settings(farm: ServerFarm) -> None:
    cases = [c for c in CASES if sglang_patched() or not c.needs_patch]
    procs: list[tuple[Refusal, int, subprocess.Popen[bytes]]] = []
    for case, port in zip(cases, LAUNCH_PORTS, strict=False):
        assert port_free(port), f"port {port} busy"
        argv, env = launch_argv(SPECS["stock-normal"], port, EmulatedServerConfig())
        argv += list(case.args)
        env.update(dict(case.env))
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append((case, port, proc))
    failures = []
    t0 = time.monotonic()
    try:
        for case, port, proc in procs:
            try:
                out, _ = proc.communicate(timeout=max(1.0, EXIT_WITHIN_S - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                failures.append(f"{case.name}: still running after {EXIT_WITHIN_S:.0f} s")
                continue
            text = out.decode(errors="replace")
            tail = "\n".join(text.splitlines()[-8:])
            if proc.returncode == 0:
                failures.append(f"{case.name}: exit code 0\n{tail}")
            missing = [m for m in case.messages if m not in text]
            if missing:
                failures.append(f"{case.name}: missing {missing}\n{tail}")
            time.sleep(0.5)  # children (if any were spawned) go with the launcher
            if group_alive(proc.pid):
                failures.append(f"{case.name}: processes left in its group after exit")
            if not (port_free(port) and port_free(port + NCCL_OFFSET)):
                failures.append(f"{case.name}: something listens on {port}")
    finally:
        for _, _, proc in procs:
            stop_group(proc, grace_s=2.0)
    assert not failures, "\n\n".join(failures)

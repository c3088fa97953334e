"""The real SGLang server on the emulated device (fairbatching_sglang/emulator), stock and
FairBatching, in the normal and overlap loops.

Servers are session-scoped and all start together when the first test needs one (start-up is
~30 s of CPU each on 2 cores: paid concurrently, once); the servers the collected tests name are
the ones started. Every test module skips itself when sglang is not importable, so without it no
server is ever launched. Logs, argv and step logs of each server are in
/tmp/fairbatching-emulated-*/NAME/, kept when a test failed.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fairbatching_sglang.core import SloTargets
from tests.emulator.server import ServerFarm, ServerProcess, ServerSpec

# The four servers most checks run on (KV pool of server.KV_TOKENS tokens).
MAIN = ("stock-normal", "stock-overlap", "fb-normal", "fb-overlap")
# FairBatching on a slow device (every step x2) with tight SLOs: it parks decode rows under a
# prefill surge. Full-size KV pool (the parking test must not be KV-bound).
PARK = ("park-normal", "park-overlap")
POLICY_FAULT_EVERY = 9  # fb-normal: every 9th policy decision raises (test_fallback.py)
# A TPOT the decodes beat by ~40 ms a token (a decode step plus the server's overhead is ~20 ms
# here), so they bank ~1 s of slack before the surge and parking lasts ~10 steps; at 30 ms it
# lasted 1-4 steps and a slower CI machine saw one, before the penalized requests arrived.
PARK_SLO = SloTargets(ttft_slo_ms=500.0, tpot_slo_ms=60.0)

SPECS: dict[str, ServerSpec] = {
    "stock-normal": ServerSpec("stock-normal", "sglang-default", overlap=False),
    "stock-overlap": ServerSpec("stock-overlap", "sglang-default", overlap=True),
    # The fault injection rides on fb-normal (one server fewer to start); its other checks still
    # require exact results, so they cover steps that fell back too. fb-overlap is the
    # fault-free control.
    "fb-normal": ServerSpec(
        "fb-normal", "fairbatching-ft", overlap=False, policy_fault_every=POLICY_FAULT_EVERY
    ),
    "fb-overlap": ServerSpec("fb-overlap", "fairbatching-ft", overlap=True),
    "park-normal": ServerSpec(
        "park-normal",
        "fairbatching-ft",
        overlap=False,
        device_model="profile:bias=1.0",
        max_total_tokens=None,
        slo=PARK_SLO,
    ),
    "park-overlap": ServerSpec(
        "park-overlap",
        "fairbatching-ft",
        overlap=True,
        device_model="profile:bias=1.0",
        max_total_tokens=None,
        slo=PARK_SLO,
    ),
}

_NEEDED = pytest.StashKey[list[str]]()


def sglang_patched() -> bool:
    """The FairBatching patches are applied to the importable sglang (without importing it:
    that alone costs seconds)."""
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        return False
    path = Path(next(iter(spec.submodule_search_locations))) / "srt/arg_groups/fields/schedule.py"
    try:
        return "enable_fairbatching" in path.read_text()
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulated_servers(*names): emulated servers a test uses (started together)"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember which servers the selected tests use (after -k / -m deselection)."""
    here = Path(__file__).parent
    names: list[str] = []
    for item in session.items:
        if here not in Path(str(item.fspath)).parents:
            continue
        marker = item.get_closest_marker("emulated_servers")
        if marker is not None:
            names += list(marker.args)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "server" in callspec.params:
            names.append(callspec.params["server"])
    session.config.stash[_NEEDED] = list(dict.fromkeys(names))


@pytest.fixture(scope="session")
def farm(request: pytest.FixtureRequest) -> Iterator[ServerFarm]:
    patched = sglang_patched()
    needed = [
        n
        for n in request.config.stash.get(_NEEDED, [])
        if n in SPECS and (patched or not SPECS[n].fairbatching)
    ]
    # Not pytest's basetemp: other pytest sessions of the same user prune old basetemps, which
    # would delete the step logs of servers still running here.
    root = Path(tempfile.mkdtemp(prefix="fairbatching-emulated-"))
    farm = ServerFarm(root, SPECS)
    try:
        farm.start(needed)  # all at once; each test then waits for its own
        yield farm
    finally:
        farm.stop_all()
        if request.session.testsfailed:
            print(f"\nemulated server logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def get_server(farm: ServerFarm, name: str) -> ServerProcess:
    if SPECS[name].fairbatching and not sglang_patched():
        pytest.skip("sglang is not patched for FairBatching (scripts/apply_patches.sh)")
    server = farm.get(name)
    if not server.up():
        pytest.fail(f"server {name} is down (crashed in an earlier test?):\n{server.log_tail()}")
    return server


@pytest.fixture
def server(request: pytest.FixtureRequest, farm: ServerFarm) -> ServerProcess:
    """The emulated server named by the test's indirect `server` parameter."""
    return get_server(farm, request.param)

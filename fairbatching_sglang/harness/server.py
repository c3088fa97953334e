"""One SGLang server process: start, wait for /health, stop, with its log in a file.

The server runs in its own process group so that stop() also ends the scheduler/detokenizer
children SGLang spawns (a leftover scheduler would hold the GPU for the next arm). The cluster
runs its router the same way (ManagedProcess).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ServerStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerSpec:
    python: str
    model_path: str
    host: str = "127.0.0.1"
    port: int = 30000
    extra_args: tuple[str, ...] = ()
    health_timeout_s: float = 900.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ManagedProcess:
    """A subprocess in its own process group (env: added to ours), its output in a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerStartError(f"cannot run {self.argv[0]}: {exc}") from exc
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM the process group (a server's workers too), SIGKILL after grace_s; exit code."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return self.returncode
        pgid = os.getpgid(proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(10)
        return proc.returncode


def launch_server_argv(spec: ServerSpec, flags: list[str]) -> list[str]:
    """`python -m sglang.launch_server` for a model on the GPU (the emulated backend builds its
    own argv: emulator/launch.py)."""
    return [
        spec.python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        spec.model_path,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        *spec.extra_args,
        *flags,
    ]


class ServerProcess(ManagedProcess):
    """argv: the full command line (default: launch_server_argv(spec, flags))."""

    def __init__(
        self,
        spec: ServerSpec,
        flags: list[str],
        log_path: Path,
        argv: list[str] | None = None,
    ) -> None:
        self.spec = spec
        super().__init__(argv or launch_server_argv(spec, flags), log_path, spec.env)

    def wait_healthy(self) -> float:
        """Seconds until /health answered 200; raises ServerStartError on exit or timeout."""
        start = time.monotonic()
        deadline = start + self.spec.health_timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerStartError(
                    f"server exited with code {self.returncode} before /health; see {self.log_path}"
                )
            try:
                if httpx.get(self.spec.base_url + "/health", timeout=5.0).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise ServerStartError(f"no healthy /health within {self.spec.health_timeout_s:g} s")

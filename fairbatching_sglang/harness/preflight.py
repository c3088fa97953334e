"""Checks of an SGLang interpreter before any server starts: the pinned version, and for
FairBatching arms that the patch is applied. A wrong venv then fails in a second with a message
that names the interpreter, instead of as a server that never becomes healthy."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

SGLANG_VERSION = "0.5.23"
REPO_ROOT = Path(__file__).resolve().parents[2]
APPLY_PATCHES = REPO_ROOT / "scripts/apply_patches.sh"


class PreflightError(RuntimeError):
    """An interpreter that cannot serve an arm; the message says which and why."""


def sglang_version(python: str) -> str | None:
    """importlib.metadata's sglang version in that interpreter (None: not installed / no such
    interpreter). Runs from a neutral directory: a cwd holding a sglang/ folder would shadow it."""
    try:
        out = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('sglang'))"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def check_sglang(python: str) -> str:
    """The interpreter's sglang version; PreflightError unless it is the pinned one."""
    if not Path(python).exists():
        raise PreflightError(f"SGLang interpreter {python} does not exist")
    version = sglang_version(python)
    if version is None:
        raise PreflightError(
            f"sglang is not installed for {python} (need sglang=={SGLANG_VERSION})"
        )
    if version != SGLANG_VERSION:
        raise PreflightError(
            f"{python} has sglang {version}; the harness and patches need sglang=={SGLANG_VERSION}"
        )
    return version


def check_patched(python: str) -> None:
    """PreflightError unless scripts/apply_patches.sh --check says every file is patched."""
    args = [str(APPLY_PATCHES), "--check", "--python", python]
    try:
        out = subprocess.run(
            args, capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir()
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PreflightError(f"cannot run {APPLY_PATCHES}: {exc}") from exc
    if out.returncode != 0:
        state = {1: "stock (not patched)", 2: "partly patched"}.get(out.returncode, "unusable")
        tail = " | ".join((out.stdout + out.stderr).strip().splitlines()[-3:])
        raise PreflightError(
            f"a FairBatching arm needs the patched SGLang, but {python}'s sglang is {state}: "
            f"run scripts/apply_patches.sh --python {python} ({tail})"
        )

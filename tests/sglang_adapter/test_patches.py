"""The patches apply cleanly, idempotently and revert, on a copy of the installed files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sglang
sglang = pytest.importorskip("sglang")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "apply_patches.sh"
FILES = [line.split()[1] for line in (ROOT / "patches/original.sha256").read_text().splitlines()]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=False)


@pytest.fixture
def site_copy(tmp_path: Path) -> Path:
    """The five target files copied from the installed (patched or stock) sglang."""
    installed = Path(sglang.__file__).parent.parent
    for rel in FILES:
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(installed / rel, dst)
    return tmp_path


def test_revert_apply_cycle(site_copy: Path) -> None:
    site = str(site_copy)
    first = run("--site", site, "--revert")
    assert first.returncode == 0, first.stderr
    assert run("--site", site, "--check").returncode == 1  # stock
    applied = run("--site", site)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("applying") == len(FILES)
    assert run("--site", site, "--check").returncode == 0
    again = run("--site", site)
    assert again.returncode == 0 and "already applied" in again.stdout
    reverted = run("--site", site, "--revert")
    assert reverted.returncode == 0 and "checksums verified" in reverted.stdout


def test_refuses_modified_file(site_copy: Path) -> None:
    target = site_copy / FILES[-1]
    target.write_text(target.read_text() + "\n# local edit\n")
    res = run("--site", str(site_copy))
    assert res.returncode != 0
    assert "match neither" in res.stderr
    assert target.read_text().endswith("# local edit\n")  # nothing written


def test_refuses_other_version(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(
        f'#!/bin/sh\ncase "$2" in *metadata*) echo 0.5.22;; *) exec {sys.executable} "$@";; esac\n'
    )
    fake.chmod(0o755)
    res = run("--python", str(fake))
    assert res.returncode != 0
    assert "0.5.22" in res.stderr and "0.5.23" in res.stderr


def test_installed_tree_is_patched() -> None:
    res = run("--python", sys.executable, "--check")
    assert res.returncode == 0, res.stdout + res.stderr

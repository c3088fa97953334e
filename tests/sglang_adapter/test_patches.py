"""The patches apply cleanly, idempotently and revert, on a copy of the installed files."""

from __future__ import annotations

import hashlib
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


PATCH_ORDER = [
    line.removeprefix("+++ b/").split()[0]
    for p in sorted((ROOT / "patches").glob("*.patch"))
    for line in p.read_text().splitlines()[:10]
    if line.startswith("+++ b/")
]


def _sums(site: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((site / rel).read_bytes()).hexdigest() for rel in FILES}


@pytest.mark.parametrize("mode", ["apply", "revert"])
def test_write_failure_midway_changes_nothing(site_copy: Path, mode: str) -> None:
    site = str(site_copy)
    # Start from the state the mode changes: stock for apply, patched for revert.
    assert run("--site", site, "--revert").returncode == 0
    if mode == "revert":
        assert run("--site", site).returncode == 0
    before = _sums(site_copy)
    # The last file's replacement cannot be written (a directory where its new copy would go):
    # the four files before it were already replaced and must be put back.
    obstacle = site_copy / f"{PATCH_ORDER[-1]}.fairbatching-new"
    obstacle.mkdir()
    res = run("--site", site, *(["--revert"] if mode == "revert" else []))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "4 file(s) already replaced were restored, nothing changed" in res.stderr
    assert _sums(site_copy) == before
    want = 1 if mode == "apply" else 0  # still all stock / still all patched
    assert run("--site", site, "--check").returncode == want
    assert list(site_copy.rglob("*.fairbatching-new")) == [obstacle]  # no temporary left


def test_check_ignores_a_sglang_folder_in_cwd(site_copy: Path) -> None:
    # A stock sglang/ tree in the current directory must not stand in for the venv's (patched).
    shutil.copy2(Path(sglang.__file__), site_copy / "sglang" / "__init__.py")
    assert run("--site", str(site_copy), "--revert").returncode == 0
    res = subprocess.run(
        ["bash", str(SCRIPT), "--python", sys.executable, "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=site_copy,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"sglang tree {site_copy}/sglang" not in res.stdout

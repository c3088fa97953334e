"""The rule for an output directory that already holds something (issue #14.1).

An earlier run left in `--out` used to be merged into the new report (report/collect.py reads
every */x*/status.json) or silently overwritten. Now a non-empty directory is refused unless

- `resume`: the manifest there (ab.json, cluster.json or run.json) carries the same
  configuration hash (run_config.py); finished runs/probes are then reused, or
- `force`: what the harness wrote there earlier (the layout's entries below) is deleted first;
  anything else is left alone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairbatching_sglang.harness.run_config import (
    canonical_fields,
    config_hash,
    differing_fields,
)


class OutDirError(ValueError):
    """An output directory the run may not use; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    """manifest: the file holding config_hash / config_fields. owned(entry) says whether a
    top-level entry of the directory is one the harness writes (deleted by --force)."""

    manifest: str
    owned: Callable[[Path], bool]


def _any_of(*names: str) -> Callable[[Path], bool]:
    wanted = set(names)
    return lambda p: p.name in wanted


def _ab_owned(p: Path) -> bool:
    if p.name in ("ab.json", "report.md", "plots", "saturation") or p.suffix == ".csv":
        return True
    # An arm directory: runs (x<rate>/) or a capacity file; whatever its name, the report reads it.
    return p.is_dir() and (
        (p / "capacity.json").exists() or (p / "patch.log").exists() or any(p.glob("x*/"))
    )


def _cluster_capacity_owned(p: Path) -> bool:
    if p.name in ("cluster.json", "run.json", "report.md", "plots") or p.suffix == ".csv":
        return True
    return p.is_dir() and p.name.startswith("n") and p.name[1:].isdigit()


AB_LAYOUT = Layout("ab.json", _ab_owned)
CLUSTER_CAPACITY_LAYOUT = Layout("cluster.json", _cluster_capacity_owned)
SIM_RUN_FILES = (
    "run.json", "run.json.tmp", "summary.json", "summary.md", "requests.parquet", "steps.parquet",
)  # fmt: skip
SIM_RUN_LAYOUT = Layout("run.json", _any_of(*SIM_RUN_FILES))

RESUME_FORCE_HELP = (
    "A non-empty output directory is refused unless --resume (same configuration, checked by "
    "the hash in its {manifest}: finished runs are reused, interrupted ones redone) or --force "
    "(the harness's earlier files there are deleted first)."
)


def manifest_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The manifest entries recording a configuration."""
    return {"config_hash": config_hash(fields), "config_fields": canonical_fields(fields)}


def prepare_out_dir(
    out: Path, layout: Layout, fields: dict[str, Any], *, resume: bool, force: bool
) -> bool:
    """Check (and with force clear) `out` before a run; True when it resumes an earlier run."""
    if resume and force:
        raise OutDirError("--resume and --force exclude each other")
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{out} exists and is not a directory")
    entries = sorted(out.iterdir()) if out.exists() else []
    if not entries:
        return False
    if force:
        for p in entries:
            if layout.owned(p):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return False
    if not resume:
        raise OutDirError(
            f"{out} is not empty (an earlier run?). Use --resume to continue that run (same "
            "configuration), --force to delete its results first, or another --out."
        )
    manifest = out / layout.manifest
    try:
        old = json.loads(manifest.read_text())
        old_hash, old_fields = old["config_hash"], old.get("config_fields", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutDirError(
            f"--resume: {manifest} has no configuration hash to check ({exc!r}); it cannot be "
            "resumed. Use --force or another --out."
        ) from exc
    new = manifest_fields(fields)
    if old_hash != new["config_hash"]:
        diff = differing_fields(old_fields, new["config_fields"]) or ["(hash only)"]
        raise OutDirError(
            f"--resume: {out} holds a run with another configuration; differing fields: "
            f"{', '.join(diff)}. Use --force or another --out."
        )
    return True


def stamp_manifest(out: Path, name: str, fields: dict[str, Any], *, complete: bool) -> None:
    """Merge the configuration (and whether the run finished) into out/name, e.g. the run.json
    of a single simulation: written before the run so an interrupted one can be resumed, and
    again after it (the run rewrites run.json)."""
    path = out / name
    try:
        doc = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        doc = {}
    out.mkdir(parents=True, exist_ok=True)
    doc.update(manifest_fields(fields), complete=complete)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)


def is_complete(out: Path, name: str) -> bool:
    try:
        return bool(json.loads((out / name).read_text()).get("complete"))
    except (OSError, ValueError, AttributeError):
        return False

"""One file per finished probe of a cluster capacity search, written by the worker as soon as
the probe is done, so that Ctrl-C or a crash keeps every finished probe and `--resume` replays
the search from them (same probes in the same order: the search is deterministic).

Layout: <out>/n<N>/<router>/<arm>.probes/x<rate>.json = {"rate_scale": r, **summary}; the
cluster report reads only n*/*/*.json, one level up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def probe_dir(out_dir: Path, num_replicas: int, router: str, arm: str) -> Path:
    return out_dir / f"n{num_replicas}" / router / f"{arm}.probes"


def save_probe(directory: Path, rate: float, summary: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"x{rate!r}.json"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"  # whole or not at all
    tmp.write_text(json.dumps({"rate_scale": rate, **summary}, default=str) + "\n")
    os.replace(tmp, path)


def load_probes(directory: Path) -> dict[float, dict[str, Any]]:
    """rate -> summary of every readable probe file (a torn or foreign one is skipped: that
    probe simply runs again)."""
    out: dict[float, dict[str, Any]] = {}
    for path in sorted(directory.glob("x*.json")):
        try:
            doc = json.loads(path.read_text())
            rate = float(doc.pop("rate_scale"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        out[rate] = doc
    return out

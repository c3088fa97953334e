"""Small trace files written per test (tmp_path); the shared real traces are optional."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces"

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
AZURE_ROWS = [
    "2023-11-16 18:15:46.6805900,374,44",
    "2023-11-16 18:15:50.9951690,396,109",
    "2023-11-16 18:15:51.2224670,879,55",
    "2023-11-16 18:15:51.3910170,91,16",
]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture
def azure_csv(write: Callable[[str, str], Path]) -> Path:
    return write("azure.csv", "\n".join([AZURE_HEADER, *AZURE_ROWS]) + "\n")

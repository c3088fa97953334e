"""The one exception every trace problem raises, and the line bookkeeping its messages need."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO


class TraceError(ValueError):
    """A trace file that cannot be read as requests.

    Carries the file, the 1-based physical line in that file (header = line 1 for CSV) and the
    field, so a user can open the file at the offending spot. `line` or `field` is None only when
    the problem has no single place (e.g. a file with no rows at all has no field).
    """

    def __init__(
        self,
        path: str | Path | None,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path or "<trace>"
        if line is not None:
            where += f":{line}"
        what = f" field {field!r}:" if field is not None else ""
        super().__init__(f"{where}:{what} {message}")


def open_text(path: str | Path) -> IO[str]:
    """Open a trace as text; `.gz` is decompressed transparently (traces are often shipped so)."""
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8", newline="")
    return p.open("r", encoding="utf-8", newline="")


def physical_line_of_row(path: str | Path, row_index: int, *, header_lines: int = 1) -> int:
    """1-based physical line of data row `row_index` (0-based) of a CSV file.

    The fast CSV reader skips empty lines, so row numbers and line numbers differ whenever a file
    has blank lines; this rescans the file, which is only ever done on an error/warning path.
    """
    seen = -header_lines
    lineno = 0
    with open_text(path) as f:
        for lineno, text in enumerate(f, start=1):
            if text.strip("\r\n") == "":
                continue
            if seen == row_index:
                return lineno
            seen += 1
    return lineno + 1

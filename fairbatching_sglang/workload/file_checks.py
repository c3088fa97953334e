"""Problems with a trace file as a file (not its rows): wrong kind of path, fake or truncated gzip,
bytes that are not UTF-8. Each becomes a TraceError naming the file (and the line when there is
one) instead of an IsADirectoryError / BadGzipFile / EOFError traceback; click turns a stray
EOFError into a bare "Aborted.".
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from fairbatching_sglang.workload.errors import TraceError

GZIP_MAGIC = b"\x1f\x8b"
# What reading a broken file can raise below the loaders (pyarrow's I/O errors are OSError).
READ_ERRORS: tuple[type[BaseException], ...] = (UnicodeDecodeError, EOFError, zlib.error, OSError)


def check_file(path: Path) -> None:
    """Refuse what cannot be a trace before any parser opens it."""
    if not path.exists():
        raise TraceError(path, "file not found")
    if path.is_dir():
        raise TraceError(path, "is a directory, not a trace file")
    if not path.is_file():
        raise TraceError(path, "not a regular file")
    try:
        with path.open("rb") as f:
            magic = f.read(2)
    except OSError as e:
        raise TraceError(path, f"cannot read: {e.strerror or e}") from None
    if path.suffix == ".gz" and magic != GZIP_MAGIC:
        raise TraceError(path, "named .gz but not gzip-compressed (rename or compress it)")


def first_non_utf8_line(path: Path) -> int | None:
    """1-based line of the first line that is not valid UTF-8 (decompressing .gz); None if none
    is found (or the stream ends early). Only called on an error path."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except (EOFError, zlib.error, OSError):
        pass
    return None


def read_error(path: Path, exc: BaseException) -> TraceError:
    """The TraceError for an exception from READ_ERRORS raised while reading `path`."""
    if isinstance(exc, TraceError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.start + 1].hex()
        return TraceError(
            path,
            f"not UTF-8 text (byte 0x{bad}); binary data, or another encoding such as Latin-1 "
            "(convert with: iconv -f latin1 -t utf-8)",
            line=first_non_utf8_line(path),
        )
    if path.suffix == ".gz" or isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
        return TraceError(path, f"truncated or corrupt gzip file ({exc})")
    if isinstance(exc, OSError) and "compressed" in str(exc).lower():
        return TraceError(path, f"truncated or corrupt compressed file ({exc})")
    strerror = getattr(exc, "strerror", None)
    return TraceError(path, f"cannot read: {strerror or exc}")

"""Row checks shared by every loader, the zero-length policy, and assembly into a RequestTable.

Loaders hand over batches of already-parsed columns; this module windows, validates and orders
them. Errors name the file, the 1-based physical line and the field.

Zero-length policy (`zero_lengths`):
- "clamp" (default): a 0 in input_tokens or output_tokens becomes 1, with one warning naming the
  count and the first line. Reason: the request did arrive and did cost the server a prefill, so
  dropping it would understate load; an engine cannot serve an empty prompt nor generate zero
  tokens (`max_new_tokens >= 1`), so 1 is the smallest replayable request.
- "drop": such rows are removed (with a warning) - for failed requests, e.g. BurstGPT failures.
- "error": TraceError at the first one.
Ranges (`ranges.py`): token counts must be finite integers in [0, 10^9] and timestamps finite,
within 1e10 s and within 400 days of the first row; anything else is a TraceError, never a cast.
Decreasing timestamps: by default the rows are stably sorted with one warning (first line named);
`strict=True` raises instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fairbatching_sglang.workload.errors import TraceError
from fairbatching_sglang.workload.ranges import first_bad_time, first_bad_token_count
from fairbatching_sglang.workload.table import RequestTable

ZeroPolicy = Literal["clamp", "drop", "error"]
ZERO_POLICIES: tuple[str, ...] = ("clamp", "drop", "error")


class TraceWarning(UserWarning):
    """Something in a trace was repaired (sorted, clamped, dropped) rather than refused."""


@dataclass(frozen=True)
class Fields:
    """The names used in messages for the three core fields of the file being read."""

    time: str
    input: str
    output: str


@dataclass
class Collector:
    """Accumulates parsed batches, applying window / max_rows and all row checks.

    `line_of(i)` maps the 0-based index of a data row (in file order, counting every row read)
    to its physical line; it is only called when a message needs a line.
    """

    path: Path
    fmt: str
    fields: Fields
    line_of: Callable[[int], int]
    start_s: float | None = None
    duration_s: float | None = None
    max_rows: int | None = None
    strict: bool = False
    _times: list[np.ndarray] = field(default_factory=list)
    _inputs: list[np.ndarray] = field(default_factory=list)
    _outputs: list[np.ndarray] = field(default_factory=list)
    # zero-length bookkeeping per field: [count, first row in file order]; kept here so the
    # per-row indices need not be stored (they would cost 8 bytes a row on a 27M-row trace)
    _zeros: dict[str, list[int]] = field(default_factory=dict)
    _extras: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _num_read: int = 0
    _num_kept: int = 0
    _last_t: float = -math.inf
    _first_t: float | None = None
    _first_decrease: int | None = None
    _num_decreases: int = 0
    stopped_early: bool = False

    def err(self, row: int, fld: str | None, msg: str) -> TraceError:
        # strip: a padded header name (" input_tokens ") is reported as the user spells it
        fld = fld.strip() if fld is not None else None
        return TraceError(self.path, msg, line=self.line_of(row), field=fld)

    @property
    def done(self) -> bool:
        return self.stopped_early

    def add(
        self,
        t_s: np.ndarray,
        inputs: np.ndarray,
        outputs: np.ndarray,
        extras: dict[str, np.ndarray] | None = None,
        select: np.ndarray | None = None,
    ) -> bool:
        """Take one batch (times in seconds from trace start; lengths as float64 so NaN can mark
        a missing cell). `select` (bool) pre-filters rows, e.g. by model; unselected rows are
        still counted and time-checked. Returns False once no later row can be kept."""
        n = t_s.shape[0]
        base = self._num_read
        self._num_read += n
        if n == 0:
            return True
        if self._first_t is None:
            self._first_t = float(t_s[0]) if np.isfinite(t_s[0]) else 0.0
        bad_t = first_bad_time(t_s, self._first_t)
        if bad_t is not None:
            raise self.err(base + bad_t[0], self.fields.time, bad_t[1])
        # Decreasing timestamps: compare with the previous row, across batch boundaries too.
        prev = np.concatenate(([self._last_t], t_s[:-1]))
        dec = t_s < prev
        if dec.any():
            first = base + int(np.argmax(dec))
            if self.strict:
                raise self.err(
                    first,
                    self.fields.time,
                    f"timestamp decreases ({t_s[first - base]!r} after {prev[first - base]!r}); "
                    "strict mode refuses unsorted traces",
                )
            if self._first_decrease is None:
                self._first_decrease = first
            self._num_decreases += int(dec.sum())
        self._last_t = float(t_s[-1])

        keep = np.ones(n, dtype=bool) if select is None else select.copy()
        lo = self.start_s or 0.0
        if self.start_s is not None:
            keep &= t_s >= lo
        stop = False
        if self.duration_s is not None:
            end = lo + self.duration_s
            keep &= t_s < end
            # Traces are (near-)time-ordered: a batch wholly past the window ends the read.
            stop = bool(t_s.min() >= end)
        idx = np.flatnonzero(keep)
        if self.max_rows is not None and self._num_kept + idx.size >= self.max_rows:
            idx = idx[: self.max_rows - self._num_kept]
            stop = True
        if idx.size:
            self._check_lengths(inputs[idx], base + idx, self.fields.input)
            self._check_lengths(outputs[idx], base + idx, self.fields.output)
            self._times.append(t_s[idx])
            self._inputs.append(inputs[idx].astype(np.int64))
            self._outputs.append(outputs[idx].astype(np.int64))
            for fld, arr in (
                (self.fields.input, self._inputs[-1]),
                (self.fields.output, self._outputs[-1]),
            ):
                zero = arr == 0
                if zero.any():
                    rec = self._zeros.setdefault(fld, [0, base + int(idx[np.argmax(zero)])])
                    rec[0] += int(zero.sum())
            for k, v in (extras or {}).items():
                self._extras.setdefault(k, []).append(v[idx])
            self._num_kept += idx.size
        self.stopped_early = stop
        return not stop

    def _check_lengths(self, x: np.ndarray, rows: np.ndarray, fld: str) -> None:
        nan = np.isnan(x)
        if nan.any():
            raise self.err(int(rows[np.argmax(nan)]), fld, "missing value (expected a token count)")
        bad = first_bad_token_count(x)
        if bad is not None:
            raise self.err(int(rows[bad[0]]), fld, bad[1])

    def finish(self, zero_lengths: ZeroPolicy = "clamp") -> RequestTable:
        if zero_lengths not in ZERO_POLICIES:
            raise ValueError(f"zero_lengths must be one of {ZERO_POLICIES}, got {zero_lengths!r}")
        if self._num_read == 0:
            raise TraceError(self.path, "no requests: the file has a header but no rows", line=2)
        if self._num_kept == 0:
            raise TraceError(
                self.path,
                f"no requests left after window start_s={self.start_s} duration_s={self.duration_s}"
                f" ({self._num_read} rows read)",
                line=None,
            )
        t = np.concatenate(self._times)
        inp = np.concatenate(self._inputs)
        out = np.concatenate(self._outputs)
        extras: dict[str, Any] = {k: np.concatenate(v) for k, v in self._extras.items()}
        # drop the per-batch pieces now: peak memory is then ~one copy of the kept columns
        self._times, self._inputs, self._outputs, self._extras = [], [], [], {}
        notes: list[str] = []

        if self._first_decrease is not None:
            warnings.warn(
                f"{self.path}:{self.line_of(self._first_decrease)}: field {self.fields.time!r}: "
                f"{self._num_decreases} decreasing timestamp(s); rows sorted by time "
                "(pass strict=True to refuse)",
                TraceWarning,
                stacklevel=3,
            )
            order = np.argsort(t, kind="stable")
            t, inp, out = t[order], inp[order], out[order]
            extras = {k: v[order] for k, v in extras.items()}
            notes.append(f"sorted {self._num_decreases} out-of-order rows")

        keep = np.ones(t.shape[0], dtype=bool)
        for arr, fld, name in (
            (inp, self.fields.input, "input_tokens"),
            (out, self.fields.output, "output_tokens"),
        ):
            if fld not in self._zeros:
                continue
            zero = arr == 0
            count, first_row = self._zeros[fld]
            if zero_lengths == "error":
                raise self.err(first_row, fld, f"zero token count ({count} such rows)")
            where = f"{self.path}:{self.line_of(first_row)}: field {fld!r}"
            if zero_lengths == "clamp":
                arr[zero] = 1
                notes.append(f"clamped {count} zero {name} to 1")
                warnings.warn(
                    f"{where}: {count} zero token count(s) set to 1", TraceWarning, stacklevel=3
                )
            else:
                keep &= ~zero
                warnings.warn(
                    f"{where}: {count} row(s) with zero token count dropped",
                    TraceWarning,
                    stacklevel=3,
                )
        if not keep.all():
            notes.append(f"dropped {int((~keep).sum())} zero-length rows")
            t, inp, out = t[keep], inp[keep], out[keep]
            extras = {k: v[keep] for k, v in extras.items()}
            if t.size == 0:
                raise TraceError(self.path, "no requests left after dropping zero-length rows")

        if self.start_s is not None or self.duration_s is not None:
            # The window's start becomes time zero: a replay begins with the window.
            t = t - (self.start_s or 0.0)
            notes.insert(
                0,
                f"window start_s={self.start_s or 0.0:g} duration_s={self.duration_s}"
                " (at load, rebased to 0)",
            )
        elif t[0] < 0:
            t = t - t[0]
        if self.max_rows is not None:
            notes.insert(0, f"max_rows={self.max_rows} (at load)")
        return RequestTable.from_arrays(
            t,
            inp,
            out,
            hash_ids=list(extras["hash_ids"]) if "hash_ids" in extras else None,
            slo_class=list(extras["slo_class"]) if "slo_class" in extras else None,
            source=str(self.path),
            format=self.fmt,
            transformations=notes,
        )


def check_table(table: RequestTable, path: Path) -> None:
    """Range checks for a table read whole (Parquet): the same bounds as for rows; the row is
    named by its 0-based index since a Parquet file has no lines."""
    t, inp, out = table.arrays()
    if t.size:
        bad_t = first_bad_time(t, float(t[0]))
        if bad_t is not None:
            raise TraceError(path, f"row {bad_t[0]}: {bad_t[1]}", field="arrival_s")
    for name, col in (("input_tokens", inp), ("output_tokens", out)):
        bad = first_bad_token_count(col.astype(np.float64))
        if bad is not None:
            raise TraceError(path, f"row {bad[0]}: {bad[1]}", field=name)

"""ServeGen workloads: Alibaba Model Studio per-client statistics turned into requests.

ServeGen (https://github.com/alibaba/ServeGen, Apache-2.0, code and data; Xiang et al.,
"ServeGen: Workload Characterization and Generation of Large Language Model Serving in
Production", arXiv:2505.09999) publishes no request list. A data directory such as
`data/language/m-large/` (also `m-mid`, `m-small`, `reason/deepseek-r1`) holds, per client `<i>`:

- `chunk-<i>-trace.csv`, no header, one row per window (600 s in the published data):
  `timestamp,rate,cv,pat_name,pat_arg1,pat_arg2` - window start (s, integer, same for every
  client), mean rate (req/s), measured inter-arrival CV, the fitted inter-arrival family `Gamma`
  or `Weibull` (empty: client idle) and its (shape, scale) (named `shape`/`scale` in errors here);
- `chunk-<i>-dataset.json`: `{"<timestamp>": {"input_tokens": "<pdf>", "output_tokens": "<pdf>",
  ...}}` (every 6 h in the published data), each pdf a Python dict literal `{tokens: probability}`.

The construction mirrors ServeGen at commit f891d11 (`servegen/clientpool.py`:
`ClientPool._load_data`, `Client.validate`, `ClientPool.validate`,
`ClientPoolView._process_client`, `_get_dataset_window`; `servegen/construct.py`:
`generate_workload`, `_sample_iats`, `_sample_data_batch`; `servegen/utils.py`:
`get_scaled_rate_fn`). For each window overlapping [start_s, start_s + duration_s), truncated to
it, and each client active there: n = ceil(rate * scale * window) gaps are drawn from the fitted
Gamma(shape, scale) or Weibull(shape, scale), rescaled to sum to the window (so the count is set
by the rate and the burstiness by the family's shape - ServeGen does not use the `cv` column)
and cumulated from the window start. Each request takes lengths from the client's latest length
distribution at or before the window (a timestamp with any empty pdf is skipped, as ServeGen
does), by inverse CDF; the token count is the pdf index.

`scale` is ServeGen's `get_scaled_rate_fn(pool, scale)`: every client's rate is multiplied by it
(same clients, same burstiness, k times the requests). Choices where ServeGen is loose or differs:
numpy's seeded `default_rng` instead of `RandomState` + scipy (same distributions, not the same
numbers); clients in id order, not directory order, so a seed means one table; the last window is
as long as the one before (ServeGen leaves it open-ended) and a span past the data is an error;
the n-th cumulated point, the window end, is always dropped (ServeGen drops it only when float
rounding puts it there, so n - 1 or n arrivals); an index past the pdf (its sum a hair under 1)
is clipped to the last token; 0 tokens becomes 1. ServeGen draws one uniform per request for
every field, so input and output lengths are comonotonic within a client window; that is the
default, `independent_lengths=True` draws them independently. Multimodal data (`text_tokens`,
`image_tokens`, ...) is not supported. Trace files are read and checked up front; a dataset file
is parsed only for the windows a call uses.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairbatching_sglang.workload.errors import TraceError
from fairbatching_sglang.workload.file_checks import READ_ERRORS, read_error
from fairbatching_sglang.workload.table import RequestTable

TRACE_FIELDS: tuple[str, ...] = ("timestamp", "rate", "cv", "pat_name", "shape", "scale")
PATTERNS: tuple[str, ...] = ("Gamma", "Weibull")  # ServeGen's ArrivalPat
LENGTH_FIELDS: tuple[str, str] = ("input_tokens", "output_tokens")
PDF_ATOL = 1e-6  # ServeGen's Client.validate tolerance on sum(pdf) == 1
_DATASET_NAME = re.compile(r"chunk-(\d+)-dataset\.json")


@dataclass(frozen=True)
class Window:
    """One trace row of a client; `pattern` None is ServeGen's idle window (`trace[ts] = None`)."""

    rate: float
    cv: float
    pattern: str | None
    shape: float
    scale: float


@dataclass
class Client:
    """A client's windows (aligned with `ServeGenData.timestamps`) and its lazily read lengths."""

    client_id: int
    trace_path: Path
    dataset_path: Path
    windows: list[Window]
    _dataset: dict[int, dict[str, Any]] | None = field(default=None, repr=False)
    _cdfs: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ServeGenData:
    """A loaded ServeGen data directory (see the module docstring)."""

    root: Path
    timestamps: tuple[int, ...]
    clients: dict[int, Client]

    def window_end(self, i: int) -> float:
        ts = self.timestamps
        if i + 1 < len(ts):
            return float(ts[i + 1])
        return math.inf if len(ts) == 1 else float(2 * ts[-1] - ts[-2])

    @property
    def end_s(self) -> float:
        return self.window_end(len(self.timestamps) - 1)


def _parse_trace(path: Path) -> tuple[list[int], list[Window]]:
    stamps: list[int] = []
    rows: list[Window] = []
    try:
        text = path.read_text(encoding="utf-8")
    except READ_ERRORS as e:
        raise read_error(path, e) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.strip().split(",")
        if parts == [""]:
            continue  # a blank (e.g. trailing) line is not a window
        if len(parts) != len(TRACE_FIELDS):
            raise TraceError(
                path, f"expected 6 fields {','.join(TRACE_FIELDS)}, got {len(parts)}", line=lineno
            )
        v: dict[str, float] = {}
        for name, raw in zip(TRACE_FIELDS, parts, strict=True):
            if name == "pat_name":
                continue
            try:
                v[name] = float(raw)
            except ValueError:
                raise TraceError(path, f"not a number: {raw!r}", line=lineno, field=name) from None
            if not (math.isfinite(v[name]) and v[name] >= 0):
                raise TraceError(path, f"must be >= 0, got {raw!r}", line=lineno, field=name)
        ts = v["timestamp"]
        if ts != int(ts) or (stamps and ts <= stamps[-1]):
            why = (
                "must be an integer" if ts != int(ts) else f"must increase (previous {stamps[-1]})"
            )
            raise TraceError(path, why, line=lineno, field="timestamp")
        pat = parts[3].strip() or None
        if pat is not None and pat not in PATTERNS:
            raise TraceError(
                path,
                f"unknown arrival pattern {pat!r} (ServeGen has Gamma, Weibull)",
                line=lineno,
                field="pat_name",
            )
        for name in ("shape", "scale"):
            if pat is not None and v[name] <= 0:
                raise TraceError(path, f"must be > 0 for a {pat} window", line=lineno, field=name)
        stamps.append(int(ts))
        rows.append(Window(v["rate"], v["cv"], pat, v["shape"], v["scale"]))
    if not rows:
        raise TraceError(path, "no windows (empty trace file)")
    return stamps, rows


def load_servegen(data_dir: str | Path) -> ServeGenData:
    """Read and check a ServeGen data directory's trace files (dataset files are read lazily)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise TraceError(root, "ServeGen data directory not found (or not a directory)")
    ids = sorted(int(m[1]) for p in root.iterdir() if (m := _DATASET_NAME.fullmatch(p.name)))
    if not ids:
        raise TraceError(
            root,
            "no chunk-<id>-dataset.json files: not a ServeGen data directory "
            "(expected e.g. ServeGen/data/language/m-large)",
        )
    clients: dict[int, Client] = {}
    first: tuple[Path, list[int]] | None = None
    for cid in ids:
        trace = root / f"chunk-{cid}-trace.csv"
        if not trace.is_file():
            raise TraceError(trace, f"file not found (client {cid} has a dataset but no trace)")
        stamps, rows = _parse_trace(trace)
        if first is None:
            first = (trace, stamps)
        elif stamps != first[1]:
            raise TraceError(
                trace,
                f"window timestamps differ from {first[0].name}'s (ServeGen requires "
                "the same windows for every client)",
                field="timestamp",
            )
        clients[cid] = Client(cid, trace, root / f"chunk-{cid}-dataset.json", rows)
    assert first is not None
    return ServeGenData(root, tuple(first[1]), clients)


# ---- length distributions (dataset files) ------------------------------------------------------
def _json_line(path: Path, ts: int, name: str | None) -> int | None:
    """1-based line of `"ts": {` (then of `"name":` after it) in a dataset file; error path only."""
    want = [f'"{ts}"'] + ([f'"{name}"'] if name else [])
    with path.open(encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if want[0] in text:
                want.pop(0)
                if not want:
                    return lineno
    return None


def _dataset(data: ServeGenData, c: Client) -> dict[int, dict[str, Any]]:
    if c._dataset is not None:
        return c._dataset
    p = c.dataset_path
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TraceError(p, f"not valid JSON: {e.msg}", line=e.lineno) from None
    except READ_ERRORS as e:
        raise read_error(p, e) from None
    if not isinstance(raw, dict):
        raise TraceError(p, "expected a JSON object {timestamp: {field: pdf}}", line=1)
    out: dict[int, dict[str, Any]] = {}
    for key, entry in raw.items():
        if not key.isdigit() or int(key) not in data.timestamps:
            raise TraceError(p, "not one of the trace's window timestamps", field=key)
        if not isinstance(entry, dict):
            raise TraceError(p, "expected an object {field: pdf}", field=key)
        out[int(key)] = entry
    c._dataset = out
    return out


def _cdf(path: Path, ts: int, raw: Any, name: str) -> np.ndarray:
    """Cumulative distribution over token counts 0..max from a `{tokens: probability}` literal."""

    def bad(message: str) -> TraceError:  # the line is looked up only on this error path
        return TraceError(path, message, line=_json_line(path, ts, name), field=f"{ts}/{name}")

    try:
        pdf = ast.literal_eval(raw) if isinstance(raw, str) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pdf = None
    if not isinstance(pdf, dict):
        raise bad("expected a string holding a {tokens: probability} dict")
    keys, probs = list(pdf), list(pdf.values())
    if not all(type(k) is int and k >= 0 for k in keys):
        raise bad("token counts (keys) must be integers >= 0")
    if not all(type(q) in (int, float) and 0 <= q <= 1 for q in probs):
        raise bad("probabilities must be numbers in [0, 1]")
    if abs(math.fsum(probs) - 1) > PDF_ATOL:
        raise bad(f"probabilities sum to {math.fsum(probs):.9g}, not 1")
    dense = np.zeros(max(keys) + 1)
    dense[keys] = probs
    return np.cumsum(dense)


def _lengths_cdfs(data: ServeGenData, c: Client, window_ts: int) -> tuple[np.ndarray, np.ndarray]:
    """The CDFs of the latest usable dataset timestamp <= window_ts (ServeGen's dataset window)."""
    dataset = _dataset(data, c)
    for ts in sorted((t for t in dataset if t <= window_ts), reverse=True):
        if ts in c._cdfs:
            return c._cdfs[ts]
        entry = dataset[ts]
        if any(isinstance(v, str) and v.strip() == "{}" for v in entry.values()):
            continue  # ServeGen drops a timestamp with any empty pdf and uses an earlier one
        for name in LENGTH_FIELDS:
            if name not in entry:
                raise TraceError(
                    c.dataset_path,
                    f"missing (has {sorted(entry)}; multimodal data is not supported)",
                    line=_json_line(c.dataset_path, ts, None),
                    field=f"{ts}/{name}",
                )
        cdfs = (
            _cdf(c.dataset_path, ts, entry[LENGTH_FIELDS[0]], LENGTH_FIELDS[0]),
            _cdf(c.dataset_path, ts, entry[LENGTH_FIELDS[1]], LENGTH_FIELDS[1]),
        )
        c._cdfs[ts] = cdfs
        return cdfs
    raise TraceError(
        c.dataset_path,
        f"no length distribution at or before window {window_ts}, where client "
        f"{c.client_id} is active",
    )


# ---- generation ---------------------------------------------------------------------------------
def _arrivals(
    rng: np.random.Generator, w: Window, rate: float, t0: float, size: float
) -> np.ndarray:
    """ServeGen's `_sample_iats`: ceil(rate * size) gaps rescaled to fill [t0, t0 + size)."""
    n = math.ceil(rate * size)
    if n == 0:
        return np.empty(0)
    if w.pattern == "Gamma":
        gaps = rng.gamma(w.shape, w.scale, n)
    else:
        gaps = w.scale * rng.weibull(w.shape, n)
    total = float(gaps.sum())
    if not (total > 0 and math.isfinite(total)):
        # Gamma shapes in the data go down to ~0.007, whose draws can underflow to 0; if all do,
        # ServeGen would divide by zero. Even spacing is the only rescaling left.
        gaps, total = np.ones(n), float(n)
    # The n-th point is the window end by construction; ServeGen keeps or drops it by float
    # rounding (`t < end`), so it is dropped here outright. Times are rounded to what the CSV
    # keeps (us) here, so that rounding cannot move an arrival into the next window.
    t = np.round(t0 + np.cumsum(gaps[:-1] * (size / total)), 6)
    return t[t < t0 + size]


def _lengths(
    rng: np.random.Generator, cdfs: tuple[np.ndarray, np.ndarray], n: int, independent: bool
) -> tuple[np.ndarray, np.ndarray]:
    u = rng.random(n)
    v = rng.random(n) if independent else u  # ServeGen reuses one uniform for every field
    return (
        np.minimum(np.searchsorted(cdfs[0], u), cdfs[0].size - 1),
        np.minimum(np.searchsorted(cdfs[1], v), cdfs[1].size - 1),
    )


def generate_servegen(
    data_dir: str | Path | ServeGenData,
    start_s: float,
    duration_s: float,
    scale: float = 1.0,
    seed: int = 0,
    *,
    clients: Iterable[int] | None = None,
    independent_lengths: bool = False,
) -> RequestTable:
    """Requests of [start_s, start_s + duration_s) of a ServeGen data directory, arrivals from 0.

    `start_s` is on the data's clock (0 = its first window; the published data starts at
    midnight, e.g. 64800 = 18:00); `scale` multiplies every client's rate; `clients` restricts to
    those ids (default all). Deterministic in `seed`.
    """
    data = data_dir if isinstance(data_dir, ServeGenData) else load_servegen(data_dir)
    end = start_s + duration_s
    if not (duration_s > 0 and scale > 0 and math.isfinite(end) and math.isfinite(scale)):
        raise ValueError(f"need duration_s > 0 and scale > 0, got {duration_s}, {scale}")
    if start_s < data.timestamps[0] or end > data.end_s:
        raise ValueError(
            f"span [{start_s:g}, {end:g}) s is outside the data in {data.root}, which covers "
            f"[{data.timestamps[0]}, {data.end_s:g}) s"
        )
    ids = sorted(data.clients) if clients is None else sorted(set(clients))
    unknown = [i for i in ids if i not in data.clients]
    if unknown:
        raise ValueError(f"unknown ServeGen client ids {unknown} in {data.root}")
    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i, ts in enumerate(data.timestamps):
        lo, hi = max(float(ts), start_s), min(data.window_end(i), end)
        if hi <= lo:
            continue
        for cid in ids:
            c = data.clients[cid]
            w = c.windows[i]
            if w.pattern is None:
                continue
            t = _arrivals(rng, w, w.rate * scale, lo - start_s, hi - lo)
            if t.size:
                parts.append(
                    (t, *_lengths(rng, _lengths_cdfs(data, c, ts), t.size, independent_lengths))
                )
    t, inp, out = (
        np.concatenate([p[k] for p in parts]) if parts else np.empty(0) for k in range(3)
    )
    order = np.argsort(t, kind="stable")
    inp, out = inp[order].astype(np.int64), out[order].astype(np.int64)
    zeros = int((inp == 0).sum() + (out == 0).sum())
    coupling = "independent" if independent_lengths else "servegen"
    notes = [
        f"servegen dir={data.root} start_s={start_s:g} duration_s={duration_s:g} scale={scale:g} "
        f"seed={seed} clients={len(ids)} lengths={coupling}"
    ]
    if zeros:
        notes.append(f"clamped {zeros} zero token counts to 1")
    return RequestTable.from_arrays(
        t[order],
        np.maximum(inp, 1),
        np.maximum(out, 1),
        source=f"servegen:{data.root}",
        format="servegen",
        transformations=notes,
    )

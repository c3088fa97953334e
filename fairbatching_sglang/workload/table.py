"""`RequestTable`: the one in-memory form of a trace that every loader produces.

Columns: `arrival_s` (float64, seconds from trace start, sorted ascending), `input_tokens` and
`output_tokens` (int64, >= 1 after loading), optional `hash_ids` (object column of lists of int:
Mooncake 512-token prefix blocks) and optional `slo_class` (str). Metadata: where it came from, the
detected format, and every transformation applied, in order, as human-readable strings so a
result can name exactly which workload produced it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("arrival_s", "input_tokens", "output_tokens")
OPTIONAL_COLUMNS: tuple[str, ...] = ("hash_ids", "slo_class")
_META_KEY = b"fairbatching.request_table"


def _readonly(a: np.ndarray) -> np.ndarray:
    # The table is frozen; a caller writing into a returned array must not change it silently.
    a = a.view()
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class RequestTable:
    """A trace as a table of requests (see the module docstring for the schema).

    Build one with a loader (`load_trace`), the generator (`generate`) or `from_arrays`; the
    constructor checks the schema so that every consumer can rely on it.
    """

    df: pd.DataFrame
    source: str | None = None
    format: str | None = None
    transformations: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in self.df.columns]
        if missing:
            raise ValueError(f"RequestTable is missing columns {missing}")
        extra = set(self.df.columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS)
        if extra:
            raise ValueError(f"RequestTable has unknown columns {sorted(extra)}")
        if self.df["arrival_s"].dtype != np.float64:
            raise ValueError("arrival_s must be float64")
        for c in ("input_tokens", "output_tokens"):
            if self.df[c].dtype != np.int64:
                raise ValueError(f"{c} must be int64")
        arr = self.df["arrival_s"].to_numpy()
        if arr.size > 1 and bool(np.any(np.diff(arr) < 0)):
            raise ValueError("arrival_s must be sorted ascending")
        if not isinstance(self.transformations, tuple):
            object.__setattr__(self, "transformations", tuple(self.transformations))

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        arrival_s: Sequence[float] | np.ndarray,
        input_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        *,
        hash_ids: Sequence[Sequence[int]] | None = None,
        slo_class: Sequence[str] | None = None,
        source: str | None = None,
        format: str | None = None,
        transformations: Sequence[str] = (),
        sort: bool = False,
    ) -> RequestTable:
        """Build a table from columns; `sort=True` stably sorts by arrival first."""
        import pandas as pd

        cols: dict[str, Any] = {
            "arrival_s": np.asarray(arrival_s, dtype=np.float64),
            "input_tokens": np.asarray(input_tokens, dtype=np.int64),
            "output_tokens": np.asarray(output_tokens, dtype=np.int64),
        }
        n = cols["arrival_s"].shape[0]
        if hash_ids is not None:
            h = np.empty(n, dtype=object)
            h[:] = [list(map(int, x)) for x in hash_ids]
            cols["hash_ids"] = h
        if slo_class is not None:
            cols["slo_class"] = np.asarray(slo_class, dtype=object).astype(str)
        df = pd.DataFrame(cols, copy=False)  # the arrays are ours: no second copy
        if sort:
            df = df.sort_values("arrival_s", kind="stable", ignore_index=True)
        return cls(df, source=source, format=format, transformations=tuple(transformations))

    def derive(self, df: pd.DataFrame, note: str) -> RequestTable:
        """A new table with `df` and `note` appended to the transformation list."""
        return replace(
            self, df=df.reset_index(drop=True), transformations=(*self.transformations, note)
        )

    # ---- numpy accessors (the simulator reads these) ------------------------------------------
    @property
    def arrival_s(self) -> np.ndarray:
        return _readonly(self.df["arrival_s"].to_numpy(dtype=np.float64))

    @property
    def input_tokens(self) -> np.ndarray:
        return _readonly(self.df["input_tokens"].to_numpy(dtype=np.int64))

    @property
    def output_tokens(self) -> np.ndarray:
        return _readonly(self.df["output_tokens"].to_numpy(dtype=np.int64))

    @property
    def hash_ids(self) -> list[list[int]] | None:
        return None if "hash_ids" not in self.df.columns else list(self.df["hash_ids"])

    @property
    def slo_class(self) -> np.ndarray | None:
        if "slo_class" not in self.df.columns:
            return None
        return _readonly(self.df["slo_class"].to_numpy(dtype=object))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arrival_s, input_tokens, output_tokens) as read-only numpy arrays."""
        return self.arrival_s, self.input_tokens, self.output_tokens

    def __len__(self) -> int:
        return len(self.df)

    @property
    def num_requests(self) -> int:
        return len(self.df)

    @property
    def span_s(self) -> float:
        """Time from the first to the last arrival (0 for fewer than two requests)."""
        a = self.df["arrival_s"]
        return float(a.iloc[-1] - a.iloc[0]) if len(a) > 1 else 0.0

    @property
    def mean_rate_rps(self) -> float:
        """Requests per second over the span: (n - 1) / span, the unbiased rate of n arrivals."""
        span = self.span_s
        return (len(self) - 1) / span if span > 0 else float("nan")

    def describe(self) -> str:
        steps = "; ".join(self.transformations) or "none"
        return f"{self.source or '<memory>'} [{self.format or '?'}] transformations: {steps}"

    # ---- writing / reading --------------------------------------------------------------------
    def _generic_frame(self) -> pd.DataFrame:
        out = self.df.copy()
        if "hash_ids" in out.columns:
            # CSV has no list type: a JSON list per cell, parsed back by the generic loader.
            out["hash_ids"] = [json.dumps(list(map(int, h))) for h in out["hash_ids"]]
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the generic CSV format (arrival_s at microsecond precision)."""
        p = Path(path)
        self._generic_frame().to_csv(p, index=False, float_format="%.6f")
        return p

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the generic JSONL format, one request per line."""
        p = Path(path)
        has_h = "hash_ids" in self.df.columns
        has_c = "slo_class" in self.df.columns
        with p.open("w", encoding="utf-8") as f:
            for i, (t, a, b) in enumerate(zip(*self.arrays(), strict=True)):
                rec: dict[str, Any] = {
                    "arrival_s": round(float(t), 6),
                    "input_tokens": int(a),
                    "output_tokens": int(b),
                }
                if has_c:
                    rec["slo_class"] = str(self.df["slo_class"].iat[i])
                if has_h:
                    rec["hash_ids"] = list(map(int, self.df["hash_ids"].iat[i]))
                f.write(json.dumps(rec) + "\n")
        return p

    def to_parquet(self, path: str | Path) -> Path:
        """Write Parquet, keeping source/format/transformations in the schema metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = Path(path)
        tbl = pa.Table.from_pandas(self.df, preserve_index=False)
        meta = {
            "source": self.source,
            "format": self.format,
            "transformations": list(self.transformations),
        }
        tbl = tbl.replace_schema_metadata(
            {**(tbl.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()}
        )
        pq.write_table(tbl, p)
        return p

    @classmethod
    def from_parquet(cls, path: str | Path) -> RequestTable:
        import pyarrow.parquet as pq

        tbl = pq.read_table(path)
        raw = (tbl.schema.metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else {}
        df = tbl.to_pandas()
        if "hash_ids" in df.columns:
            h = np.empty(len(df), dtype=object)
            h[:] = [list(map(int, x)) for x in df["hash_ids"]]
            df["hash_ids"] = h
        if "slo_class" in df.columns:
            df["slo_class"] = df["slo_class"].astype(object)
        return cls(
            df,
            source=meta.get("source", str(path)),
            format=meta.get("format", "parquet"),
            transformations=tuple(meta.get("transformations", ())),
        )

    def save(self, path: str | Path) -> Path:
        """Write by suffix: .csv, .jsonl/.json, .parquet."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            return self.to_csv(path)
        if suffix in (".jsonl", ".json"):
            return self.to_jsonl(path)
        if suffix in (".parquet", ".pq"):
            return self.to_parquet(path)
        raise ValueError(
            f"cannot tell the output format from {path!r}: use .csv, .jsonl or .parquet"
        )

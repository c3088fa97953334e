"""Fit the hinge step-cost form to priced or measured steps.

    T = c0 + c1*(P+B) + c3*S + c4*Q + c5*max(0, K - (P+B))

K is found by a 1-D search (a coarse grid, then a finer grid around the best point); for each
K the other coefficients are the exact solution of a small constrained least-squares problem:
all coefficients >= 0 and c5 <= c1 (which `HingeCostModel` requires). The objective is the sum of
squared *relative* errors (rows weighted by 1/T), since relative error is what the profiles
report and what a time budget cares about.

Used by `scripts/fit_cost_profile.py` (engine-priced steps) and by
`fairbatching profile fit --from-steps` (measured steps). Needs numpy only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fairbatching_sglang.core.cost_model import HingeCostModel

# Column order of the design matrix (the knee column depends on K).
COEFFICIENT_NAMES = (
    "c0_ms",
    "c1_ms_per_token",
    "c3_ms_per_kv_token",
    "c4_ms_per_attn_unit",
    "c5_ms_per_token_below_knee",
)


@dataclass(frozen=True)
class StepSamples:
    """Steps as parallel arrays: P, B, S, Q and the step time in ms."""

    num_prefill_tokens: np.ndarray
    num_decode_reqs: np.ndarray
    decode_kv_tokens: np.ndarray
    prefill_attn_work: np.ndarray
    step_ms: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.step_ms)
        for name in ("num_prefill_tokens", "num_decode_reqs", "decode_kv_tokens"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"StepSamples.{name} has a different length than step_ms")
        if len(self.prefill_attn_work) != n:
            raise ValueError("StepSamples.prefill_attn_work has a different length than step_ms")

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float]]) -> StepSamples:
        """rows of (P, B, S, Q, ms)."""
        arr = np.asarray(rows, dtype=float).reshape(-1, 5)
        return cls(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])

    def __len__(self) -> int:
        return len(self.step_ms)

    @property
    def num_tokens(self) -> np.ndarray:
        return self.num_prefill_tokens + self.num_decode_reqs

    def subset(self, index: np.ndarray) -> StepSamples:
        return StepSamples(
            self.num_prefill_tokens[index],
            self.num_decode_reqs[index],
            self.decode_kv_tokens[index],
            self.prefill_attn_work[index],
            self.step_ms[index],
        )

    def split_half(self, seed: int) -> tuple[StepSamples, StepSamples]:
        """Random (train, held-out) halves, deterministic in seed."""
        order = np.random.default_rng(seed).permutation(len(self))
        half = len(self) // 2
        return self.subset(order[half:]), self.subset(order[:half])


@dataclass(frozen=True)
class FitErrors:
    """Relative error |pred - actual| / actual over a set of steps."""

    mean_rel_err: float
    p90_rel_err: float
    max_rel_err: float
    num_samples: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean_rel_err": round(self.mean_rel_err, 5),
            "p90_rel_err": round(self.p90_rel_err, 5),
            "max_rel_err": round(self.max_rel_err, 5),
            "num_samples": self.num_samples,
        }


@dataclass(frozen=True)
class FitResult:
    cost_model: HingeCostModel
    train: FitErrors
    held_out: FitErrors | None


def hinge_design(samples: StepSamples, knee_tokens: float) -> np.ndarray:
    """Design matrix with columns in COEFFICIENT_NAMES order."""
    n = samples.num_tokens
    return np.column_stack(
        [
            np.ones(len(samples)),
            n,
            samples.decode_kv_tokens,
            samples.prefill_attn_work,
            np.maximum(0.0, knee_tokens - n),
        ]
    )


def predict(model: HingeCostModel, samples: StepSamples) -> np.ndarray:
    """Vectorised HingeCostModel.predict_raw_ms (steps with P+B > 0)."""
    x = hinge_design(samples, model.knee_tokens)
    coef = np.array(
        [
            model.c0_ms + model.overhead_ms,
            model.c1_ms_per_token,
            model.c3_ms_per_kv_token,
            model.c4_ms_per_attn_unit,
            model.c5_ms_per_token_below_knee,
        ]
    )
    return x @ coef


def relative_errors(model: HingeCostModel, samples: StepSamples) -> FitErrors:
    if len(samples) == 0:
        return FitErrors(float("nan"), float("nan"), float("nan"), 0)
    rel = np.abs(predict(model, samples) - samples.step_ms) / samples.step_ms
    return FitErrors(
        float(rel.mean()), float(np.quantile(rel, 0.9)), float(rel.max()), len(samples)
    )


def constrained_lsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """min ||x c - y||^2 s.t. c >= 0 and c[4] <= c[1] (5 columns, COEFFICIENT_NAMES order).

    Exact: the optimum of this convex problem is the least-squares solution on the affine span
    of some face of the feasible cone, so solve on every face (2^6 combinations of active
    constraints) and keep the best feasible one. 64 tiny solves; fast for 5 columns.
    """
    if x.shape[1] != 5:
        raise ValueError("constrained_lsq expects the 5 hinge columns")
    best: np.ndarray | None = None
    best_obj = np.inf
    for zero_mask in itertools.product((False, True), repeat=5):
        for tie in (False, True):
            coef = _solve_face(x, y, zero_mask, tie)
            if coef is None:
                continue
            if np.any(coef < -1e-12) or coef[4] > coef[1] * (1 + 1e-9) + 1e-15:
                continue
            coef = np.maximum(coef, 0.0)
            coef[4] = min(coef[4], coef[1])
            obj = float(np.sum((x @ coef - y) ** 2))
            if obj < best_obj:
                best, best_obj = coef, obj
    if best is None:  # cannot happen: all zeros is feasible
        best = np.zeros(5)
        best_obj = float(np.sum(y**2))
    return best, best_obj


def _solve_face(
    x: np.ndarray, y: np.ndarray, zero_mask: tuple[bool, ...], tie: bool
) -> np.ndarray | None:
    free = [i for i in range(5) if not zero_mask[i]]
    if tie:
        if (1 in free) != (4 in free):
            return None  # c5 = c1 with one of them pinned to 0 is another face
        if 1 not in free:
            return None
    columns: list[np.ndarray] = []
    owners: list[tuple[int, ...]] = []
    for i in free:
        if tie and i == 4:
            continue
        if tie and i == 1:
            columns.append(x[:, 1] + x[:, 4])
            owners.append((1, 4))
        else:
            columns.append(x[:, i])
            owners.append((i,))
    coef = np.zeros(5)
    if not columns:
        return coef
    a = np.column_stack(columns)
    sol, *_ = np.linalg.lstsq(a, y, rcond=None)
    for value, own in zip(sol, owners, strict=True):
        for i in own:
            coef[i] = value
    return coef


def default_knee_grid(samples: StepSamples) -> np.ndarray:
    top = float(min(max(np.quantile(samples.num_tokens, 0.9), 64.0), 4096.0))
    return np.unique(np.round(np.linspace(0.0, top, 65)))


def fit_hinge(
    train: StepSamples,
    held_out: StepSamples | None = None,
    *,
    knee_grid: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Fit the hinge form to `train`; report errors on `train` and `held_out`.

    The knee K is searched over `knee_grid` (default: 65 points from 0 to the 90th percentile
    of P+B, capped at 4096), then refined on a 1-token grid around the best coarse point.
    progress(done, total) is called after each K tried.
    """
    if len(train) < 5:
        raise ValueError(f"need at least 5 steps to fit 5 coefficients, got {len(train)}")
    if np.any(train.step_ms <= 0) or not np.all(np.isfinite(train.step_ms)):
        raise ValueError("step times must be finite and > 0")
    if np.any(train.num_tokens <= 0):
        raise ValueError("every step needs P + B > 0 (an empty step is not run)")
    coarse = np.asarray(default_knee_grid(train) if knee_grid is None else knee_grid, float)
    weight = 1.0 / train.step_ms  # minimise squared relative error
    y = train.step_ms * weight  # == 1

    def objective(knee: float) -> tuple[float, np.ndarray]:
        x = hinge_design(train, knee) * weight[:, None]
        coef, obj = constrained_lsq(x, y)
        return obj, coef

    results: dict[float, tuple[float, np.ndarray]] = {}
    total = len(coarse) + 16
    for i, knee in enumerate(coarse):
        results[float(knee)] = objective(float(knee))
        if progress:
            progress(i + 1, total)
    best_knee = min(results, key=lambda k: results[k][0])
    # Refine between the neighbours of the best coarse point.
    srt = sorted(results)
    j = srt.index(best_knee)
    lo, hi = srt[max(j - 1, 0)], srt[min(j + 1, len(srt) - 1)]
    fine = np.unique(np.round(np.linspace(lo, hi, 16)))
    for i, knee in enumerate(fine):
        if float(knee) not in results:
            results[float(knee)] = objective(float(knee))
        if progress:
            progress(len(coarse) + i + 1, total)
    best_knee = min(results, key=lambda k: results[k][0])
    coef = results[best_knee][1]
    if coef[1] <= 0:
        raise ValueError("fit gave c1 = 0 (per-token cost); the steps do not vary P+B enough")
    model = HingeCostModel(
        c0_ms=float(coef[0]),
        c1_ms_per_token=float(coef[1]),
        c3_ms_per_kv_token=float(coef[2]),
        c4_ms_per_attn_unit=float(coef[3]),
        c5_ms_per_token_below_knee=float(min(coef[4], coef[1])),
        knee_tokens=float(best_knee),
    )
    return FitResult(
        model,
        relative_errors(model, train),
        relative_errors(model, held_out) if held_out is not None else None,
    )


def fit_overhead_only(base: HingeCostModel, samples: StepSamples) -> HingeCostModel:
    """Keep base's coefficients; set overhead_ms to the median of (measured - predicted raw)
    (clipped at 0). For short logs from a real engine on top of a kernel-table profile."""
    raw = predict(base.with_overhead(0.0), samples)
    overhead = float(np.median(samples.step_ms - raw)) if len(samples) else 0.0
    return base.with_overhead(max(0.0, overhead))


def rounded_coefficients(model: HingeCostModel) -> dict[str, float]:
    """Coefficients for a JSON profile, with 4 significant digits (c5 <= c1 preserved)."""
    out = {k: float(f"{v:.4g}") for k, v in model.to_dict().items()}
    out["knee_tokens"] = round(model.knee_tokens)
    if out["c5_ms_per_token_below_knee"] > out["c1_ms_per_token"]:
        out["c5_ms_per_token_below_knee"] = out["c1_ms_per_token"]
    return out

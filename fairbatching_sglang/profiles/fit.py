"""Fit the hinge step-cost form to priced or measured steps.

    T = c0 + c1*n + c2*B + c3*S + c4*Q + c5*max(0, K - n) + c7*max(0, n - K2) + c6*[Q > 0],
    n = P+B

The knees K and K2 are found by a 2-D grid search (a coarse grid, then a finer 1-D grid around
the best point for each knee); for each pair the other coefficients are the exact solution of a
small constrained least-squares problem: all coefficients >= 0 and c5 <= c1 (which
`HingeCostModel` requires). The objective is the sum of squared *relative* errors (rows
weighted by 1/T), since relative error is what the profiles report and what a time budget
cares about.

Used by `scripts/fit_cost_profile.py` (engine-priced steps) and by
`fairbatching profile fit --from-steps` (measured steps). Needs numpy only.
"""

from __future__ import annotations

import math
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
    "c6_ms_if_prefill",
    "c7_ms_per_token_above_knee2",
    "c2_ms_per_decode_req",  # last: constrained_lsq's column indices 1 and 4 stay c1 and c5
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
        train, held = self.split_half_indices(seed)
        return self.subset(train), self.subset(held)

    def split_half_indices(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The row indices of split_half's (train, held-out) halves."""
        order = np.random.default_rng(seed).permutation(len(self))
        half = len(self) // 2
        return order[half:], order[:half]


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


def hinge_design(samples: StepSamples, knee_tokens: float, knee2_tokens: float) -> np.ndarray:
    """Design matrix with columns in COEFFICIENT_NAMES order (knee2_tokens = inf: no second
    hinge, its column is 0)."""
    n = samples.num_tokens
    return np.column_stack(
        [
            np.ones(len(samples)),
            n,
            samples.decode_kv_tokens,
            samples.prefill_attn_work,
            np.maximum(0.0, knee_tokens - n),
            (samples.prefill_attn_work > 0).astype(float),
            np.maximum(0.0, n - knee2_tokens),
            samples.num_decode_reqs,
        ]
    )


def predict(model: HingeCostModel, samples: StepSamples) -> np.ndarray:
    """Vectorised HingeCostModel.predict_raw_ms (steps with P+B > 0)."""
    x = hinge_design(samples, model.knee_tokens, model.knee2_tokens)
    coef = np.array(
        [
            model.c0_ms + model.overhead_ms,
            model.c1_ms_per_token,
            model.c3_ms_per_kv_token,
            model.c4_ms_per_attn_unit,
            model.c5_ms_per_token_below_knee,
            model.c6_ms_if_prefill,
            model.c7_ms_per_token_above_knee2,
            model.c2_ms_per_decode_req,
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
    """min ||x c - y||^2 s.t. c >= 0 and c[4] <= c[1] (columns in COEFFICIENT_NAMES order; any
    columns after the fifth are only constrained to be >= 0). Returns (c, objective).

    Substituting c1 = d + c5 (d >= 0) turns c1*x1 + c5*x4 into d*x1 + c5*(x1 + x4), so the
    problem is plain non-negative least squares in (c0, d, c3, c4, c5, ...), solved exactly by
    the Lawson-Hanson active-set method on the (column-scaled) normal equations; the final
    coefficients are re-solved by least squares on the columns left free.
    """
    m = x.shape[1]
    if m < 5:
        raise ValueError("constrained_lsq expects at least the 5 hinge columns")
    z = x.copy()
    z[:, 4] = x[:, 1] + x[:, 4]
    scale = np.linalg.norm(z, axis=0)
    scale[scale == 0] = 1.0
    zs = z / scale
    sol = _nnls_gram(zs.T @ zs, zs.T @ y)
    free = np.flatnonzero(sol > 0)
    if len(free):  # polish on the actual columns (the normal equations square the condition)
        exact = np.linalg.lstsq(zs[:, free], y, rcond=None)[0]
        if np.all(exact > 0):
            sol[free] = exact
    best = sol / scale
    obj = float(np.sum((z @ best - y) ** 2))
    coef = best.copy()
    coef[1] = best[1] + best[4]  # c1 = d + c5 >= c5
    return coef, obj


def _nnls_gram(g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_{x >= 0} x'gx/2 - b'x (g = A'A, b = A'y, columns scaled to unit norm):
    Lawson-Hanson active set."""
    m = len(b)
    x = np.zeros(m)
    free = np.zeros(m, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(b).max()))
    for _ in range(4 * m):
        w = b - g @ x
        cand = np.where(free, -np.inf, w)
        j = int(np.argmax(cand))
        if cand[j] <= tol:
            break
        free[j] = True
        for _ in range(4 * m):
            idx = np.flatnonzero(free)
            zsol = np.zeros(m)
            zsol[idx] = np.linalg.lstsq(g[np.ix_(idx, idx)], b[idx], rcond=None)[0]
            if np.all(zsol[idx] > 0):
                x = zsol
                break
            neg = idx[zsol[idx] <= 0]
            alpha = float(np.min(x[neg] / (x[neg] - zsol[neg])))
            x = x + alpha * (zsol - x)
            free &= x > 0
            x[~free] = 0.0
    return x


def default_knee_grid(samples: StepSamples) -> np.ndarray:
    top = float(min(max(np.quantile(samples.num_tokens, 0.9), 64.0), 4096.0))
    return np.unique(np.round(np.linspace(0.0, top, 65)))


def default_knee2_grid(samples: StepSamples) -> np.ndarray:
    """Second-hinge knees: 33 points from 0 to the 95th percentile of P+B (capped at 8192),
    plus inf (no second hinge)."""
    top = float(min(max(np.quantile(samples.num_tokens, 0.95), 64.0), 8192.0))
    return np.append(np.unique(np.round(np.linspace(0.0, top, 33))), np.inf)


def fit_hinge(
    train: StepSamples,
    held_out: StepSamples | None = None,
    *,
    knee_grid: Sequence[float] | None = None,
    knee2_grid: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
    fit_c2: bool = True,
) -> FitResult:
    """Fit the two-hinge form to `train`; report errors on `train` and `held_out`.

    The knees are searched over `knee_grid` x `knee2_grid` (defaults: `default_knee_grid`,
    `default_knee2_grid`; inf in knee2_grid means no second hinge), then each is refined on a
    grid of 16 points between the neighbours of the best coarse point, the other held fixed.
    progress(done, total) is called after each row of the search. fit_c2=False leaves the
    per-decode-request cost c2 at 0 (the form before issue #13, for comparisons); c2 is fitted
    jointly with the rest at every knee pair of the search.
    """
    num_coef = len(COEFFICIENT_NAMES)
    if len(train) < num_coef:
        raise ValueError(
            f"need at least {num_coef} steps to fit {num_coef} coefficients, got {len(train)}"
        )
    if np.any(train.step_ms <= 0) or not np.all(np.isfinite(train.step_ms)):
        raise ValueError("step times must be finite and > 0")
    if np.any(train.num_tokens <= 0):
        raise ValueError("every step needs P + B > 0 (an empty step is not run)")
    coarse = np.asarray(default_knee_grid(train) if knee_grid is None else knee_grid, float)
    coarse2 = np.asarray(default_knee2_grid(train) if knee2_grid is None else knee2_grid, float)
    weight = 1.0 / train.step_ms  # minimise squared relative error
    y = train.step_ms * weight  # == 1

    # c6 (has a prefill) is only identifiable when the steps mix prefill and decode-only ones;
    # otherwise its column is 0 or equal to the intercept's, and c6 stays 0.
    has_prefill = train.prefill_attn_work > 0
    use_c6 = bool(has_prefill.any() and not has_prefill.all())
    # c2 (per decode request) likewise: its column B is 0 without decodes and equals n's when
    # no step holds prefill tokens.
    decodes = train.num_decode_reqs
    use_c2 = bool(fit_c2 and (decodes > 0).any() and (train.num_prefill_tokens > 0).any())

    # The search works on normal equations built from blocks: the columns that do not depend
    # on the knees once, each knee's column once, one dot product per pair. Columns in the
    # constrained_lsq parameterisation: c0, d = c1 - c5, c3, c4, (c6), (c2), c5 on max(n, K),
    # c7.
    n = train.num_tokens
    fixed_cols = [np.ones(len(train)), n, train.decode_kv_tokens, train.prefill_attn_work]
    if use_c6:
        fixed_cols.append(has_prefill.astype(float))
    if use_c2:
        fixed_cols.append(decodes.astype(float))
    fixed = np.column_stack(fixed_cols) * weight[:, None]
    ff, fy = fixed.T @ fixed, fixed.T @ y
    yy = float(y @ y)
    # Each knee's weighted column, made on first use: max(n, K) for the first, max(0, n - K2).
    hinge: dict[float, np.ndarray] = {}
    hinge2: dict[float, np.ndarray] = {}

    def column(cache: dict[float, np.ndarray], knee: float, upper: bool) -> np.ndarray:
        if knee not in cache:
            cache[knee] = (np.maximum(0.0, n - knee) if upper else np.maximum(n, knee)) * weight
        return cache[knee]

    results: dict[tuple[float, float], tuple[float, np.ndarray]] = {}

    def evaluate(knee: float, knee2: float) -> None:
        if (knee, knee2) in results:
            return
        h1, h2 = column(hinge, knee, False), column(hinge2, knee2, True)
        k = fixed.shape[1]
        g = np.empty((k + 2, k + 2))
        g[:k, :k] = ff
        g[:k, k] = g[k, :k] = fixed.T @ h1
        g[:k, k + 1] = g[k + 1, :k] = fixed.T @ h2
        g[k, k], g[k + 1, k + 1] = h1 @ h1, h2 @ h2
        g[k, k + 1] = g[k + 1, k] = h1 @ h2
        b = np.concatenate([fy, [h1 @ y, h2 @ y]])
        scale = np.sqrt(np.diag(g))
        scale[scale == 0] = 1.0
        sol = _nnls_gram(g / np.outer(scale, scale), b / scale) / scale
        obj = yy - 2.0 * float(sol @ b) + float(sol @ g @ sol)
        results[(knee, knee2)] = (obj, sol)

    def best() -> tuple[float, float]:
        return min(results, key=lambda kk: results[kk][0])

    total = len(coarse) + 2
    for i, knee in enumerate(coarse):
        for knee2 in coarse2:
            evaluate(float(knee), float(knee2))
        if progress:
            progress(i + 1, total)
    # Refine each knee between the neighbours of its best coarse value, the other fixed.
    for axis, grid in ((0, coarse), (1, coarse2)):
        point = best()
        srt = sorted({float(v) for v in grid if math.isfinite(v)})
        if math.isfinite(point[axis]) and len(srt) > 1:
            j = srt.index(point[axis])
            lo, hi = srt[max(j - 1, 0)], srt[min(j + 1, len(srt) - 1)]
            for v in np.unique(np.round(np.linspace(lo, hi, 16))):
                evaluate(*((float(v), point[1]) if axis == 0 else (point[0], float(v))))
        if progress:
            progress(len(coarse) + axis + 1, total)
    best_knee, best_knee2 = best()
    # Final coefficients: the exact solver on the actual columns at the best knees.
    unused = {"c6_ms_if_prefill": not use_c6, "c2_ms_per_decode_req": not use_c2}
    columns = [i for i in range(num_coef) if not unused.get(COEFFICIENT_NAMES[i], False)]
    x = hinge_design(train, best_knee, best_knee2)[:, columns] * weight[:, None]
    coef = np.zeros(num_coef)
    coef[columns] = constrained_lsq(x, y)[0]
    if coef[1] <= 0:
        raise ValueError("fit gave c1 = 0 (per-token cost); the steps do not vary P+B enough")
    has_knee2 = math.isfinite(best_knee2) and coef[6] > 0
    model = HingeCostModel(
        c0_ms=float(coef[0]),
        c1_ms_per_token=float(coef[1]),
        c3_ms_per_kv_token=float(coef[2]),
        c4_ms_per_attn_unit=float(coef[3]),
        c5_ms_per_token_below_knee=float(min(coef[4], coef[1])),
        knee_tokens=float(best_knee),
        c6_ms_if_prefill=float(coef[5]),
        c7_ms_per_token_above_knee2=float(coef[6]) if has_knee2 else 0.0,
        knee2_tokens=float(best_knee2) if has_knee2 else 0.0,
        c2_ms_per_decode_req=float(coef[7]),
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
    out["knee2_tokens"] = round(model.knee2_tokens)
    if out["c5_ms_per_token_below_knee"] > out["c1_ms_per_token"]:
        out["c5_ms_per_token_below_knee"] = out["c1_ms_per_token"]
    return out

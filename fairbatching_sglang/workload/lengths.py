"""Token-length distributions for the generator: lognormal, or empirical quantile knots.

Both map a standard normal draw to a length (inverse-CDF sampling), so input and output lengths
can be correlated through a Gaussian copula with one parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Denser in the tails: p99/max drive long prefills and KV pressure, so they must be reproduced.
DEFAULT_PROBS: tuple[float, ...] = (
    0.0, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99,
    0.995, 0.999, 1.0,
)  # fmt: skip

_erfc = np.vectorize(math.erfc, otypes=[float])


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (numpy has no erf; math.erfc vectorised is exact and fast enough)."""
    return 0.5 * _erfc(-np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


def _finish(x: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    out = np.rint(x)
    out = np.maximum(out, lo) if hi is None else np.clip(out, lo, hi)
    return out.astype(np.int64)


@dataclass(frozen=True)
class LognormalLengths:
    """Lengths ~ round(median * exp(sigma * Z)), clipped to [min_tokens, max_tokens]."""

    median: float
    sigma: float
    min_tokens: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.median <= 0 or self.sigma < 0 or self.min_tokens < 1:
            raise ValueError(f"invalid lognormal lengths {self}")

    @classmethod
    def from_p50_p99(cls, p50: float, p99: float, **kw: int | None) -> LognormalLengths:
        """The lognormal through two quantiles (z of p99 = 2.3263)."""
        return cls(median=p50, sigma=math.log(p99 / p50) / 2.3263478740408408, **kw)  # type: ignore[arg-type]

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        return _finish(self.median * np.exp(self.sigma * z), self.min_tokens, self.max_tokens)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.from_normal(rng.standard_normal(n))


@dataclass(frozen=True)
class QuantileLengths:
    """Empirical distribution given by quantile knots, interpolated in log-length.

    Log interpolation keeps the heavy right tail between knots (linear would put too much mass
    near the upper knot of a wide interval).
    """

    probs: tuple[float, ...]
    values: tuple[float, ...]
    min_tokens: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        p, v = np.asarray(self.probs), np.asarray(self.values)
        if p.shape != v.shape or p.size < 2 or p[0] != 0.0 or p[-1] != 1.0:
            raise ValueError("probs must run from 0 to 1 and match values in length")
        if np.any(np.diff(p) <= 0) or np.any(np.diff(v) < 0) or v[0] < 1:
            raise ValueError("probs must increase, values must be non-decreasing and >= 1")

    @classmethod
    def fit(
        cls, x: np.ndarray, probs: tuple[float, ...] = DEFAULT_PROBS, **kw: int | None
    ) -> QuantileLengths:
        q = np.quantile(np.maximum(np.asarray(x, dtype=np.float64), 1.0), probs)
        return cls(tuple(probs), tuple(float(round(v, 1)) for v in q), **kw)  # type: ignore[arg-type]

    def quantile(self, u: np.ndarray | float) -> np.ndarray:
        logv = np.log(np.asarray(self.values, dtype=np.float64))
        return np.exp(np.interp(u, self.probs, logv))

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        return _finish(self.quantile(norm_cdf(z)), self.min_tokens, self.max_tokens)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.from_normal(rng.standard_normal(n))


LengthDist = LognormalLengths | QuantileLengths

"""Arrival processes: Poisson, gamma renewal (any CV) and on-off (bursty) - seeded numpy.

Shared by the re-timing transformation and the synthetic generator.
"""

from __future__ import annotations

import numpy as np


def gamma_gaps(rng: np.random.Generator, n: int, rate: float, cv: float) -> np.ndarray:
    """n inter-arrival gaps with mean 1/rate and coefficient of variation cv.

    cv = 1 is Poisson (exponential gaps), cv < 1 is smoother, cv > 1 burstier; cv = 0 is a
    constant rate. Gamma shape k = 1/cv^2 gives exactly that CV with scale 1/(rate k).
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if cv < 0:
        raise ValueError(f"cv must be >= 0, got {cv}")
    if cv == 0:
        return np.full(n, 1.0 / rate)
    if cv == 1:
        return rng.exponential(1.0 / rate, n)
    k = 1.0 / (cv * cv)
    return rng.gamma(k, 1.0 / (rate * k), n)


def renewal_arrivals(
    rng: np.random.Generator, duration_s: float, rate: float, cv: float
) -> np.ndarray:
    """Arrival times in [0, duration_s) of a gamma renewal process."""
    out: list[np.ndarray] = []
    t0 = 0.0
    chunk = max(16, int(rate * duration_s * 1.1) + 16)
    while True:
        t = t0 + np.cumsum(gamma_gaps(rng, chunk, rate, cv))
        out.append(t[t < duration_s])
        if t[-1] >= duration_s:
            break
        t0 = float(t[-1])
    return np.concatenate(out)


def onoff_arrivals(
    rng: np.random.Generator,
    duration_s: float,
    rate: float,
    on_mean_s: float,
    off_mean_s: float,
    on_cv: float = 1.0,
    off_rate_fraction: float = 0.0,
) -> np.ndarray:
    """Arrival times in [0, duration_s) of an on-off (Markov-modulated) process.

    ON and OFF periods have exponential lengths with the given means. OFF periods carry
    `off_rate_fraction * rate` Poisson arrivals (background trickle); ON periods carry a gamma
    renewal process (CV on_cv: >1 gives the sub-second clumps seen in code traffic) whose rate is
    chosen so that the long-run mean rate equals `rate`.
    """
    if min(on_mean_s, off_mean_s) <= 0:
        raise ValueError("on_mean_s and off_mean_s must be > 0")
    p_on = on_mean_s / (on_mean_s + off_mean_s)
    off_rate = off_rate_fraction * rate
    on_rate = (rate - (1 - p_on) * off_rate) / p_on
    if on_rate <= 0:
        raise ValueError("off_rate_fraction too high for the mean rate")
    # Lay out the ON/OFF periods first, then run each state's process on its own clock (ON time
    # concatenated) and map back to wall time. Restarting a bursty renewal process at every ON
    # period would censor its long gaps and inflate the rate.
    starts: list[float] = []
    lengths: list[float] = []
    states: list[bool] = []
    t = 0.0
    on = bool(rng.random() < p_on)  # start in the stationary distribution
    while t < duration_s:
        length = min(rng.exponential(on_mean_s if on else off_mean_s), duration_s - t)
        starts.append(t)
        lengths.append(length)
        states.append(on)
        t += length
        on = not on
    st, ln, is_on = np.asarray(starts), np.asarray(lengths), np.asarray(states)
    parts = [_on_clock(rng, st[is_on], ln[is_on], on_rate, on_cv)]
    if off_rate > 0:
        parts.append(_on_clock(rng, st[~is_on], ln[~is_on], off_rate, 1.0))
    return np.sort(np.concatenate(parts))


def _on_clock(
    rng: np.random.Generator, starts: np.ndarray, lengths: np.ndarray, rate: float, cv: float
) -> np.ndarray:
    """A renewal process run over the concatenation of intervals, mapped back to wall time."""
    total = float(lengths.sum())
    if total <= 0:
        return np.empty(0)
    u = renewal_arrivals(rng, total, rate, cv)
    ends = np.cumsum(lengths)
    idx = np.minimum(np.searchsorted(ends, u, side="right"), lengths.size - 1)
    return starts[idx] + (u - (ends[idx] - lengths[idx]))

"""Device models: what a step *really* costs, apart from what the planner believes.

The planner (FairBatching's cost model + online calibration) predicts step times; a device model
is the ground truth a simulated or emulated run charges. Keeping the two apart is what lets a run
judge the policy under errors it does not know about (DESIGN.md section 4).

Pure objects (numpy only, no clock, no I/O): the simulator and the emulated SGLang device
(`fairbatching_sglang.emulator`) both call `step_ms(shape)` once per step, in step order, so a
seeded noisy device gives the same sequence of prices to both for the same sequence of shapes.

Kinds (see device_spec.parse_device_model for the `--device-model` syntax):
- ProfileDevice: a cost profile, optionally biased (every step x(1 + bias)), with seeded
  per-step multiplicative noise (lognormal, mean 1, sigma `noise`), a per-step CPU overhead
  with seeded jitter, and a mid-run shift (steps after `shift_after_steps` cost x(1 + shift)).
- ReplayDevice: a measured step log; a step costs the profile's price times the measured /
  profile ratio of the logged step nearest in shape (log-scaled tokens, decode rows, KV), so
  the log's residual pattern carries to shapes it did not contain.
- EngineDevice: aiconfigurator-core's engine prices each step itself (the kernel tables the
  profiles were fitted to, not the fit), plus the same per-step overhead, bias, noise, jitter
  and shift as ProfileDevice. The fit's own error (1.5-2% mean, up to ~12% on single shapes)
  and the engine's non-monotone corners then become an error the planner does not know about.
  Pricing goes through a `KernelPrices` object (engine_prices.EngineStepPrices: memoised, the
  engine is imported there), so this module stays numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from fairbatching_sglang.core.cost_model import HingeCostModel, StepShape


class DeviceModel(Protocol):
    """Ground-truth step pricing; stateful only through its seeded random stream."""

    @property
    def description(self) -> str: ...

    @property
    def is_exact(self) -> bool:
        """True when every step costs exactly the base profile (+ its overhead)."""
        ...

    def step_ms(self, shape: StepShape) -> float: ...

    def decode_block_ms(self, shape: StepShape, num_steps: int) -> np.ndarray:
        """Durations of `num_steps` consecutive decode-only steps; step j reads
        shape.decode_kv_tokens + j * shape.num_decode_reqs KV tokens."""
        ...


@dataclass(frozen=True)
class ProfileDeviceConfig:
    """bias: +0.05 = every step 5% slower than the profile says. noise: sigma of a per-step
    lognormal factor with mean 1 (0 = none). overhead_ms: per-step CPU/launch time added on top
    (None = the caller's default overhead). overhead_jitter_ms: sigma of a normal jitter on that
    overhead (clipped at 0). shift / shift_after_steps: from that step on, x(1 + shift).
    seed: of the noise and jitter stream."""

    bias: float = 0.0
    noise: float = 0.0
    overhead_ms: float | None = None
    overhead_jitter_ms: float = 0.0
    shift: float = 0.0
    shift_after_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bias) and self.bias > -1.0):
            raise ValueError(f"bias must be a finite number > -1, got {self.bias!r}")
        if not (math.isfinite(self.noise) and 0.0 <= self.noise <= 1.0):
            raise ValueError(f"noise must be in [0, 1], got {self.noise!r}")
        if self.overhead_ms is not None and not (
            math.isfinite(self.overhead_ms) and self.overhead_ms >= 0
        ):
            raise ValueError(f"overhead_ms must be >= 0, got {self.overhead_ms!r}")
        if not (math.isfinite(self.overhead_jitter_ms) and self.overhead_jitter_ms >= 0):
            raise ValueError(f"jitter_ms must be >= 0, got {self.overhead_jitter_ms!r}")
        if not (math.isfinite(self.shift) and self.shift > -1.0):
            raise ValueError(f"shift must be a finite number > -1, got {self.shift!r}")
        if self.shift_after_steps is not None and self.shift_after_steps < 0:
            raise ValueError(f"shift_after must be >= 0, got {self.shift_after_steps!r}")


class _SeededPricing:
    """What ProfileDevice and EngineDevice share: the per-step overhead and the seeded bias,
    noise, jitter and shift applied to a kernel price (ProfileDeviceConfig)."""

    def __init__(self, config: ProfileDeviceConfig | None, default_overhead_ms: float) -> None:
        self.config = config or ProfileDeviceConfig()
        c = self.config
        # Per-step overhead on top of the kernel price (a profile's price holds the profile's
        # own overhead_ms), as the simulator has always charged it.
        self.overhead_ms = default_overhead_ms if c.overhead_ms is None else c.overhead_ms
        self._rng = np.random.Generator(np.random.PCG64(c.seed))
        self._num_steps = 0
        # Lognormal with mean exactly 1: mu = -sigma^2 / 2.
        self._mu = -0.5 * c.noise * c.noise

    @property
    def _plain(self) -> bool:
        """No bias, noise, jitter or shift: a step costs its kernel price + the overhead."""
        c = self.config
        return c.bias == 0.0 and c.noise == 0.0 and c.overhead_jitter_ms == 0.0 and c.shift == 0.0

    def _describe(self, head: str) -> str:
        c = self.config
        parts = [head]
        if c.bias:
            parts.append(f"bias {c.bias:+g}")
        if c.noise:
            parts.append(f"noise {c.noise:g}")
        parts.append(f"overhead {self.overhead_ms:g} ms")
        if c.overhead_jitter_ms:
            parts.append(f"jitter {c.overhead_jitter_ms:g} ms")
        if c.shift:
            parts.append(f"shift {c.shift:+g} after step {c.shift_after_steps or 0}")
        if not self._plain:
            parts.append(f"seed {c.seed}")
        return ", ".join(parts)

    def _kernel_ms(self, shape: StepShape) -> float:
        raise NotImplementedError

    def step_ms(self, shape: StepShape) -> float:
        if self._plain:
            self._num_steps += 1
            return self._kernel_ms(shape) + self.overhead_ms
        return float(self._price(np.array([self._kernel_ms(shape)]))[0])

    def _price(self, kernel_ms: np.ndarray) -> np.ndarray:
        c = self.config
        k = len(kernel_ms)
        factor = np.full(k, 1.0 + c.bias)
        if c.noise:
            factor *= np.exp(self._rng.normal(self._mu, c.noise, size=k))
        if c.shift:
            idx = self._num_steps + np.arange(k)
            factor[idx >= (c.shift_after_steps or 0)] *= 1.0 + c.shift
        overhead = np.full(k, self.overhead_ms)
        if c.overhead_jitter_ms:
            overhead = np.maximum(0.0, overhead + self._rng.normal(0.0, c.overhead_jitter_ms, k))
        self._num_steps += k
        return kernel_ms * factor + overhead


class ProfileDevice(_SeededPricing):
    """A cost profile as the device, with optional bias, noise, overhead jitter and shift."""

    def __init__(
        self,
        cost_model: HingeCostModel,
        profile_name: str,
        config: ProfileDeviceConfig | None = None,
        default_overhead_ms: float = 0.0,
    ) -> None:
        super().__init__(config, default_overhead_ms)
        self.profile_name = profile_name
        self.cost_model = cost_model

    @property
    def is_exact(self) -> bool:
        return self._plain

    @property
    def description(self) -> str:
        return self._describe(f"profile {self.profile_name}")

    def _kernel_ms(self, shape: StepShape) -> float:
        return self.cost_model.predict_ms(shape)

    def decode_block_ms(self, shape: StepShape, num_steps: int) -> np.ndarray:
        first = self._kernel_ms(shape)
        grow = self.cost_model.c3_ms_per_kv_token * shape.num_decode_reqs
        if self.is_exact:
            # Same float arithmetic as pricing the steps one by one plus the overhead (the
            # simulator's fast-forward relies on both agreeing).
            self._num_steps += num_steps
            return (first + self.overhead_ms) + grow * np.arange(num_steps)
        return self._price(first + grow * np.arange(num_steps))


class KernelPrices(Protocol):
    """Kernel prices of steps by shape (engine_prices.EngineStepPrices)."""

    def step_ms(
        self,
        num_prefill_tokens: int,
        num_decode_reqs: int,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        num_prefill_chunks: int = 0,
    ) -> float: ...

    def decode_block_ms(
        self, num_decode_reqs: int, decode_kv_tokens: float, k: int
    ) -> np.ndarray: ...


class EngineDevice(_SeededPricing):
    """Steps priced by aiconfigurator-core's engine (through `prices`) for a profile's GPU,
    model and TP, plus the profile's own overhead_ms and the per-step overhead (so it differs
    from ProfileDevice over the same profile by the fit's error only), with the same optional
    bias, noise, jitter and shift."""

    def __init__(
        self,
        prices: KernelPrices,
        profile_name: str,
        config: ProfileDeviceConfig | None = None,
        default_overhead_ms: float = 0.0,
        profile_overhead_ms: float = 0.0,
        label: str = "",
    ) -> None:
        super().__init__(config, default_overhead_ms)
        self.prices = prices
        self.profile_name = profile_name
        self.profile_overhead_ms = profile_overhead_ms
        self.label = label

    @property
    def is_exact(self) -> bool:
        return False  # never the profile's own prices

    @property
    def description(self) -> str:
        head = f"engine {self.label or 'aiconfigurator-core'} for profile {self.profile_name}"
        return self._describe(head)

    def _kernel_ms(self, shape: StepShape) -> float:
        return self.profile_overhead_ms + self.prices.step_ms(
            shape.num_prefill_tokens,
            shape.num_decode_reqs,
            shape.decode_kv_tokens,
            shape.prefill_attn_work,
            shape.num_prefill_chunks,
        )

    def decode_block_ms(self, shape: StepShape, num_steps: int) -> np.ndarray:
        if shape.num_prefill_tokens:  # not a decode-only block: price each step
            b, kv0 = shape.num_decode_reqs, shape.decode_kv_tokens
            return np.array(
                [
                    self.step_ms(replace(shape, decode_kv_tokens=kv0 + j * b))
                    for j in range(num_steps)
                ]
            )
        kernel = self.profile_overhead_ms + self.prices.decode_block_ms(
            shape.num_decode_reqs, shape.decode_kv_tokens, num_steps
        )
        if self._plain:
            self._num_steps += num_steps
            return kernel + self.overhead_ms
        return self._price(kernel)


@dataclass(frozen=True)
class LoggedSteps:
    """A measured step log as arrays (see profiles/step_log.py for the file format)."""

    num_tokens: np.ndarray  # P + B
    num_decode_reqs: np.ndarray
    decode_kv_tokens: np.ndarray
    prefill_attn_work: np.ndarray
    measured_ms: np.ndarray
    origin: str = field(default="<steps>")


class ReplayDevice:
    """Prices a step as profile(shape) x measured/profile of the nearest logged step."""

    def __init__(self, cost_model: HingeCostModel, profile_name: str, steps: LoggedSteps) -> None:
        if len(steps.measured_ms) == 0:
            raise ValueError(f"{steps.origin}: no steps to replay")
        self.cost_model = cost_model
        self.profile_name = profile_name
        self.origin = steps.origin
        predicted = np.array(
            [
                cost_model.predict_raw_ms(float(n), float(s), float(q), num_decode_reqs=float(b))
                for n, s, q, b in zip(
                    steps.num_tokens,
                    steps.decode_kv_tokens,
                    steps.prefill_attn_work,
                    steps.num_decode_reqs,
                    strict=True,
                )
            ]
        )
        self._ratio = steps.measured_ms / np.maximum(predicted, 1e-6)
        self._keys = self._key(
            steps.num_tokens, steps.num_decode_reqs, steps.decode_kv_tokens, steps.prefill_attn_work
        )

    @staticmethod
    def _key(n: np.ndarray, b: np.ndarray, s: np.ndarray, q: np.ndarray) -> np.ndarray:
        has_prefill = (q > 0).astype(np.float64) * 4.0  # never match decode-only to prefill
        return np.stack([np.log1p(n), np.log1p(b), np.log1p(s) * 0.5, has_prefill], axis=-1).astype(
            np.float64
        )

    @property
    def is_exact(self) -> bool:
        return False

    @property
    def description(self) -> str:
        return f"replayed step log {self.origin} over profile {self.profile_name}"

    def _ratio_for(self, shape: StepShape) -> float:
        key = self._key(
            np.array([shape.num_prefill_tokens + shape.num_decode_reqs]),
            np.array([shape.num_decode_reqs]),
            np.array([shape.decode_kv_tokens]),
            np.array([shape.prefill_attn_work]),
        )[0]
        i = int(np.argmin(((self._keys - key) ** 2).sum(axis=1)))
        return float(self._ratio[i])

    def step_ms(self, shape: StepShape) -> float:
        return self.cost_model.predict_ms(shape) * self._ratio_for(shape)

    def decode_block_ms(self, shape: StepShape, num_steps: int) -> np.ndarray:
        out = np.empty(num_steps)
        b = shape.num_decode_reqs
        for j in range(num_steps):
            out[j] = self.step_ms(StepShape(0, b, shape.decode_kv_tokens + j * b, 0.0))
        return out

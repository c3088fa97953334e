"""Optional online recalibration of the hinge step-cost model from measured step times.

Recursive least squares (RLS) with a forgetting factor over the hinge features, with bounded
drift. Pure: no I/O, no clock; the caller feeds (step shape, measured ms) pairs and asks for the
current model.

Parameterisation (keeps the problem well conditioned whatever the feature scales):

    T = theta_0 * 1ms + theta_c6 * [Q > 0] * 1ms + sum_i theta_i * z_i,
    z_i = base_coefficient_i * feature_i  (in ms)

theta_0 is the intercept in ms (c0 + overhead) and theta_c6 the has-a-prefill cost c6 in ms; the
other thetas are ratios to the offline profile's coefficients (c1, c3, c4, c5, c7, c2), starting
at 1, so every feature is O(1 ms) whatever its raw scale (Q is ~1e8). c6 is an additive ms term
rather than a ratio because its feature is already 0 or 1 ms like the intercept's, and because a
ratio could never learn a prefill cost when the offline c6 is 0 (profiles made before c6
existed); a ratio coefficient whose offline value is 0 stays 0 (so c2, the per-decode-request
cost, is learnt only around a profile that has one). The knees K and K2 are not
recalibrated. c6 and the intercept are told apart by decode-only steps (which pay no c6); while
none arrive the covariance cap below keeps their shared direction from winding up.

Bounded drift: after every update each ratio is clipped to [1/max_ratio, max_ratio]; the
intercept to [base/max_ratio, base*max_ratio + max_extra_overhead_ms] (real engines add a
constant CPU/launch overhead that kernel tables leave out) and c6 likewise to
[base/max_ratio, base*max_ratio + max_extra_prefill_ms]. Then c5 <= c1 is restored by
lowering c5 to c1, which stays inside c5's own bound because the offline profile has c5 <= c1.
Measurements whose relative residual exceeds `outlier_rel_residual` are ignored (GC pauses,
profiler hiccups). The covariance trace is capped to avoid wind-up when some directions are not
excited (for example no prefill steps for a while).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fairbatching_sglang.core.cost_model import HingeCostModel, StepShape

NUM_PARAMS = 8  # intercept, c1, c3, c4, c5, c6 (ms), c7, c2
C6 = 5  # index of the additive has-a-prefill term
# c2 comes last so the indices of the older terms (and the order of ratios()) stay as they were.


@dataclass(frozen=True)
class OnlineCalibrationConfig:
    forgetting_factor: float = 0.995
    max_ratio: float = 2.0
    max_extra_overhead_ms: float = 2.0
    max_extra_prefill_ms: float = 2.0
    initial_variance: float = 1.0
    max_covariance_trace: float = 100.0
    outlier_rel_residual: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.forgetting_factor <= 1.0:
            raise ValueError("forgetting_factor must be in (0, 1]")
        if not self.max_ratio >= 1.0:
            raise ValueError("max_ratio must be >= 1")
        if self.max_extra_overhead_ms < 0 or self.max_extra_prefill_ms < 0:
            raise ValueError("max_extra_overhead_ms and max_extra_prefill_ms must be >= 0")
        if self.initial_variance <= 0 or self.max_covariance_trace <= 0:
            raise ValueError("initial_variance and max_covariance_trace must be > 0")
        if self.outlier_rel_residual <= 0:
            raise ValueError("outlier_rel_residual must be > 0")


class OnlineCalibrator:
    """RLS over the hinge features around an offline `HingeCostModel` (see module doc).

    Usage: `cal.update_shape(shape, measured_ms)` after each step; `cal.model()` for the current
    recalibrated model. Deterministic: same updates, same result.
    """

    def __init__(self, base: HingeCostModel, config: OnlineCalibrationConfig | None = None) -> None:
        self.base = base
        self.config = config or OnlineCalibrationConfig()
        self._base_intercept = base.c0_ms + base.overhead_ms
        self._scales = (
            1.0,
            base.c1_ms_per_token,
            base.c3_ms_per_kv_token,
            base.c4_ms_per_attn_unit,
            base.c5_ms_per_token_below_knee,
            1.0,
            base.c7_ms_per_token_above_knee2,
            base.c2_ms_per_decode_req,
        )
        self._theta = [self._base_intercept, 1.0, 1.0, 1.0, 1.0, base.c6_ms_if_prefill, 1.0, 1.0]
        v = self.config.initial_variance
        self._cov = [[v if i == j else 0.0 for j in range(NUM_PARAMS)] for i in range(NUM_PARAMS)]
        self.num_updates = 0
        self.num_rejected = 0

    # ------------------------------------------------------------------ features
    def _features(
        self,
        num_tokens: float,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        num_decode_reqs: float,
    ) -> list[float]:
        raw = (
            1.0,
            num_tokens,
            decode_kv_tokens,
            prefill_attn_work,
            max(0.0, self.base.knee_tokens - num_tokens),
            1.0 if prefill_attn_work > 0 else 0.0,
            max(0.0, num_tokens - self.base.knee2_tokens),
            num_decode_reqs,
        )
        # A zero base ratio coefficient has no direction to learn: its feature is 0.
        return [s * r for s, r in zip(self._scales, raw, strict=True)]

    def predict_raw_ms(
        self,
        num_tokens: float,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        *,
        num_decode_reqs: float = 0.0,
    ) -> float:
        if num_tokens <= 0:
            return 0.0
        z = self._features(num_tokens, decode_kv_tokens, prefill_attn_work, num_decode_reqs)
        return sum(t * zi for t, zi in zip(self._theta, z, strict=True))

    # ------------------------------------------------------------------ updates
    def update_shape(self, shape: StepShape, measured_ms: float) -> bool:
        return self.update(
            shape.num_prefill_tokens + shape.num_decode_reqs,
            shape.decode_kv_tokens,
            shape.prefill_attn_work,
            measured_ms,
            num_decode_reqs=shape.num_decode_reqs,
        )

    def update(
        self,
        num_tokens: float,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        measured_ms: float,
        *,
        num_decode_reqs: float = 0.0,
    ) -> bool:
        """One RLS step. Returns False (and changes nothing) for an empty step, a non-finite or
        non-positive measurement, or an outlier. num_decode_reqs: the step's B (0 = unknown:
        the c2 feature is then 0 and c2 learns nothing from this step)."""
        if num_tokens <= 0 or not math.isfinite(measured_ms) or measured_ms <= 0:
            self.num_rejected += 1
            return False
        z = self._features(num_tokens, decode_kv_tokens, prefill_attn_work, num_decode_reqs)
        pred = sum(t * zi for t, zi in zip(self._theta, z, strict=True))
        residual = measured_ms - pred
        if abs(residual) > self.config.outlier_rel_residual * max(pred, 1e-9):
            self.num_rejected += 1
            return False
        # Normalise the row by the measurement so the update minimises relative error.
        w = 1.0 / measured_ms
        zw = [zi * w for zi in z]
        rw = residual * w
        lam = self.config.forgetting_factor
        p = self._cov
        pz = [sum(p[i][j] * zw[j] for j in range(NUM_PARAMS)) for i in range(NUM_PARAMS)]
        denom = lam + sum(zw[i] * pz[i] for i in range(NUM_PARAMS))
        gain = [v / denom for v in pz]
        self._theta = [t + g * rw for t, g in zip(self._theta, gain, strict=True)]
        new_p = [
            [(p[i][j] - gain[i] * pz[j]) / lam for j in range(NUM_PARAMS)]
            for i in range(NUM_PARAMS)
        ]
        # Symmetrise and cap the trace (anti wind-up).
        for i in range(NUM_PARAMS):
            for j in range(i + 1, NUM_PARAMS):
                avg = 0.5 * (new_p[i][j] + new_p[j][i])
                new_p[i][j] = new_p[j][i] = avg
        trace = sum(new_p[i][i] for i in range(NUM_PARAMS))
        cap = self.config.max_covariance_trace
        if trace > cap:
            new_p = [[v * cap / trace for v in row] for row in new_p]
        self._cov = new_p
        self._project()
        self.num_updates += 1
        return True

    def _project(self) -> None:
        r = self.config.max_ratio
        lo0 = self._base_intercept / r
        hi0 = self._base_intercept * r + self.config.max_extra_overhead_ms
        self._theta[0] = min(max(self._theta[0], lo0), hi0)
        base_c6 = self.base.c6_ms_if_prefill
        lo6, hi6 = base_c6 / r, base_c6 * r + self.config.max_extra_prefill_ms
        self._theta[C6] = min(max(self._theta[C6], lo6), hi6)
        for i in range(1, NUM_PARAMS):
            if i != C6:
                self._theta[i] = min(max(self._theta[i], 1.0 / r), r)
        c1 = self._theta[1] * self._scales[1]
        c5 = self._theta[4] * self._scales[4]
        if c5 > c1 and self._scales[4] > 0:
            self._theta[4] = c1 / self._scales[4]

    # ------------------------------------------------------------------ result
    def ratios(self) -> dict[str, float]:
        """Current coefficient / offline coefficient (intercept: over c0 + overhead; c6: over
        the offline c6, or 1 + c6 in ms when the offline c6 is 0)."""
        names = ("intercept", "c1", "c3", "c4", "c5", "c6", "c7", "c2")
        ratios = list(self._theta)
        ratios[0] = ratios[0] / self._base_intercept if self._base_intercept > 0 else 1.0
        base_c6 = self.base.c6_ms_if_prefill
        ratios[C6] = ratios[C6] / base_c6 if base_c6 > 0 else 1.0 + ratios[C6]
        return dict(zip(names, ratios, strict=True))

    def model(self) -> HingeCostModel:
        """The recalibrated model. The intercept splits as c0 = min(intercept, base c0) and
        overhead_ms = the rest, so a positive drift shows up as overhead."""
        intercept = self._theta[0]
        c0 = min(intercept, self.base.c0_ms)
        c1 = self._theta[1] * self._scales[1]
        c5 = min(self._theta[4] * self._scales[4], c1)
        return HingeCostModel(
            c0_ms=c0,
            c1_ms_per_token=c1,
            c3_ms_per_kv_token=self._theta[2] * self._scales[2],
            c4_ms_per_attn_unit=self._theta[3] * self._scales[3],
            c5_ms_per_token_below_knee=c5,
            knee_tokens=self.base.knee_tokens,
            overhead_ms=max(0.0, intercept - c0),
            c6_ms_if_prefill=self._theta[C6],
            c7_ms_per_token_above_knee2=self._theta[6] * self._scales[6],
            knee2_tokens=self.base.knee2_tokens,
            c2_ms_per_decode_req=self._theta[7] * self._scales[7],
        )

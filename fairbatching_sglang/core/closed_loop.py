"""Closed loop: what the planner believes about step times follows what steps really take.

FairBatching plans decodes to the TPOT SLO edge, so a step model that under-predicts by a few
percent turns straight into misses (5% slower steps took most of the simulated gain). The loop:

1. every finished step reports (shape, measured ms); the offline model is recalibrated online
   (core/online_calibration.py: bounded RLS over the hinge features), so a steady bias is learnt;
2. the planning margin comes from the recent distribution of measured / predicted, where
   "predicted" is what the recalibrated model said for that step before seeing it. Ratios are
   taken over blocks of `margin_block_steps` steps, and the margin is their `margin_quantile`
   minus 1, clipped to [min_margin, max_margin]. Per step (block 1) and p95 by default: the
   envelope puts a request's last token at its deadline, so one slow last step misses the mean
   TPOT SLO; 8-step blocks averaged that noise away and, under 5% per-step noise, cost 5 points
   of TPOT attainment (synthetic code x1.215: 0.944 vs 0.999 per step; exact device unchanged);
3. the policy plans with the recalibrated model scaled by (1 + margin). The hinge model is
   linear in its coefficients, so scaling them scales every prediction, and the exact inverse
   (largest chunk within a budget) stays exact.

Pure: no clock, no I/O. The simulator feeds it the device's step times, the SGLang adapter the
wall time of each step (see sglang_adapter/hook.py), through the same `observe`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from fairbatching_sglang.core.cost_model import HingeCostModel, StepShape
from fairbatching_sglang.core.online_calibration import OnlineCalibrationConfig, OnlineCalibrator

PolicyT = TypeVar("PolicyT")  # a frozen policy dataclass with a cost_model field


@dataclass(frozen=True)
class ClosedLoopConfig:
    """recalibrate: learn the model online (False: margin only, around the offline model).
    margin_block_steps: steps per measured/predicted sample. margin_window_blocks: samples kept.
    margin_quantile: which quantile of the samples sets the margin.
    min_margin / max_margin: bounds of the margin (a fraction: 0.02 = plan steps 2% longer).
    initial_margin: used until `min_blocks` samples exist (a cold start is not trusted).
    refresh_steps: the planning model is rebuilt every this many observed steps.
    """

    recalibrate: bool = True
    margin_block_steps: int = 1
    margin_window_blocks: int = 64
    margin_quantile: float = 0.95
    min_margin: float = 0.02
    max_margin: float = 0.5
    initial_margin: float = 0.05
    min_blocks: int = 8
    refresh_steps: int = 8
    calibration: OnlineCalibrationConfig = field(default_factory=OnlineCalibrationConfig)

    def __post_init__(self) -> None:
        for name in ("margin_block_steps", "margin_window_blocks", "min_blocks", "refresh_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"closed loop: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.margin_quantile <= 1.0:
            raise ValueError("closed loop: margin_quantile must be in (0, 1]")
        if not 0.0 <= self.min_margin <= self.max_margin:
            raise ValueError("closed loop: need 0 <= min_margin <= max_margin")
        if not self.min_margin <= self.initial_margin <= self.max_margin:
            raise ValueError("closed loop: initial_margin must lie in [min_margin, max_margin]")
        if self.min_blocks > self.margin_window_blocks:
            raise ValueError("closed loop: min_blocks must be <= margin_window_blocks")


def scaled_model(model: HingeCostModel, factor: float) -> HingeCostModel:
    """`model` with every time coefficient (fields in ms) multiplied by `factor`; knees kept."""
    if factor == 1.0:
        return model
    changes = {
        f.name: getattr(model, f.name) * factor
        for f in dataclasses.fields(model)
        if "_ms" in f.name and isinstance(getattr(model, f.name), float | int)
    }
    return dataclasses.replace(model, **changes)


class ClosedLoopPlanner:
    """Owns what the planner believes. `observe(shape, measured_ms)` after every step;
    `planning_model()` for the model the policy plans with (recalibrated x (1 + margin))."""

    def __init__(self, base: HingeCostModel, config: ClosedLoopConfig | None = None) -> None:
        self.base = base
        self.config = config or ClosedLoopConfig()
        self._calibrator = (
            OnlineCalibrator(base, self.config.calibration) if self.config.recalibrate else None
        )
        self._believed = base
        self._ratios: deque[float] = deque(maxlen=self.config.margin_window_blocks)
        self._block_measured_ms = 0.0
        self._block_predicted_ms = 0.0
        self._block_steps = 0
        self._since_refresh = 0
        self.margin = self.config.initial_margin
        self._planning = scaled_model(base, 1.0 + self.margin)
        self.num_observed = 0
        self.num_ignored = 0
        self.sum_measured_ms = 0.0
        self.sum_predicted_ms = 0.0

    # ------------------------------------------------------------------------------------------
    def believed_model(self) -> HingeCostModel:
        """The recalibrated model, without the margin: the best guess of a step's time."""
        return self._believed

    def planning_model(self) -> HingeCostModel:
        return self._planning

    def predict_ms(self, shape: StepShape) -> float:
        return self._believed.predict_ms(shape)

    def steer(self, policy: PolicyT) -> PolicyT:
        """`policy` planning with the current planning model (itself when it already does)."""
        if policy.cost_model is self._planning:  # type: ignore[attr-defined]
            return policy
        return dataclasses.replace(policy, cost_model=self._planning)  # type: ignore[type-var]

    # ------------------------------------------------------------------------------------------
    def observe(self, shape: StepShape, measured_ms: float) -> None:
        """One finished step. Empty steps and non-finite / non-positive times are ignored."""
        predicted = self._believed.predict_ms(shape)
        if predicted <= 0 or not math.isfinite(measured_ms) or measured_ms <= 0:
            self.num_ignored += 1
            return
        self.num_observed += 1
        self.sum_measured_ms += measured_ms
        self.sum_predicted_ms += predicted
        self._block_measured_ms += measured_ms
        self._block_predicted_ms += predicted
        self._block_steps += 1
        cfg = self.config
        if self._block_steps >= cfg.margin_block_steps:
            self._ratios.append(self._block_measured_ms / self._block_predicted_ms)
            self._block_measured_ms = self._block_predicted_ms = 0.0
            self._block_steps = 0
        if self._calibrator is not None:
            self._calibrator.update_shape(shape, measured_ms)
        self._since_refresh += 1
        if self._since_refresh >= cfg.refresh_steps:
            self._refresh()

    def _refresh(self) -> None:
        self._since_refresh = 0
        cfg = self.config
        if self._calibrator is not None:
            self._believed = self._calibrator.model()
        if len(self._ratios) >= cfg.min_blocks:
            q = float(np.quantile(self._ratios, cfg.margin_quantile))
            self.margin = min(max(q - 1.0, cfg.min_margin), cfg.max_margin)
        self._planning = scaled_model(self._believed, 1.0 + self.margin)

    # ------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """For logs, metrics and run records."""
        mean = self.sum_measured_ms / self.sum_predicted_ms if self.sum_predicted_ms else math.nan
        out = {
            "margin": self.margin,
            "num_observed_steps": float(self.num_observed),
            "num_ignored_steps": float(self.num_ignored),
            "measured_over_predicted": mean,
        }
        if self._calibrator is not None:
            out.update({f"ratio_{k}": v for k, v in self._calibrator.ratios().items()})
        return out

"""`--device-model SPEC`: which device model (profiles/device_model.py) a run charges.

    profile                                   exactly the run's --profile (+ the step overhead)
    profile:bias=0.05,noise=0.03,seed=0       biased / noisy; every parameter optional:
        bias=B        every step x(1 + B)                 (> -1)
        noise=N       per-step lognormal factor, sigma N  (0..1, mean 1)
        overhead_ms=O per-step CPU/launch time            (default: the run's step overhead)
        jitter_ms=J   normal jitter on that overhead      (>= 0)
        shift=X       from step `shift_after` on, x(1 + X)
        shift_after=K
        seed=S        of the noise / jitter stream
        profile=NAME  price from another profile than the planner's --profile
    realistic                                 the default of simulate / ab / cluster: the
                                              profile 5% slower than the planner believes,
                                              3% per-step noise, 0.2 ms overhead jitter, seed 0
                                              (= profile:bias=0.05,noise=0.03,jitter_ms=0.2,
                                              seed=0); realistic:seed=3 etc. override one part
    steplog:PATH                              replay a measured JSONL step log over the profile
    engine                                    aiconfigurator-core's engine prices every step for
                                              the profile's GPU, model and TP (+ the step
                                              overhead); needs the `calibrate` extra
    engine:noise=0.03,seed=1,cache=memory     the profile device's parameters, and
        cache=disk|memory  keep engine prices in ~/.cache/fairbatching/engine-prices (default)
                           or in this process only

A spec is parsed once (errors name the flag and the parameter) and built into a fresh device
per run (`build`), so every run starts its random stream from the seed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairbatching_sglang.profiles import CostProfile, ProfileError, load_profile
from fairbatching_sglang.profiles.device_model import (
    DeviceModel,
    EngineDevice,
    LoggedSteps,
    ProfileDevice,
    ProfileDeviceConfig,
    ReplayDevice,
)

KINDS = ("profile", "realistic", "steplog", "engine")
# Why these numbers: the refit profiles are within ~2% mean / ~4-5% p90 of aiconfigurator's
# engine on a fresh sample, and real 0.5.23 adds padded-graph and CPU costs the kernel tables do
# not have, so a planner that trusts its profile is a few percent optimistic and never exact.
# Published results are judged under this device, never under the planner's own model.
REALISTIC_PARAMS = "bias=0.05,noise=0.03,jitter_ms=0.2,seed=0"
DEFAULT_DEVICE_MODEL = "realistic"
_CACHE_MODES = ("disk", "memory")
_FLOAT_PARAMS = {"bias": "bias", "noise": "noise", "overhead_ms": "overhead_ms"}
_FLOAT_PARAMS |= {"jitter_ms": "overhead_jitter_ms", "shift": "shift"}
_INT_PARAMS = {"seed": "seed", "shift_after": "shift_after_steps"}


class DeviceSpecError(ValueError):
    """A --device-model value that cannot be used; the message names the flag and the part."""


@dataclass(frozen=True)
class DeviceModelSpec:
    kind: str
    text: str
    config: ProfileDeviceConfig = field(default_factory=ProfileDeviceConfig)
    profile: str | None = None  # None: the run's own --profile
    steplog_path: str | None = None
    # The step log as read when the spec was parsed (read once; every run builds from it).
    steplog: LoggedSteps | None = field(default=None, compare=False, repr=False)
    engine_cache: str = "disk"  # engine only: "disk" or "memory"

    def build(self, run_profile: CostProfile, default_overhead_ms: float) -> DeviceModel:
        profile = run_profile if self.profile is None else load_profile(self.profile)
        if self.kind == "profile":
            return ProfileDevice(profile.cost_model, profile.name, self.config, default_overhead_ms)
        if self.kind == "engine":
            return self._build_engine(profile, default_overhead_ms)
        assert self.steplog is not None
        return ReplayDevice(profile.cost_model, profile.name, self.steplog)

    def _build_engine(self, profile: CostProfile, default_overhead_ms: float) -> EngineDevice:
        from fairbatching_sglang.profiles import engine_prices as ep

        where = f"--device-model {self.text!r}"
        if not (profile.gpu and profile.model):
            raise DeviceSpecError(
                f"{where}: profile {profile.name} names no gpu / model for the engine to price "
                "(the shipped profiles do; so does a profile fit with --base)"
            )
        backend = profile.sglang_version or ep.SGLANG_KERNEL_VERSION
        try:
            ep.require_engine()
            prices = ep.shared_step_prices(
                profile.model,
                profile.gpu,
                profile.tp_size,
                backend,
                disk_cache=self.engine_cache == "disk",
            )
            if prices.num_cached == 0:
                # Compile now (~0.5-3 s): a bad GPU / model fails here, not mid-run, and the
                # first step does not stall an emulated device's clock.
                _ = prices.pricer
        except ep.EngineUnavailableError as exc:
            raise DeviceSpecError(f"{where}: {exc}") from exc
        except Exception as exc:  # the engine's own errors (unknown model or system, ...)
            raise DeviceSpecError(
                f"{where}: aiconfigurator-core cannot price {profile.model} on {profile.gpu} "
                f"TP{profile.tp_size} (SGLang {backend} tables): {exc}"
            ) from exc
        label = (
            f"aiconfigurator-core {ep.aiconfigurator_version()} ({profile.gpu}, "
            f"{profile.model}, TP{profile.tp_size}, SGLang {backend} tables)"
        )
        return EngineDevice(
            prices,
            profile.name,
            self.config,
            default_overhead_ms,
            profile_overhead_ms=profile.cost_model.overhead_ms,
            label=label,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "spec": self.text,
            "kind": self.kind,
            "profile": self.profile,
            "steplog": self.steplog_path,
            "bias": self.config.bias,
            "noise": self.config.noise,
            "overhead_ms": self.config.overhead_ms,
            "jitter_ms": self.config.overhead_jitter_ms,
            "shift": self.config.shift,
            "shift_after": self.config.shift_after_steps,
            "seed": self.config.seed,
            **({"cache": self.engine_cache} if self.kind == "engine" else {}),
        }


def parse_device_model(text: str, flag: str = "--device-model") -> DeviceModelSpec:
    text = (text or "").strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if kind == "realistic":
        # An alias of the profile device; the user's parameters override the preset's.
        given = {p.partition("=")[0].strip() for p in rest.split(",") if p.strip()}
        preset = [p for p in REALISTIC_PARAMS.split(",") if p.partition("=")[0] not in given]
        expanded = "profile:" + ",".join(filter(None, [*preset, rest.strip()]))
        try:
            spec = parse_device_model(expanded, flag)
        except DeviceSpecError as exc:
            raise DeviceSpecError(str(exc).replace(repr(expanded), repr(text))) from None
        return dataclasses.replace(spec, text=text)
    if kind not in KINDS:
        raise DeviceSpecError(
            f"{flag} {text!r}: unknown device model {kind!r}; known: {', '.join(KINDS)} "
            "(e.g. 'profile', 'realistic', 'profile:bias=0.05,noise=0.03,seed=0', "
            "'steplog:steps.jsonl', "
            "'engine', 'engine:noise=0.02,seed=1')"
        )
    if kind == "engine":
        from fairbatching_sglang.profiles.engine_prices import (
            EngineUnavailableError,
            require_engine,
        )

        try:
            require_engine()  # fail at the flag, not when the first run builds its device
        except EngineUnavailableError as exc:
            raise DeviceSpecError(f"{flag} {text!r}: {exc}") from exc
    if kind == "steplog":
        path = rest.strip()
        if not path:
            raise DeviceSpecError(f"{flag} {text!r}: steplog needs a path (steplog:PATH)")
        if not Path(path).is_file():
            raise DeviceSpecError(f"{flag} {text!r}: step log {path} not found")
        steps = read_logged_steps(path, flag)  # fail now, not in the middle of a run
        return DeviceModelSpec("steplog", text, steplog_path=path, steplog=steps)
    values: dict[str, object] = {}
    profile: str | None = None
    cache: str | None = None
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not raw:
            raise DeviceSpecError(f"{flag} {text!r}: parameter {part!r} must be NAME=VALUE")
        if (
            key in values
            or (key == "profile" and profile is not None)
            or (key == "cache" and cache is not None)
        ):
            raise DeviceSpecError(f"{flag} {text!r}: parameter {key!r} given twice")
        if key == "cache" and kind == "engine":
            if raw not in _CACHE_MODES:
                raise DeviceSpecError(
                    f"{flag} {text!r}: cache={raw!r}; choose {' or '.join(_CACHE_MODES)}"
                )
            cache = raw
        elif key == "profile":
            try:
                load_profile(raw)
            except ProfileError as exc:
                raise DeviceSpecError(f"{flag} {text!r}: profile={raw}: {exc}") from exc
            profile = raw
        elif key in _FLOAT_PARAMS:
            try:
                value = float(raw)
            except ValueError:
                raise DeviceSpecError(f"{flag} {text!r}: {key}={raw!r} is not a number") from None
            if not math.isfinite(value):
                raise DeviceSpecError(f"{flag} {text!r}: {key}={raw!r} must be finite")
            values[_FLOAT_PARAMS[key]] = value
        elif key in _INT_PARAMS:
            try:
                values[_INT_PARAMS[key]] = int(raw)
            except ValueError:
                raise DeviceSpecError(f"{flag} {text!r}: {key}={raw!r} is not an integer") from None
            if values[_INT_PARAMS[key]] < 0:
                raise DeviceSpecError(f"{flag} {text!r}: {key}={raw!r} must be >= 0")
        else:
            extra = ["cache"] if kind == "engine" else []
            known = sorted([*_FLOAT_PARAMS, *_INT_PARAMS, "profile", *extra])
            raise DeviceSpecError(
                f"{flag} {text!r}: unknown parameter {key!r}; known: {', '.join(known)}"
            )
    if "shift_after_steps" in values and "shift" not in values:
        raise DeviceSpecError(f"{flag} {text!r}: shift_after needs shift=X")
    try:
        config = ProfileDeviceConfig(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DeviceSpecError(f"{flag} {text!r}: {exc}") from exc
    return DeviceModelSpec(kind, text, config=config, profile=profile, engine_cache=cache or "disk")


def read_logged_steps(path: str | Path, flag: str = "--device-model") -> LoggedSteps:
    from fairbatching_sglang.profiles.step_log import StepLogError, read_step_log

    try:
        records = read_step_log(path)
    except StepLogError as exc:
        raise DeviceSpecError(f"{flag}: {exc}") from exc
    return LoggedSteps(
        num_tokens=np.array([r.num_prefill_tokens + r.num_decode_reqs for r in records]),
        num_decode_reqs=np.array([r.num_decode_reqs for r in records]),
        decode_kv_tokens=np.array([r.decode_kv_tokens for r in records]),
        prefill_attn_work=np.array([r.prefill_attn_work for r in records], dtype=np.float64),
        measured_ms=np.array([r.measured_ms for r in records], dtype=np.float64),
        origin=str(path),
    )

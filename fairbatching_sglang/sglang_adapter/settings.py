"""The --fairbatching-* server flags as one frozen config, and their validation.

Validation runs in SGLang's `check_server_args` (patched) before any process is spawned, so a
mode FairBatching does not handle is refused with a clear message instead of failing later in
the scheduler process. No sglang import here: it reads attributes off the server args it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from fairbatching_sglang.core.config import FairBatchingConfig
from fairbatching_sglang.core.slo import SloTargets
from fairbatching_sglang.profiles import DEFAULT_PROFILE, load_profile

# (server-args attribute, value meaning "feature on", why FairBatching refuses it)
_UNSUPPORTED: tuple[tuple[str, Any, str], ...] = (
    ("speculative_algorithm", "set", "speculative decoding (a step's token count is not known)"),
    ("pp_size", ">1", "pipeline parallelism (micro-batches interleave steps)"),
    ("disaggregation_mode", "not-null", "PD disaggregation (prefill and decode run apart)"),
    ("enable_pdmux", True, "PD multiplexing"),
    ("enable_dp_attention", True, "DP attention (batches are synchronised across DP ranks)"),
    ("dllm_algorithm", "set", "diffusion LLM decoding"),
    ("enable_priority_scheduling", True, "priority scheduling (it preempts running requests)"),
    ("enable_dynamic_chunking", True, "dynamic chunking (it sizes chunks itself)"),
    ("enable_prefill_delayer", True, "the prefill delayer (it holds prefills back itself)"),
    ("enable_hisparse", True, "HiSparse (its own prefill-to-decode transition)"),
    ("is_embedding", True, "embedding models (no decode steps)"),
)


class FairBatchingArgsError(ValueError):
    """A flag combination FairBatching cannot serve; the message says which and why."""


@dataclass(frozen=True)
class FairBatchingSettings:
    """What the scheduler needs from the flags.

    config_json: FairBatchingConfig overrides, e.g. '{"enable_parking": false}'.
    overhead_ms: added to the profile's step cost (CPU, launch and sampling time that kernel
        tables leave out); None keeps the profile's value.
    """

    ttft_slo_ms: float = 1000.0
    tpot_slo_ms: float = 50.0
    profile: str = DEFAULT_PROFILE
    step_log: str | None = None
    config_json: str | None = None
    overhead_ms: float | None = None

    @property
    def default_slo(self) -> SloTargets:
        return SloTargets(self.ttft_slo_ms, self.tpot_slo_ms)

    def policy_config(self) -> FairBatchingConfig:
        if not self.config_json:
            return FairBatchingConfig()
        try:
            data = json.loads(self.config_json)
        except json.JSONDecodeError as exc:
            raise FairBatchingArgsError(
                f"--fairbatching-config is not valid JSON: {exc.msg}"
            ) from exc
        known = {f.name for f in fields(FairBatchingConfig)}
        if not isinstance(data, dict) or set(data) - known:
            bad = sorted(set(data) - known) if isinstance(data, dict) else data
            raise FairBatchingArgsError(
                f"--fairbatching-config: unknown key(s) {bad}; known: {sorted(known)}"
            )
        try:
            return FairBatchingConfig(**data)
        except (TypeError, ValueError) as exc:
            raise FairBatchingArgsError(f"--fairbatching-config: {exc}") from exc

    @classmethod
    def from_server_args(cls, args: Any) -> FairBatchingSettings:
        return cls(
            ttft_slo_ms=float(args.fairbatching_ttft_slo_ms),
            tpot_slo_ms=float(args.fairbatching_tpot_slo_ms),
            profile=str(args.fairbatching_profile),
            step_log=args.fairbatching_step_log or None,
            config_json=args.fairbatching_config or None,
            overhead_ms=args.fairbatching_overhead_ms,
        )


def _is_on(value: Any, when: Any) -> bool:
    if when == "set":
        return value is not None and value != ""
    if when == ">1":
        return value is not None and int(value) > 1
    if when == "not-null":
        return value is not None and str(value) != "null"
    return bool(value) is when


def check_fairbatching_args(args: Any) -> FairBatchingSettings:
    """Refuse what FairBatching does not handle; returns the parsed settings.

    Called only when --enable-fairbatching is set (the flag off leaves stock SGLang untouched).
    """
    problems: list[str] = []
    chunk = getattr(args, "chunked_prefill_size", None)
    if chunk is None or int(chunk) <= 0:
        problems.append(
            "FairBatching needs chunked prefill: set --chunked-prefill-size to a positive value "
            f"(got {chunk})"
        )
    for attr, when, why in _UNSUPPORTED:
        if _is_on(getattr(args, attr, None), when):
            problems.append(
                f"--enable-fairbatching does not support {why} ({attr}={getattr(args, attr)!r})"
            )
    try:
        settings = FairBatchingSettings.from_server_args(args)
        settings.default_slo  # noqa: B018 - validates both SLOs > 0
        settings.policy_config()
        profile = load_profile(settings.profile)
        if settings.overhead_ms is not None and settings.overhead_ms < 0:
            raise FairBatchingArgsError("--fairbatching-overhead-ms must be >= 0")
        del profile
    except ValueError as exc:  # SloTargets, ProfileError and FairBatchingArgsError
        problems.append(str(exc))
        settings = FairBatchingSettings()
    if problems:
        raise FairBatchingArgsError("; ".join(problems))
    return settings

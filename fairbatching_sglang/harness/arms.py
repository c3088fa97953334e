"""An arm = one scheduling configuration under test, described for both backends.

The simulator needs a policy name (+ FairBatching knobs); a GPU run needs to know whether the
server is stock or patched SGLang and which extra flags it takes. One table holds both so that the
same arm name means the same thing in a simulated and a measured report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fairbatching_sglang.core import FairBatchingConfig, SloTargets


@dataclass(frozen=True)
class Arm:
    name: str
    sim_policy: str
    patched: bool = False  # GPU: needs the patched SGLang (FairBatching) rather than stock
    server_flags: tuple[str, ...] = ()
    fb_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def is_fairbatching(self) -> bool:
        return self.sim_policy == "fairbatching"

    def fairbatching_config(self) -> FairBatchingConfig | None:
        return FairBatchingConfig(**self.fb_overrides) if self.is_fairbatching else None  # type: ignore[arg-type]

    def gpu_flags(self, slo: SloTargets, profile: str) -> list[str]:
        """Server flags for this arm (the SLO and profile only matter to FairBatching arms)."""
        flags = list(self.server_flags)
        if self.is_fairbatching:
            flags += [
                "--enable-fairbatching",
                "--fairbatching-ttft-slo-ms",
                f"{slo.ttft_slo_ms:g}",
                "--fairbatching-tpot-slo-ms",
                f"{slo.tpot_slo_ms:g}",
                "--fairbatching-profile",
                profile,
            ]
            if self.fb_overrides:
                flags += ["--fairbatching-config", json.dumps(self.fb_overrides, sort_keys=True)]
        return flags


# Known arms. "sarathi" (vLLM-style decode-first, fixed token budget) exists only in the simulator:
# stock SGLang has no such mode, so a GPU run refuses it.
ARMS: dict[str, Arm] = {
    "sglang-default": Arm("sglang-default", "sglang-default"),
    "sglang-mixed": Arm("sglang-mixed", "sglang-mixed", server_flags=("--enable-mixed-chunk",)),
    "sarathi": Arm("sarathi", "sarathi"),
    # The paper's envelope, anchored at arrival: a fast first token banks TTFT slack that later
    # tokens may spend. Both anchors are explicit so a change of the package default (now
    # first_token) cannot silently make the two arms the same.
    "fairbatching": Arm(
        "fairbatching",
        "fairbatching",
        patched=True,
        fb_overrides={"decode_deadline_anchor": "arrival"},
    ),
    # Decode envelope anchored at the first token: meets the usual mean-TPOT SLO whenever the
    # envelope holds.
    "fairbatching-ft": Arm(
        "fairbatching-ft",
        "fairbatching",
        patched=True,
        fb_overrides={"decode_deadline_anchor": "first_token"},
    ),
}
STOCK_ARMS = ("sglang-default", "sglang-mixed", "sarathi")
DEFAULT_ARMS = ("sglang-default", "sglang-mixed", "fairbatching")
GPU_ARMS = tuple(a for a in ARMS if a != "sarathi")


def resolve_arms(names: list[str] | tuple[str, ...], backend: str) -> list[Arm]:
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    if backend in ("gpu", "emulated"):
        bad = [n for n in names if n not in GPU_ARMS]
        if bad:
            raise ValueError(f"arm(s) {bad} exist only in the simulator")
    return [ARMS[n] for n in names]

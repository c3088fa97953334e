"""An arm = one scheduling configuration under test, described for both backends.

The simulator needs a policy name (+ FairBatching knobs); a GPU run needs to know whether the
server is stock or patched SGLang and which extra flags it takes. One table holds both so that the
same arm name means the same thing in a simulated and a measured report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from fairbatching_sglang.core import FairBatchingConfig, SloTargets


@dataclass(frozen=True)
class Arm:
    name: str
    sim_policy: str
    patched: bool = False  # GPU: needs the patched SGLang (FairBatching) rather than stock
    server_flags: tuple[str, ...] = ()
    fb_overrides: dict[str, str | None] = field(default_factory=dict)
    # SimConfig fields this arm sets (a stock arm at another setting of its knob, see KNOBS).
    sim_overrides: dict[str, int] = field(default_factory=dict)

    @property
    def base_name(self) -> str:
        """The registered arm this one derives from ("sarathi" for "sarathi@1024")."""
        return self.name.split("@", 1)[0]

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
    # The shipped default configuration: the decode envelope anchored at the first token, which
    # meets the usual mean-TPOT SLO whenever the envelope holds. The anchor is explicit so a
    # change of the package default cannot silently make this arm and the arrival arm the same.
    "fairbatching": Arm(
        "fairbatching",
        "fairbatching",
        patched=True,
        fb_overrides={"decode_deadline_anchor": "first_token"},
    ),
    # The paper's envelope, anchored at arrival: a fast first token banks TTFT slack that later
    # tokens may spend.
    "fairbatching-arrival": Arm(
        "fairbatching-arrival",
        "fairbatching",
        patched=True,
        fb_overrides={"decode_deadline_anchor": "arrival"},
    ),
    # fairbatching with late prefills deferred behind those that can still meet their TTFT, for
    # at most 3 TTFT SLOs past their deadline: fewer TTFT misses (higher attainment), a longer
    # tail for the deferred ones (results/late-prefill-order/ has the measured trade-off).
    "fairbatching-defer-late": Arm(
        "fairbatching-defer-late",
        "fairbatching",
        patched=True,
        fb_overrides={
            "decode_deadline_anchor": "first_token",
            "late_prefill_order": "deprioritize",
            "late_prefill_max_defer_slo": 3.0,
        },
    ),
    # fairbatching without the closed loop: plans with the profile as given, no online
    # recalibration and no margin (the policy before issue #13; an ablation, not a product).
    "fairbatching-open": Arm(
        "fairbatching-open",
        "fairbatching",
        patched=True,
        fb_overrides={"decode_deadline_anchor": "first_token", "closed_loop": None},
    ),
}
# Other names an arm answers to. "fairbatching-ft" named the first-token anchor while
# "fairbatching" meant the arrival anchor (before issue #15); it stays accepted so existing
# commands and published reports keep working, and resolves to the same configuration under the
# name it was given (so run directories and report columns keep their names).
ALIASES: dict[str, str] = {"fairbatching-ft": "fairbatching"}
STOCK_ARMS = ("sglang-default", "sglang-mixed", "sarathi")
DEFAULT_ARMS = ("sglang-default", "sglang-mixed", "fairbatching")
GPU_ARMS = tuple(a for a in ARMS if a != "sarathi")
ARM_NAMES = (*ARMS, *ALIASES)  # every name --arms / --policy / --arm accepts (besides NAME@N)


@dataclass(frozen=True)
class Knob:
    """A stock arm's main setting: what `ab --tune-baselines` sweeps so that a gain is never
    measured against a baseline left at a bad setting. field: the SimConfig field; server_flag:
    the SGLang flag setting it on a real server (None: sim only); option: the `ab` option that
    overrides the sweep `values`."""

    field: str
    server_flag: str | None
    option: str
    values: tuple[int, ...]


_CHUNK = Knob(
    "chunked_prefill_size",
    "--chunked-prefill-size",
    "--tune-chunked-prefill-size",
    (2048, 4096, 8192, 16384),
)
KNOBS: dict[str, Knob] = {
    "sglang-default": _CHUNK,
    "sglang-mixed": _CHUNK,
    "sarathi": Knob(
        "sarathi_token_budget", None, "--tune-sarathi-token-budget", (512, 1024, 2048, 4096, 8192)
    ),
}
TUNED = "tuned"  # "<arm>@tuned": the best setting a sweep found (a report alias, not runnable)


def setting_arm(name: str, value: int) -> Arm:
    """Registered stock arm `name` with its knob at `value`, named "<name>@<value>" (the
    sweep points of --tune-baselines; also accepted by --arms)."""
    if name not in KNOBS:
        raise ValueError(f"arm {name!r} has no knob to set; tunable: {', '.join(KNOBS)}")
    if value < 1:
        raise ValueError(f"{name}@{value}: {KNOBS[name].field} must be >= 1")
    base, knob = ARMS[name], KNOBS[name]
    flags = base.server_flags
    if knob.server_flag is not None:
        flags = (*flags, knob.server_flag, str(value))
    return dataclasses.replace(
        base, name=f"{name}@{value}", server_flags=flags, sim_overrides={knob.field: value}
    )


def resolve_arm(name: str) -> Arm:
    """The arm called `name`: a registered arm, an alias of one, or a stock arm at a setting of
    its knob ("sarathi@1024"). Raises ValueError naming the known arms otherwise."""
    if name in ARMS:
        return ARMS[name]
    if name in ALIASES:
        return dataclasses.replace(ARMS[ALIASES[name]], name=name)
    base, sep, value = name.partition("@")
    if sep and base in KNOBS:
        if value == TUNED:
            raise ValueError(
                f"{name!r} is what --tune-baselines reports (the best setting of {base}), not an "
                f"arm to run; name a setting instead, e.g. {base}@{KNOBS[base].values[0]}"
            )
        try:
            return setting_arm(base, int(value))
        except ValueError as exc:
            raise ValueError(
                f"arm {name!r}: {base}@N needs an integer N >= 1 ({KNOBS[base].field})"
            ) from exc
    raise ValueError(
        f"unknown arm {name!r}; known: {', '.join(ARM_NAMES)} (and {', '.join(KNOBS)} as "
        "NAME@N, N = the arm's knob setting)"
    )


def _same_config(a: Arm) -> str:
    fields = [a.sim_policy, a.server_flags, a.fb_overrides, a.sim_overrides]
    return json.dumps(fields, sort_keys=True, default=str)


def resolve_arms(names: list[str] | tuple[str, ...], backend: str) -> list[Arm]:
    """Arms for a run on `backend`; refuses a sim-only arm on a server backend and two names for
    one configuration (e.g. fairbatching and its alias fairbatching-ft)."""
    arms = [resolve_arm(n) for n in names]
    seen: dict[str, str] = {}
    for a in arms:
        other = seen.setdefault(_same_config(a), a.name)
        if other != a.name:
            raise ValueError(f"arms {other!r} and {a.name!r} are the same configuration; name one")
    if backend in ("gpu", "emulated"):
        bad = [a.name for a in arms if ALIASES.get(a.base_name, a.base_name) not in GPU_ARMS]
        if bad:
            raise ValueError(f"arm(s) {bad} exist only in the simulator")
    return arms

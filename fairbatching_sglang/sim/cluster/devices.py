"""One device per replica from one `--device-model` spec (profiles/device_spec.py).

Seeds: replica 0 draws the spec's own seed, so a 1-replica cluster charges exactly what
`fairbatching simulate` charges with the same spec; replica i > 0 draws
`SeedSequence([seed, i])` (32 bits), independent streams rather than seed + i, which would
give replica i of seed s the noise of replica 0 of seed s + i. Replicas therefore never share
a noise / jitter sequence, and the same spec and replica count give the same seeds every run.
A steplog device has no random stream (its seeds are None).

Pricing profile: a spec with `profile=NAME` prices every replica from NAME; otherwise each
replica is priced from its own profile (a heterogeneous mix keeps its per-replica truth).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from fairbatching_sglang.profiles import CostProfile
from fairbatching_sglang.profiles.device_model import DeviceModel
from fairbatching_sglang.profiles.device_spec import DeviceModelSpec


def replica_seed(seed: int, index: int) -> int:
    """The noise seed of replica `index` under a spec seeded with `seed` (module docstring)."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def replica_specs(spec: DeviceModelSpec, num_replicas: int) -> list[DeviceModelSpec]:
    """The spec each replica builds its device from (only the seed differs)."""
    if spec.kind not in ("profile", "engine"):
        return [spec] * num_replicas
    return [
        dataclasses.replace(
            spec, config=dataclasses.replace(spec.config, seed=replica_seed(spec.config.seed, i))
        )
        for i in range(num_replicas)
    ]


def replica_seeds(spec: DeviceModelSpec, num_replicas: int) -> list[int | None]:
    if spec.kind not in ("profile", "engine"):
        return [None] * num_replicas
    return [replica_seed(spec.config.seed, i) for i in range(num_replicas)]


def build_replica_devices(
    spec: DeviceModelSpec, profiles: Sequence[CostProfile], default_overhead_ms: float
) -> list[DeviceModel]:
    """A fresh device per replica (each run starts every stream from its seed)."""
    specs = replica_specs(spec, len(profiles))
    return [s.build(p, default_overhead_ms) for s, p in zip(specs, profiles, strict=True)]


def device_metadata(
    spec: DeviceModelSpec, devices: Sequence[DeviceModel], num_replicas: int
) -> dict[str, object]:
    """run.json's "device_model": the spec, its parameters and each replica's device."""
    return {
        **spec.to_dict(),
        "description": devices[0].description if devices else None,
        "replica_seeds": replica_seeds(spec, num_replicas),
        "replica_descriptions": [d.description for d in devices],
        "seed_rule": "replica 0: the spec's seed; replica i > 0: SeedSequence([seed, i])",
    }

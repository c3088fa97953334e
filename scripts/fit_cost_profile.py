#!/usr/bin/env python3
"""Fit a step-cost profile from aiconfigurator-core's measured SGLang kernel tables.

Samples random steps (prefill chunks on cached prefixes, decode batches with varied KV lengths,
many short decodes, long chunks on long prefixes, mixed steps), prices each with the compiled
aiconfigurator-core engine, fits the two-hinge form with its has-a-prefill and per-decode
costs (fairbatching_sglang/profiles/fit.py) on one half and reports errors on the other and on
a fresh sample drawn with another seed (--check-seed), and writes a profile JSON in the schema
of fairbatching_sglang/profiles/h100-llama3.1-8b.json. Top-level keys of an existing --out file
that this script does not write (e.g. "context_len") are kept.

--check PROFILE... prices a fresh sample (--check-seed) for each profile's GPU, model and TP and
prints the profile's errors on it, by step regime; nothing is written.

Needs the `calibrate` extra:  .venv/bin/pip install aiconfigurator-core==0.12.0

Examples:
    .venv/bin/python scripts/fit_cost_profile.py --model llama3.1-8b --system h100_sxm \
        --tp 1 --samples 6000 --seed 0 --out fairbatching_sglang/profiles/h100-llama3.1-8b.json
    .venv/bin/python scripts/fit_cost_profile.py --check h100-llama3.1-8b --samples 6000 \
        --check-seed 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from importlib import resources
from pathlib import Path

import numpy as np
from rich.progress import Progress

from fairbatching_sglang.core.cost_model import HingeCostModel
from fairbatching_sglang.profiles import ProfileError, load_profile, profile_from_dict
from fairbatching_sglang.profiles.engine_prices import (
    AICONFIGURATOR_VERSION,
    MODEL_IDS,
    REFERENCE_STEPS,
    SGLANG_KERNEL_VERSION,
    EnginePricer,
    SampledStep,
    estimate_kv_capacity,
    sample_steps,
    step_regimes,
)
from fairbatching_sglang.profiles.fit import (
    StepSamples,
    fit_hinge,
    relative_errors,
    rounded_coefficients,
)

NUM_STORED_SAMPLES = 200


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help=f"short name ({', '.join(MODEL_IDS)}) or id")
    ap.add_argument("--system", help="aiconfigurator system: h100_sxm, h200_sxm")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    ap.add_argument("--samples", type=int, default=6000, help="steps to price (half held out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--check-seed", type=int, help="seed of the fresh check sample (default: --seed + 1)"
    )
    ap.add_argument("--name", help="profile name (default: derived from the output file name)")
    ap.add_argument("--out", help="output profile JSON")
    ap.add_argument("--backend-version", default=SGLANG_KERNEL_VERSION)
    ap.add_argument(
        "--check", nargs="+", metavar="PROFILE", help="only check these profiles (names or files)"
    )
    args = ap.parse_args(argv)
    check_seed = args.seed + 1 if args.check_seed is None else args.check_seed
    if args.check:
        return _check(args.check, args.samples, check_seed, args.backend_version)
    if not (args.model and args.system and args.out):
        ap.error("--model, --system and --out are required (unless --check)")

    model_id = MODEL_IDS.get(args.model, args.model)
    out = Path(args.out)
    name = args.name or out.stem
    cmd = "python scripts/fit_cost_profile.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )

    config = _model_config(model_id)
    kv = estimate_kv_capacity(config, args.system, args.tp)
    pricer = EnginePricer.compile(model_id, args.system, args.tp, args.backend_version)

    steps = sample_steps(args.samples, args.seed, kv_capacity_tokens=kv.kv_capacity_tokens)
    prices = np.empty(len(steps))
    with Progress() as progress:
        task = progress.add_task(f"pricing {len(steps)} steps", total=len(steps))
        for i, step in enumerate(steps):
            prices[i] = pricer.price(step)
            if i % 100 == 99:
                progress.update(task, completed=i + 1)
        progress.update(task, completed=len(steps))
        samples = StepSamples.from_rows(
            [
                (
                    s.num_prefill_tokens,
                    s.num_decode_reqs,
                    s.decode_kv_tokens,
                    s.prefill_attn_work,
                    p,
                )
                for s, p in zip(steps, prices, strict=True)
            ]
        )
        train, held = samples.split_half(args.seed)
        fit_task = progress.add_task("fitting (knee search)", total=1)

        def on_progress(done: int, total: int) -> None:
            progress.update(fit_task, completed=done, total=total)

        result = fit_hinge(train, held, progress=on_progress)
    _, held_index = samples.split_half_indices(args.seed)
    held_regimes = {k: v[held_index] for k, v in step_regimes(steps).items()}

    coefficients = rounded_coefficients(result.cost_model)
    model = HingeCostModel.from_dict(coefficients)  # errors are reported for what is written
    train_err = relative_errors(model, train)
    held_err = relative_errors(model, held)
    # The acceptance check of issue #13: a fresh sample (another seed) over the same ranges.
    fresh_steps = sample_steps(args.samples, check_seed, kv_capacity_tokens=kv.kv_capacity_tokens)
    fresh = _priced(pricer, fresh_steps)
    fresh_err = relative_errors(model, fresh)

    reference = {}
    for ref_name, step in REFERENCE_STEPS.items():
        engine_ms = pricer.price(step)
        predicted = model.predict_raw_ms(
            step.num_prefill_tokens + step.num_decode_reqs,
            step.decode_kv_tokens,
            step.prefill_attn_work,
            num_decode_reqs=step.num_decode_reqs,
        )
        reference[ref_name] = {
            "engine_ms": round(engine_ms, 3),
            "predicted_ms": round(predicted, 3),
        }

    stored = held.subset(np.arange(min(NUM_STORED_SAMPLES, len(held))))
    profile = {
        "name": name,
        "gpu": args.system,
        "model": model_id,
        "tp_size": args.tp,
        "sglang_version": args.backend_version,
        "source": (
            f"aiconfigurator-core {AICONFIGURATOR_VERSION} (NVIDIA, Apache-2.0) measured SGLang "
            f"{args.backend_version} kernel tables; two-hinge fit with per-decode cost over "
            f"{len(train)} random steps, errors on {len(held)} held-out steps and on "
            f"{len(fresh)} fresh ones (see profiles/README.md)"
        ),
        "coefficients": coefficients,
        "kv_capacity_tokens": kv.kv_capacity_tokens,
        "kv_capacity_note": kv.note,
        "kv_capacity": {
            "gpu_memory_mib": kv.gpu_memory_mib,
            "mem_fraction_static": kv.mem_fraction_static,
            "weights_gib_per_gpu": round(kv.weights_gib_per_gpu, 3),
            "kv_bytes_per_token_per_gpu": kv.kv_bytes_per_token_per_gpu,
        },
        "fit": {
            **held_err.to_dict(),
            "num_samples": len(samples),
            "num_train": len(train),
            "num_held_out": len(held),
            "train_mean_rel_err": round(train_err.mean_rel_err, 5),
            "held_out_by_step_tokens": _errors_by_tokens(model, held),
            "held_out_by_step_type": _errors_by_regime(model, held, held_regimes),
            "error_set": "held-out half, against the engine's own step prices",
            "seed": args.seed,
            "fresh_sample": {
                **fresh_err.to_dict(),
                "seed": check_seed,
                "by_step_type": _errors_by_regime(model, fresh, step_regimes(fresh_steps)),
            },
        },
        "reference_points_ms": {k: v["engine_ms"] for k, v in reference.items()},
        "reference_points": reference,
        "engine_samples": {
            "columns": [
                "num_prefill_tokens",
                "num_decode_reqs",
                "decode_kv_tokens",
                "prefill_attn_work",
                "engine_ms",
            ],
            "rows": [
                [int(p), int(b), int(s), float(q), round(float(t), 4)]
                for p, b, s, q, t in zip(
                    stored.num_prefill_tokens,
                    stored.num_decode_reqs,
                    stored.decode_kv_tokens,
                    stored.prefill_attn_work,
                    stored.step_ms,
                    strict=True,
                )
            ],
        },
        "command": cmd,
    }
    profile = _keep_other_keys(out, profile)
    profile_from_dict(profile, str(out))  # validate before writing
    out.write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    print(
        f"{name}: held-out mean {held_err.mean_rel_err:.2%} p90 {held_err.p90_rel_err:.2%} "
        f"max {held_err.max_rel_err:.2%}; fresh (seed {check_seed}) mean "
        f"{fresh_err.mean_rel_err:.2%} p90 {fresh_err.p90_rel_err:.2%} max "
        f"{fresh_err.max_rel_err:.2%}; K={coefficients['knee_tokens']}, "
        f"K2={coefficients['knee2_tokens']}, c6={coefficients['c6_ms_if_prefill']} ms, "
        f"c2={coefficients['c2_ms_per_decode_req']} ms; "
        f"kv_capacity {kv.kv_capacity_tokens}; refs "
        + ", ".join(
            f"{k}={v['engine_ms']:.2f}/{v['predicted_ms']:.2f}" for k, v in reference.items()
        )
        + f" -> {out}"
    )
    return 0


def _errors_by_tokens(model: HingeCostModel, held: StepSamples) -> dict[str, dict]:
    """Held-out errors split by step size P+B (where the hinge form struggles)."""
    out = {}
    n = held.num_tokens
    for label, lo, hi in (("lt_64", 0, 64), ("64_to_1023", 64, 1024), ("ge_1024", 1024, 1e12)):
        mask = (n >= lo) & (n < hi)
        if mask.any():
            out[label] = relative_errors(model, held.subset(np.flatnonzero(mask))).to_dict()
    return out


def _errors_by_regime(
    model: HingeCostModel, samples: StepSamples, regimes: dict[str, np.ndarray]
) -> dict[str, dict]:
    """Errors split by step type (prefill only, decode only, mixed) and by the shapes the
    earlier fits missed (many short decodes, long-prefix chunks): engine_prices.step_regimes."""
    return {
        label: relative_errors(model, samples.subset(np.flatnonzero(mask))).to_dict()
        for label, mask in regimes.items()
        if mask.any()
    }


def _priced(pricer: EnginePricer, steps: list[SampledStep]) -> StepSamples:
    return StepSamples.from_rows(
        [
            (s.num_prefill_tokens, s.num_decode_reqs, s.decode_kv_tokens, s.prefill_attn_work, p)
            for s, p in zip(steps, (pricer.price(s) for s in steps), strict=True)
        ]
    )


def _keep_other_keys(out: Path, profile: dict) -> dict:
    """profile, plus the top-level keys of an existing `out` that this script does not write
    (others add keys to the shipped profiles, e.g. "context_len"); the old file's key order is
    kept, new keys come after."""
    if not out.is_file():
        return profile
    try:
        old = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(
            f"{out}: cannot read the existing profile to keep its keys: {exc}"
        ) from exc
    if not isinstance(old, dict):
        return profile
    return {**old, **profile}


def _check(names: list[str], num_samples: int, seed: int, backend_version: str) -> int:
    """Print each profile's errors on a fresh engine-priced sample, by step regime."""
    print(f"fresh sample: {num_samples} steps, seed {seed}; relative error mean / p90 / max")
    for name in names:
        try:
            prof = load_profile(name)
        except ProfileError as exc:
            raise SystemExit(f"error: {exc}") from exc
        if not (prof.gpu and prof.model):
            raise SystemExit(f"error: {name}: the profile names no gpu / model to price with")
        pricer = EnginePricer.compile(prof.model, prof.gpu, prof.tp_size, backend_version)
        steps = sample_steps(num_samples, seed, kv_capacity_tokens=prof.kv_capacity_tokens)
        fresh = _priced(pricer, steps)
        rows = {"all": relative_errors(prof.cost_model, fresh).to_dict()}
        rows |= _errors_by_regime(prof.cost_model, fresh, step_regimes(steps))
        for label, e in rows.items():
            print(
                f"{prof.name:24s} {label:20s} n={e['num_samples']:5d} "
                f"{e['mean_rel_err']:7.2%} {e['p90_rel_err']:7.2%} {e['max_rel_err']:7.2%}"
            )
    return 0


def _model_config(model_id: str) -> dict:
    """The HF config.json aiconfigurator-core ships for model_id."""
    fname = model_id.replace("/", "--") + "_config.json"
    path = resources.files("aiconfigurator_core") / "model_configs" / fname
    if not path.is_file():
        raise SystemExit(f"aiconfigurator-core has no model config {fname}")
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    raise SystemExit(main())

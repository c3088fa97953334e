"""Step-cost profiles shipped with the package (JSON) and the loader for user profile files.

Kept outside `core/` because loading is I/O; the core only sees the `HingeCostModel` built here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fairbatching_sglang.core.cost_model import HingeCostModel

DEFAULT_PROFILE = "h100-llama3.1-8b"

# Context lengths (config.json max_position_embeddings, which SGLang's model_config.context_len
# takes) of the shipped profiles' models, for profiles without a "context_len" key. SGLang sizes
# max_running_requests from it (sim/config.py sglang_max_running_requests).
MODEL_CONTEXT_LENS: dict[str, int] = {
    "meta-llama/Meta-Llama-3.1-8B": 131072,
    "meta-llama/Meta-Llama-3.1-70B": 131072,
    "Qwen/Qwen3-8B": 40960,
    "Qwen/Qwen3-32B": 40960,
}
# Unknown model and no key: Llama-3.1's, the default profile's model.
DEFAULT_CONTEXT_LEN = 131072


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class CostProfile:
    name: str
    cost_model: HingeCostModel
    kv_capacity_tokens: int
    context_len: int = DEFAULT_CONTEXT_LEN
    gpu: str = ""
    model: str = ""
    tp_size: int = 1
    sglang_version: str = ""
    source_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def list_profiles() -> list[str]:
    """Names of the profiles shipped inside the package."""
    pkg = resources.files(__package__)
    return sorted(p.name[: -len(".json")] for p in pkg.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> CostProfile:
    """Load a shipped profile by name (see list_profiles) or any profile JSON by path."""
    text, origin = _read(str(name_or_path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{origin}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    return profile_from_dict(data, origin)


def profile_from_dict(data: Any, origin: str = "<dict>") -> CostProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{origin}: top level must be a JSON object")
    for key in ("name", "coefficients", "kv_capacity_tokens"):
        if key not in data:
            raise ProfileError(f"{origin}: missing field '{key}'")
    coeffs = data["coefficients"]
    if not isinstance(coeffs, dict):
        raise ProfileError(f"{origin}: field 'coefficients' must be an object")
    try:
        model = HingeCostModel.from_dict(coeffs)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{origin}: field 'coefficients': {exc}") from exc
    kv = data["kv_capacity_tokens"]
    if not isinstance(kv, int) or kv <= 0:
        raise ProfileError(f"{origin}: field 'kv_capacity_tokens' must be a positive integer")
    model_name = str(data.get("model", ""))
    context_len = data.get("context_len", MODEL_CONTEXT_LENS.get(model_name, DEFAULT_CONTEXT_LEN))
    if not isinstance(context_len, int) or context_len <= 0:
        raise ProfileError(f"{origin}: field 'context_len' must be a positive integer")
    known = {"name", "coefficients", "kv_capacity_tokens", "gpu", "model", "tp_size"}
    known |= {"sglang_version", "context_len"}
    return CostProfile(
        name=str(data["name"]),
        cost_model=model,
        kv_capacity_tokens=kv,
        context_len=context_len,
        gpu=str(data.get("gpu", "")),
        model=model_name,
        tp_size=int(data.get("tp_size", 1)),
        sglang_version=str(data.get("sglang_version", "")),
        source_path=origin,
        extra={k: v for k, v in data.items() if k not in known},
    )


def _read(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ProfileError(f"{path}: profile file not found")
        return path.read_text(encoding="utf-8"), str(path)
    shipped = resources.files(__package__) / f"{name_or_path}.json"
    if not shipped.is_file():
        names = ", ".join(list_profiles())
        raise ProfileError(f"unknown profile {name_or_path!r}; shipped profiles: {names}")
    return shipped.read_text(encoding="utf-8"), f"{__package__}/{name_or_path}.json"

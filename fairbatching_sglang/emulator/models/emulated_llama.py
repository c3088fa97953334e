"""A model class SGLang's registry can resolve without importing its own models (never built:
the emulated worker's load_model does not instantiate it)."""

from __future__ import annotations

import torch


class LlamaForCausalLM(torch.nn.Module):
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "the emulated server builds no model; was FAIRBATCHING_EMULATED_DEVICE unset?"
        )


EntryClass = LlamaForCausalLM

"""Shared pieces of the stub: anything not defined raises when used, never at import."""

from __future__ import annotations

from enum import Enum
from typing import Any


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _Unavailable:
    """Placeholder for any torchvision attribute: importable, fails on use."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"torchvision.{self._name} is not available: this is the FairBatching CPU test stub"
        )

    def __getattr__(self, attr: str) -> _Unavailable:
        return _Unavailable(f"{self._name}.{attr}")


def module_getattr(prefix: str):  # type: ignore[no-untyped-def]
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(f"{prefix}.{name}")

    return __getattr__

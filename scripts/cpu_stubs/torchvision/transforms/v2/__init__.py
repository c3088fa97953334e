"""CPU test stub of torchvision.transforms.v2 (see scripts/cpu_stubs/README.md)."""

from torchvision._stub import InterpolationMode, module_getattr
from torchvision.transforms.v2 import functional

__getattr__ = module_getattr("transforms.v2")
__all__ = ["InterpolationMode", "functional"]

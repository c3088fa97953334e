"""CPU test stub of torchvision.transforms (see scripts/cpu_stubs/README.md)."""

from torchvision._stub import InterpolationMode, module_getattr
from torchvision.transforms import functional, v2

__getattr__ = module_getattr("transforms")
__all__ = ["InterpolationMode", "functional", "v2"]

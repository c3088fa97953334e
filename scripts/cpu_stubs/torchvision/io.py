"""CPU test stub of torchvision.io (see scripts/cpu_stubs/README.md)."""

from torchvision._stub import InterpolationMode, module_getattr

__getattr__ = module_getattr("io")
__all__ = ["InterpolationMode"]

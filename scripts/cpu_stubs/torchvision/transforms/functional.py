"""CPU test stub of torchvision.transforms.functional (see scripts/cpu_stubs/README.md)."""

from torchvision._stub import InterpolationMode, module_getattr

__getattr__ = module_getattr("transforms.functional")
__all__ = ["InterpolationMode"]

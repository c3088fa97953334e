"""CPU test stub of torchvision.transforms.v2.functional (see scripts/cpu_stubs/README.md)."""

from torchvision._stub import InterpolationMode, module_getattr

__getattr__ = module_getattr("transforms.v2.functional")
__all__ = ["InterpolationMode"]

"""CPU test stub of torchvision (see scripts/cpu_stubs/README.md); not the real package."""

from torchvision import io, transforms

__version__ = "0.0.0+fairbatching.cpustub"
FAIRBATCHING_CPU_STUB = True
__all__ = ["io", "transforms"]

"""FairBatching for SGLang: pure scheduling core, SGLang adapter, simulator and A/B harness."""

__version__ = "0.1.0"

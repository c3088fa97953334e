"""Reports of A/B runs: markdown and CSV tables, PNG plots; identical for both backends."""

from fairbatching_sglang.report.build import write_report
from fairbatching_sglang.report.collect import AbData, load_ab

__all__ = ["AbData", "load_ab", "write_report"]

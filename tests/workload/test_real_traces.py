"""The shared public traces (outside the repo; skipped when absent)."""

from __future__ import annotations

import pytest

from fairbatching_sglang.workload import compute_stats, load_trace

from .conftest import SHARED_TRACES

CASES = [
    ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", 19_366, 5.5),
    ("azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure", 8_819, 2.6),
    ("mooncake_fast25/synthetic_trace.jsonl", "mooncake", 3_993, 3.9),
]


@pytest.mark.parametrize(("rel", "fmt", "rows", "rate"), CASES)
def test_real_trace_rows(rel, fmt, rows, rate):
    path = SHARED_TRACES / rel
    if not path.exists():
        pytest.skip(f"{path} not present")
    t = load_trace(path)
    assert t.format == fmt
    assert len(t) == rows
    assert compute_stats(t).rate_rps == pytest.approx(rate, rel=0.05)

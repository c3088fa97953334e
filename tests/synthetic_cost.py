"""A known cost model that the fitting and recalibration tests try to recover."""

from fairbatching_sglang.core.cost_model import HingeCostModel

KNOWN_MODEL = HingeCostModel(
    c0_ms=1.9,
    c1_ms_per_token=0.021,
    c3_ms_per_kv_token=4.2e-5,
    c4_ms_per_attn_unit=8.4e-7,
    c5_ms_per_token_below_knee=0.010,
    knee_tokens=448,
    c6_ms_if_prefill=0.8,
    c7_ms_per_token_above_knee2=0.004,
    knee2_tokens=2048,
)

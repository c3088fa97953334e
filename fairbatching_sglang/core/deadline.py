"""Envelope deadlines: output token j of request i is due at a_i + ttft_i + j * tpot_i.

Why not time-between-tokens: TBT is non-monotonic (an early token makes the next gap look late),
so a TBT-driven scheduler never credits a request for being ahead. The envelope does: tokens
produced early bank slack that the scheduler can spend on other work.
"""

from __future__ import annotations

import numpy as np

from fairbatching_sglang.core.slo import SloTargets


def token_deadline_ms(arrival_ms: float, slo: SloTargets, token_index: int) -> float:
    """Deadline of 0-based output token `token_index` (token 0 is the first token: TTFT)."""
    return arrival_ms + slo.ttft_slo_ms + token_index * slo.tpot_slo_ms


def token_slack_ms(now_ms: float, arrival_ms: float, slo: SloTargets, token_index: int) -> float:
    """Time left until that token is due; negative when it is already late."""
    return token_deadline_ms(arrival_ms, slo, token_index) - now_ms


def next_token_slack_ms(
    now_ms: float,
    arrival_ms: np.ndarray,
    ttft_slo_ms: np.ndarray,
    tpot_slo_ms: np.ndarray,
    num_output_tokens: np.ndarray,
) -> np.ndarray:
    """Vectorised slack of each request's next token (index = tokens already produced)."""
    return arrival_ms + ttft_slo_ms + num_output_tokens * tpot_slo_ms - now_ms

"""Named synthetic workloads. Numbers are summary statistics of public traces (no trace data).

conv: Azure LLM inference 2023, conversation (Patel et al., ISCA 2024; CC-BY-4.0): 5.53 req/s,
    near-Poisson (inter-arrival CV 1.09), input p50/p99 1020/4142, output p50/p99 129/601.
code: Azure LLM inference 2023, code: 2.57 req/s in bursts (73% of seconds empty, 1-s peak 26x
    the mean), input p50/p99 1469/7436, output p50/p99 13/251. The on-off parameters are
    `fit_spec` on that trace (bursts ~5.8 s, idle ~18.7 s), with the ON-period CV set to 3 so the
    1-s peak lands near 20-25x the mean and the per-second count CV near 2.3-2.5.
reasoning: long, heavy-tailed outputs (a reasoning model's thinking tokens): output p50 500,
    p90 ~1.9k, p99 ~7.5k, max 30k, the shape of the reasoning workload of issue #13 (outputs p50
    521, max 30k), shorter than ServeGen's deepseek-r1 data (median ~2k: alibaba/ServeGen
    data/reason/deepseek-r1, measured with `trace generate --servegen`); conv's inputs, mildly
    bursty (gamma CV 1.5) at 1 req/s, which at p50 500 is about conv's decode load at x4.
    Numbers chosen, not fitted to a trace.
agent: tool-using agent sessions (sessions.py): 4 shared 2k-token system prompts, ~6 turns per
    session, each re-sending the whole context plus a tool result (p50 300, p99 3k tokens) with
    short answers (p50 120, p99 1.2k), 5 s mean between turns, contexts to 32k; Mooncake-style
    hash ids make the re-sent prefix hit the cache. Numbers chosen to exercise prefix reuse and
    long prompts, not fitted to a trace.
Length knots are the trace's quantiles at `DEFAULT_PROBS`.
"""

from __future__ import annotations

from dataclasses import replace

from fairbatching_sglang.workload.lengths import DEFAULT_PROBS, LognormalLengths, QuantileLengths
from fairbatching_sglang.workload.sessions import SessionSpec, generate_sessions
from fairbatching_sglang.workload.synthetic import SyntheticSpec, generate
from fairbatching_sglang.workload.table import RequestTable

# Quantile knots at DEFAULT_PROBS (p0, p1, p2.5, p5, p10 ... p90, p95, p97.5, p99 ... p100).
_CONV_IN = (2, 29, 120, 181, 207, 387, 403, 703, 1020, 1071, 1130, 1315, 2734.5, 4083, 4092, 4142, 4831, 6179.1, 14050)  # fmt: skip  # noqa: E501
_CONV_OUT = (7, 16, 28, 41, 54, 77, 91, 103, 129, 177, 384, 400, 424, 451, 522, 601, 643.2, 954, 1000)  # fmt: skip  # noqa: E501
_CODE_IN = (3, 17, 44, 75, 147, 385.6, 770, 1075, 1469, 1909, 2433, 3192.4, 5187.6, 7303.3, 7435, 7436, 7436, 7437, 7437)  # fmt: skip  # noqa: E501
_CODE_OUT = (6, 6, 6, 6, 7, 8, 9, 11, 13, 16, 20, 29, 55, 90, 145, 251.5, 359.4, 825.3, 1899)  # fmt: skip  # noqa: E501

CONV = SyntheticSpec(
    name="conv",
    rate_rps=5.53,
    arrival="gamma",
    cv=1.09,
    input_lengths=QuantileLengths(DEFAULT_PROBS, _CONV_IN),
    output_lengths=QuantileLengths(DEFAULT_PROBS, _CONV_OUT),
    length_corr=0.076,
)

CODE = SyntheticSpec(
    name="code",
    rate_rps=2.57,
    arrival="onoff",
    on_mean_s=5.76,
    off_mean_s=18.7,
    on_cv=3.0,
    input_lengths=QuantileLengths(DEFAULT_PROBS, _CODE_IN),
    output_lengths=QuantileLengths(DEFAULT_PROBS, _CODE_OUT),
    length_corr=-0.022,
)

_REASON_OUT = (20, 60, 90, 120, 170, 250, 330, 410, 500, 620, 800, 1100, 1900, 3000, 4500, 7500, 10000, 18000, 30000)  # fmt: skip  # noqa: E501

REASONING = SyntheticSpec(
    name="reasoning",
    rate_rps=1.0,
    arrival="gamma",
    cv=1.5,
    input_lengths=QuantileLengths(DEFAULT_PROBS, _CONV_IN),
    output_lengths=QuantileLengths(DEFAULT_PROBS, _REASON_OUT),
    length_corr=0.1,
)

AGENT = SessionSpec(
    name="agent",
    session_rate_rps=0.25,
    mean_turns=6.0,
    think_s=5.0,
    system_prompt_tokens=2048,
    num_system_prompts=4,
    new_tokens=LognormalLengths.from_p50_p99(300, 3000, max_tokens=8192),
    output_lengths=LognormalLengths.from_p50_p99(120, 1200, max_tokens=4096),
)

PRESETS: dict[str, SyntheticSpec | SessionSpec] = {
    "conv": CONV,
    "code": CODE,
    "reasoning": REASONING,
    "agent": AGENT,
}


def generate_preset(
    name: str,
    duration_s: float,
    *,
    seed: int = 0,
    rate_rps: float | None = None,
    max_context: int | None = None,
) -> RequestTable:
    """A trace of preset `name` (ValueError naming the known presets when unknown)."""
    spec = get_preset(name)
    if rate_rps is not None:
        spec = spec.with_rate(rate_rps)
    if isinstance(spec, SessionSpec):
        if max_context is not None:
            spec = replace(spec, max_context=max_context)
        return generate_sessions(spec, duration_s, seed=seed)
    if max_context is not None:
        spec = replace(spec, max_context=max_context)
    return generate(spec, duration_s, seed=seed)


def get_preset(name: str) -> SyntheticSpec | SessionSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None

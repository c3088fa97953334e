"""Named synthetic workloads. Numbers are summary statistics of public traces (no trace data).

conv: Azure LLM inference 2023, conversation (Patel et al., ISCA 2024; CC-BY-4.0): 5.53 req/s,
    near-Poisson (inter-arrival CV 1.09), input p50/p99 1020/4142, output p50/p99 129/601.
code: Azure LLM inference 2023, code: 2.57 req/s in bursts (73% of seconds empty, 1-s peak 26x
    the mean), input p50/p99 1469/7436, output p50/p99 13/251. The on-off parameters are
    `fit_spec` on that trace (bursts ~5.8 s, idle ~18.7 s), with the ON-period CV set to 3 so the
    1-s peak lands near 20-25x the mean and the per-second count CV near 2.3-2.5.
Length knots are the trace's quantiles at `DEFAULT_PROBS`.
"""

from __future__ import annotations

from fairbatching_sglang.workload.lengths import DEFAULT_PROBS, QuantileLengths
from fairbatching_sglang.workload.synthetic import SyntheticSpec

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

PRESETS: dict[str, SyntheticSpec] = {"conv": CONV, "code": CODE}


def get_preset(name: str) -> SyntheticSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None

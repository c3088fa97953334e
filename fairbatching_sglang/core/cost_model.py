"""Step-time model: predicted duration of one forward step from its shape, and its inverse.

A step's shape is P (prefill tokens), B (decode requests, one token each), S (sum of the decode
requests' KV lengths) and Q (prefill attention work: sum over chunks of c * (k + c / 2) for a
chunk of c new tokens on k cached ones). Measured SGLang H100 kernel data shows a purely linear
form is off by up to 25% around the GEMM knee, so the model adds a hinge below K tokens, a
second hinge above K2 tokens, a fixed cost for steps that hold a prefill and a per-decode-request
cost:

    T = c0 + c1*n + c2*B + c3*S + c4*Q + c5*max(0, K - n) + c7*max(0, n - K2) + c6*[Q > 0]
        + overhead

with n = P + B. The first hinge makes small steps cost more than a line through large ones
would predict (GEMMs are under-filled below K tokens). The second lets the per-token slope
change once more above K2 (the engine's GEMM tables are not one straight line above the knee:
on H200 a single slope is 8% off around 512-1024 tokens and 4% the other way at 4096-8192).
c6 is paid by any step that holds a prefill chunk: the engine's context-attention call has a
fixed cost that decode-only steps do not pay (about 1.4 ms for Qwen3-8B on H100, 0.34 ms for
Llama-3.1-8B). A chunk of c >= 1 tokens always has Q > 0, so "Q > 0" is exactly "the step has
a prefill chunk" and the prices keep their (tokens, S, Q) arguments.
c2 is what a decode row costs beyond its token in n: the engine prices each decode row's logits
row and decode-attention work per request, so a batch of many short-KV decodes costs more than
a prefill chunk of as many tokens (without c2 the fits under-priced 256-1024 decodes of < 128 KV
tokens by 8-14%). B reaches the raw prices as the keyword `num_decode_reqs` (default 0, so a
caller that does not pass it prices as before c2 existed: exact for profiles with c2 = 0).

T is increasing in every argument as long as c1 >= c5 (the constructor checks it; the inverse
relies on it) and every coefficient is >= 0: the slope in n is c1 - c5 (below K) + c7 (above
K2) >= 0, adding a decode adds one to n and to B, and adding a chunk can only add c6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StepShape:
    """What a step contains, in the units the cost model prices.

    num_prefill_chunks: how many prefill chunks make up num_prefill_tokens (0 = not known:
    one when there are prefill tokens). The cost model does not use it; a device model that
    prices attention and logits per chunk (the `engine` device) does."""

    num_prefill_tokens: int = 0
    num_decode_reqs: int = 0
    decode_kv_tokens: int = 0
    prefill_attn_work: float = 0.0
    num_prefill_chunks: int = 0

    def with_chunk(self, num_new_tokens: int, num_cached_tokens: int) -> StepShape:
        return StepShape(
            self.num_prefill_tokens + num_new_tokens,
            self.num_decode_reqs,
            self.decode_kv_tokens,
            self.prefill_attn_work + chunk_attn_work(num_new_tokens, num_cached_tokens),
            max(self.num_prefill_chunks, 1 if self.num_prefill_tokens else 0)
            + (1 if num_new_tokens > 0 else 0),
        )


def chunk_attn_work(num_new_tokens: int, num_cached_tokens: int) -> float:
    """Q contribution of one prefill chunk: c * (k + c / 2)."""
    return num_new_tokens * (num_cached_tokens + num_new_tokens / 2.0)


OPTIONAL_FIELDS = frozenset(
    {
        "overhead_ms",
        "c6_ms_if_prefill",
        "c7_ms_per_token_above_knee2",
        "knee2_tokens",
        "c2_ms_per_decode_req",
    }
)
"""Cost model fields a profile may leave out (they default to 0)."""


@dataclass(frozen=True)
class HingeCostModel:
    """The hinge form above. Coefficients in ms, per token / per KV token / per unit of Q.

    overhead_ms: CPU, launch and sampling time that kernel tables leave out (~0.5-1 ms a step on
    a real engine); calibrated from measured step times when a GPU run exists.
    c6_ms_if_prefill: fixed cost of a step that holds a prefill chunk (Q > 0).
    c7_ms_per_token_above_knee2, knee2_tokens: the second hinge (slope change above K2 tokens).
    c2_ms_per_decode_req: cost of each decode request on top of its token's c1 (module doc).
    The last five fields are optional in profile JSON (0 when absent: no overhead, no prefill
    cost, no second hinge, no per-decode cost) and come last so positional construction still
    works.
    """

    c0_ms: float
    c1_ms_per_token: float
    c3_ms_per_kv_token: float
    c4_ms_per_attn_unit: float
    c5_ms_per_token_below_knee: float
    knee_tokens: float
    overhead_ms: float = 0.0
    c6_ms_if_prefill: float = 0.0
    c7_ms_per_token_above_knee2: float = 0.0
    knee2_tokens: float = 0.0
    c2_ms_per_decode_req: float = 0.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"cost model field {name} must be a finite number >= 0, got {value!r}"
                )
        if self.c1_ms_per_token <= 0:
            raise ValueError("c1_ms_per_token must be > 0 (a token must cost something)")
        if self.c5_ms_per_token_below_knee > self.c1_ms_per_token:
            raise ValueError(
                "c5_ms_per_token_below_knee must be <= c1_ms_per_token, otherwise adding tokens "
                f"below the knee would make a step faster ({self.c5_ms_per_token_below_knee} > "
                f"{self.c1_ms_per_token})"
            )

    @classmethod
    def from_dict(cls, coefficients: Mapping[str, Any]) -> HingeCostModel:
        known = set(cls.__dataclass_fields__)
        unknown = set(coefficients) - known
        if unknown:
            raise ValueError(f"unknown cost model field(s): {', '.join(sorted(unknown))}")
        missing = known - set(coefficients) - OPTIONAL_FIELDS
        if missing:
            raise ValueError(f"missing cost model field(s): {', '.join(sorted(missing))}")
        return cls(**{k: float(v) for k, v in coefficients.items()})

    def to_dict(self) -> dict[str, float]:
        return {f: float(getattr(self, f)) for f in self.__dataclass_fields__}

    def with_overhead(self, overhead_ms: float) -> HingeCostModel:
        return replace(self, overhead_ms=overhead_ms)

    def predict_raw_ms(
        self,
        num_tokens: float,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        *,
        num_decode_reqs: float = 0.0,
    ) -> float:
        """T for a step of num_tokens = P + B tokens, S decode KV tokens, attention work Q and
        B = num_decode_reqs decode requests (Q > 0 exactly when the step holds a prefill chunk,
        which then costs c6 on top). B is part of num_tokens already; it only adds c2*B."""
        if num_tokens <= 0:
            return 0.0  # an empty step is not run at all
        below_knee = self.knee_tokens - num_tokens
        above_knee2 = num_tokens - self.knee2_tokens
        return (
            self.c0_ms
            + self.overhead_ms
            + self.c1_ms_per_token * num_tokens
            + self.c2_ms_per_decode_req * num_decode_reqs
            + self.c3_ms_per_kv_token * decode_kv_tokens
            + self.c4_ms_per_attn_unit * prefill_attn_work
            + (self.c5_ms_per_token_below_knee * below_knee if below_knee > 0 else 0.0)
            + (self.c7_ms_per_token_above_knee2 * above_knee2 if above_knee2 > 0 else 0.0)
            + (self.c6_ms_if_prefill if prefill_attn_work > 0 else 0.0)
        )

    def predict_raw_ms_array(
        self,
        num_tokens: np.ndarray,
        decode_kv_tokens: np.ndarray,
        prefill_attn_work: float,
        *,
        num_decode_reqs: np.ndarray | float = 0.0,
    ) -> np.ndarray:
        """predict_raw_ms for many steps of num_tokens >= 1 sharing one Q: the same terms in the
        same order, so each element equals the scalar price exactly (the policy's decode cut).
        num_decode_reqs: B per step (an array like num_tokens) or one B for all."""
        return (
            self.c0_ms
            + self.overhead_ms
            + self.c1_ms_per_token * num_tokens
            + self.c2_ms_per_decode_req * num_decode_reqs
            + self.c3_ms_per_kv_token * decode_kv_tokens
            + self.c4_ms_per_attn_unit * prefill_attn_work
            + self.c5_ms_per_token_below_knee * np.maximum(0, self.knee_tokens - num_tokens)
            + self.c7_ms_per_token_above_knee2 * np.maximum(0, num_tokens - self.knee2_tokens)
            + (self.c6_ms_if_prefill if prefill_attn_work > 0 else 0.0)
        )

    def predict_ms(self, shape: StepShape) -> float:
        return self.predict_raw_ms(
            shape.num_prefill_tokens + shape.num_decode_reqs,
            shape.decode_kv_tokens,
            shape.prefill_attn_work,
            num_decode_reqs=shape.num_decode_reqs,
        )

    def max_chunk_tokens(
        self,
        budget_ms: float,
        base: StepShape,
        num_cached_tokens: int,
        max_tokens: int,
    ) -> int:
        """Largest chunk c in [0, max_tokens] of new tokens on `num_cached_tokens` cached ones
        such that the step `base` plus that chunk is predicted to take <= budget_ms."""
        return self.max_chunk_tokens_raw(
            budget_ms,
            base.num_prefill_tokens + base.num_decode_reqs,
            base.decode_kv_tokens,
            base.prefill_attn_work,
            num_cached_tokens,
            max_tokens,
            num_decode_reqs=base.num_decode_reqs,
        )

    def max_chunk_tokens_raw(
        self,
        budget_ms: float,
        num_tokens: int,
        decode_kv_tokens: float,
        prefill_attn_work: float,
        num_cached_tokens: int,
        max_tokens: int,
        *,
        num_decode_reqs: float = 0.0,
    ) -> int:
        """max_chunk_tokens on raw step terms (the policy's hot path avoids building shapes).
        num_decode_reqs: B of the base step (its c2*B is a fixed cost: a chunk adds no decode).

        Closed form: the two knees split c >= 0 into at most three intervals; on each, T(c) is
        a quadratic in c, and T is increasing overall, so solve each piece and correct the
        float rounding by at most a step or two. Every chunk c >= 1 has Q > 0, so c6 is part
        of the fixed cost of every c >= 1 (already paid when the base step holds a prefill,
        newly added when it does not; c = 0 is never priced).
        """
        if max_tokens <= 0:
            return 0
        if math.isinf(budget_ms):
            return max_tokens
        n0 = num_tokens
        s0 = decode_kv_tokens
        q0 = prefill_attn_work
        k = num_cached_tokens
        b0 = num_decode_reqs

        def cost(c: int) -> float:
            return self.predict_raw_ms(n0 + c, s0, q0 + c * (k + c / 2.0), num_decode_reqs=b0)

        if cost(max_tokens) <= budget_ms:
            return max_tokens
        if cost(1) > budget_ms:
            return 0
        # Away from the knees: T(c) = fixed + b_lin*c + a*c^2.
        a = self.c4_ms_per_attn_unit / 2.0
        b_lin = self.c1_ms_per_token + self.c4_ms_per_attn_unit * k
        fixed = (
            self.c0_ms
            + self.overhead_ms
            + self.c1_ms_per_token * n0
            + self.c2_ms_per_decode_req * b0
            + self.c3_ms_per_kv_token * s0
            + self.c4_ms_per_attn_unit * q0
            + self.c6_ms_if_prefill
        )
        c5, c7 = self.c5_ms_per_token_below_knee, self.c7_ms_per_token_above_knee2
        knee_c = self.knee_tokens - n0  # chunk size at which the first hinge term vanishes
        knee2_c = self.knee2_tokens - n0  # chunk size above which the second one starts
        edges = sorted({0.0, *(e for e in (knee_c, knee2_c) if e > 0)})
        candidates: list[float] = []
        for lo, hi in zip(edges, [*edges[1:], math.inf], strict=True):
            mid = lo + 1.0 if math.isinf(hi) else (lo + hi) / 2.0
            lin, const = b_lin, fixed
            if mid < knee_c:  # the hinge adds c5*(K - n0 - c)
                lin -= c5
                const += c5 * knee_c
            if mid > knee2_c and c7 > 0:  # the second hinge adds c7*(n0 + c - K2)
                lin += c7
                const -= c7 * knee2_c
            root = _max_root(a, lin, budget_ms - const)
            if root >= lo:  # T is increasing: a root below this interval means none here
                candidates.append(min(root, hi))
        c = int(min(max([*candidates, 0.0]), max_tokens))
        # Float rounding: walk to the exact integer boundary (at most a couple of steps).
        while c > 0 and cost(c) > budget_ms:
            c -= 1
        while c < max_tokens and cost(c + 1) <= budget_ms:
            c += 1
        return c


def _max_root(a: float, b: float, remaining: float) -> float:
    """Largest x >= 0 with a*x^2 + b*x <= remaining (a >= 0, b > 0); -1 when none."""
    if remaining < 0:
        return -1.0
    if a <= 0.0:
        return remaining / b if b > 0 else math.inf
    disc = b * b + 4.0 * a * remaining
    return (-b + math.sqrt(disc)) / (2.0 * a)

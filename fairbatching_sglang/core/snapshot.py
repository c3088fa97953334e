"""What the policy sees: a frozen, column-oriented snapshot of the scheduler at time now_ms.

Columns (numpy arrays) rather than one object per request: the policy must decide in a few
hundred microseconds with hundreds of running and a thousand waiting requests, which per-object
Python loops cannot do. `DecodeRequest` / `PrefillRequest` rows and `SchedulerSnapshot.build`
exist for tests, tools and small callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fairbatching_sglang.core.slo import SloTargets


@dataclass(frozen=True)
class DecodeRequest:
    """One running request between tokens.

    num_output_tokens: tokens already produced (the next one has this 0-based index).
    kv_tokens: current KV length (prompt + output so far): what attention reads this step.
    can_park: False for rows the engine cannot split off safely (e.g. SGLang rows with
        penalizers, logprobs, custom logit processors).
    parked_steps: consecutive steps this row has been parked up to now (0: it ran last step).
    first_token_ms: when its first token came out (None: unknown); used when the policy anchors
        the decode envelope at the first token (FairBatchingConfig.decode_deadline_anchor).
    """

    arrival_ms: float
    slo: SloTargets
    num_output_tokens: int
    kv_tokens: int
    can_park: bool = True
    parked_steps: int = 0
    first_token_ms: float | None = None


@dataclass(frozen=True)
class PrefillRequest:
    """One request with prompt tokens still to prefill.

    num_remaining_tokens: prompt tokens not yet in the KV cache (after prefix-cache hits and
        previous chunks).
    num_cached_tokens: tokens already in KV for it (prefix hit + earlier chunks): the k of Q.
    kv_reserve_tokens: extra KV tokens the engine reserves when it admits the request (SGLang
        reserves part of the future output: new_token_ratio * max_new_tokens).
    is_continuing: a chunked request already in progress; at most one, always served first (SGLang
        keeps one chunked request and continues it before any new one).
    """

    arrival_ms: float
    slo: SloTargets
    num_remaining_tokens: int
    num_cached_tokens: int = 0
    kv_reserve_tokens: int = 0
    is_continuing: bool = False


def _f64(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _i64(values: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


def _unchecked(cls: type, columns: dict[str, np.ndarray]) -> object:
    """An instance of the frozen dataclass `cls` with `columns` set as given: no __post_init__."""
    obj = object.__new__(cls)
    obj.__dict__.update(columns)
    return obj


@dataclass(frozen=True, eq=False)
class DecodeRows:
    arrival_ms: np.ndarray
    ttft_slo_ms: np.ndarray
    tpot_slo_ms: np.ndarray
    num_output_tokens: np.ndarray
    kv_tokens: np.ndarray
    can_park: np.ndarray
    parked_steps: np.ndarray
    first_token_ms: np.ndarray | None = None  # NaN where unknown; None: all unknown

    def __post_init__(self) -> None:
        n = len(self.arrival_ms)
        if self.first_token_ms is None:
            object.__setattr__(self, "first_token_ms", np.full(n, np.nan))
        for name in self.__dataclass_fields__:
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"decode column {name} has {len(getattr(self, name))} rows, not {n}"
                )

    @property
    def num_reqs(self) -> int:
        return len(self.arrival_ms)

    @classmethod
    def trusted(
        cls,
        *,
        arrival_ms: np.ndarray,
        ttft_slo_ms: np.ndarray,
        tpot_slo_ms: np.ndarray,
        num_output_tokens: np.ndarray,
        kv_tokens: np.ndarray,
        can_park: np.ndarray,
        parked_steps: np.ndarray,
        first_token_ms: np.ndarray,
    ) -> DecodeRows:
        """The same rows as the constructor, without its checks: for a caller that built every
        column itself (numpy arrays of one length, first_token_ms included), e.g. the SGLang
        adapter, once per scheduler step. Anything else should use the constructor."""
        return _unchecked(  # type: ignore[return-value]
            cls,
            {
                "arrival_ms": arrival_ms,
                "ttft_slo_ms": ttft_slo_ms,
                "tpot_slo_ms": tpot_slo_ms,
                "num_output_tokens": num_output_tokens,
                "kv_tokens": kv_tokens,
                "can_park": can_park,
                "parked_steps": parked_steps,
                "first_token_ms": first_token_ms,
            },
        )

    @classmethod
    def from_requests(cls, reqs: Sequence[DecodeRequest]) -> DecodeRows:
        return cls(
            arrival_ms=_f64([r.arrival_ms for r in reqs]),
            ttft_slo_ms=_f64([r.slo.ttft_slo_ms for r in reqs]),
            tpot_slo_ms=_f64([r.slo.tpot_slo_ms for r in reqs]),
            num_output_tokens=_i64([r.num_output_tokens for r in reqs]),
            kv_tokens=_i64([r.kv_tokens for r in reqs]),
            can_park=np.array([r.can_park for r in reqs], dtype=bool),
            parked_steps=_i64([r.parked_steps for r in reqs]),
            first_token_ms=_f64(
                [np.nan if r.first_token_ms is None else r.first_token_ms for r in reqs]
            ),
        )


@dataclass(frozen=True, eq=False)
class PrefillRows:
    arrival_ms: np.ndarray
    ttft_slo_ms: np.ndarray
    num_remaining_tokens: np.ndarray
    num_cached_tokens: np.ndarray
    kv_reserve_tokens: np.ndarray
    is_continuing: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.arrival_ms)
        for name in self.__dataclass_fields__:
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"prefill column {name} has {len(getattr(self, name))} rows, not {n}"
                )
        if int(np.count_nonzero(self.is_continuing)) > 1:
            raise ValueError("at most one prefill may be a continuing chunk")
        if n and int(self.num_remaining_tokens.min()) < 1:
            raise ValueError("every waiting prefill needs num_remaining_tokens >= 1")

    @property
    def num_reqs(self) -> int:
        return len(self.arrival_ms)

    @classmethod
    def trusted(
        cls,
        *,
        arrival_ms: np.ndarray,
        ttft_slo_ms: np.ndarray,
        num_remaining_tokens: np.ndarray,
        num_cached_tokens: np.ndarray,
        kv_reserve_tokens: np.ndarray,
        is_continuing: np.ndarray,
    ) -> PrefillRows:
        """The same rows as the constructor, without its checks (see DecodeRows.trusted): the
        caller guarantees equal lengths, at most one continuing row, remaining tokens >= 1."""
        return _unchecked(  # type: ignore[return-value]
            cls,
            {
                "arrival_ms": arrival_ms,
                "ttft_slo_ms": ttft_slo_ms,
                "num_remaining_tokens": num_remaining_tokens,
                "num_cached_tokens": num_cached_tokens,
                "kv_reserve_tokens": kv_reserve_tokens,
                "is_continuing": is_continuing,
            },
        )

    @classmethod
    def from_requests(cls, reqs: Sequence[PrefillRequest]) -> PrefillRows:
        return cls(
            arrival_ms=_f64([r.arrival_ms for r in reqs]),
            ttft_slo_ms=_f64([r.slo.ttft_slo_ms for r in reqs]),
            num_remaining_tokens=_i64([r.num_remaining_tokens for r in reqs]),
            num_cached_tokens=_i64([r.num_cached_tokens for r in reqs]),
            kv_reserve_tokens=_i64([r.kv_reserve_tokens for r in reqs]),
            is_continuing=np.array([r.is_continuing for r in reqs], dtype=bool),
        )


@dataclass(frozen=True, eq=False)
class SchedulerSnapshot:
    """Everything one decision needs. Time comes in as now_ms; nothing here reads a clock.

    max_num_batched_tokens: tokens a step may carry (prefill tokens + one per decode).
    max_prefill_tokens: prefill tokens a step may carry (SGLang's chunked_prefill_size).
    kv_free_tokens: KV slots free now (free + evictable): one per decode run and c per prefill
        chunk come out of it. Decodes that do not fit it cannot run (the engine retracts).
    kv_admission_tokens: KV room for admitting prefill once the running requests' future tokens
        (this step's included) are reserved, i.e. SGLang's PrefillAdder rem_total_tokens less
        the decode tokens it charges: a chunk costs c plus its request's kv_reserve_tokens.
        None: the same as kv_free_tokens. Decodes never wait on it (running requests already
        hold their reservation), so a spent reservation blocks admission, never a decode.
    max_new_prefills: how many not-yet-started requests may be admitted (running-request limit);
        None for no limit. A continuing chunk does not count.
    """

    now_ms: float
    decodes: DecodeRows
    prefills: PrefillRows
    max_num_batched_tokens: int
    max_prefill_tokens: int
    kv_free_tokens: int
    max_new_prefills: int | None = None
    kv_admission_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_num_batched_tokens", "max_prefill_tokens", "kv_free_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_new_prefills is not None and self.max_new_prefills < 0:
            raise ValueError("max_new_prefills must be >= 0 when set")
        if self.kv_admission_tokens is not None and self.kv_admission_tokens < 0:
            raise ValueError("kv_admission_tokens must be >= 0 when set")

    @property
    def admission_room_tokens(self) -> int:
        adm = self.kv_admission_tokens
        return self.kv_free_tokens if adm is None else adm

    @classmethod
    def build(
        cls,
        now_ms: float,
        decodes: Sequence[DecodeRequest] = (),
        prefills: Sequence[PrefillRequest] = (),
        *,
        max_num_batched_tokens: int,
        max_prefill_tokens: int,
        kv_free_tokens: int,
        max_new_prefills: int | None = None,
        kv_admission_tokens: int | None = None,
    ) -> SchedulerSnapshot:
        return cls(
            now_ms=float(now_ms),
            decodes=DecodeRows.from_requests(decodes),
            prefills=PrefillRows.from_requests(prefills),
            max_num_batched_tokens=max_num_batched_tokens,
            max_prefill_tokens=max_prefill_tokens,
            kv_free_tokens=kv_free_tokens,
            max_new_prefills=max_new_prefills,
            kv_admission_tokens=kv_admission_tokens,
        )

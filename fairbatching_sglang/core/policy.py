"""FairBatching batch formation: adaptive time budget, then three EDF groups filled greedily.

1. urgent decodes (would miss their deadline if skipped this step) - always run;
2. prefills: the continuing chunk first, then new requests by TTFT slack, chunked to the time left;
3. decodes ahead of their envelope, by slack, while the predicted step time stays in budget.
Group-3 decodes that do not fit are parked for this step: that is the compute FairBatching
reclaims from decodes that banked slack, to serve prefill surges.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from fairbatching_sglang.core.config import FairBatchingConfig
from fairbatching_sglang.core.cost_model import HingeCostModel, chunk_attn_work
from fairbatching_sglang.core.deadline import next_token_slack_ms
from fairbatching_sglang.core.decision import BatchDecision, PrefillChunk
from fairbatching_sglang.core.snapshot import SchedulerSnapshot

_EMPTY: tuple[int, ...] = ()
_NO_ROWS = np.empty(0, dtype=np.int64)
_NO_ROWS.flags.writeable = False


@functools.lru_cache(maxsize=8)
def _all_rows(n: int) -> tuple[int, ...]:
    """(0, ..., n-1), made once per batch size (the run list of most steps)."""
    return tuple(range(n))


@dataclass(frozen=True)
class FairBatchingPolicy:
    cost_model: HingeCostModel
    config: FairBatchingConfig = field(default_factory=FairBatchingConfig)

    def decide(self, snap: SchedulerSnapshot) -> BatchDecision:
        cfg = self.config
        cm = self.cost_model
        dec = snap.decodes
        num_decodes = dec.num_reqs
        tok_room = snap.max_num_batched_tokens
        kv_room = snap.kv_free_tokens  # what this step's tokens occupy
        adm_room = snap.admission_room_tokens  # what admitting prefill may reserve
        pre = snap.prefills
        # Python ints (one tolist, then .item() reads): cheaper than numpy scalars per row.
        prefill_rows = prefill_order(snap, cfg).tolist() if pre.num_reqs else []
        first_prefill = prefill_rows[0] if prefill_rows else -1

        # --- Budget and urgency ------------------------------------------------------------
        if num_decodes:
            slack = decode_slack_ms(snap, cfg)
            floor_ms = cfg.budget_floor_tpot_fraction * float(dec.tpot_slo_ms.min())
            budget = max(float(slack.min()), floor_ms)
        else:
            slack = np.empty(0)
            floor_ms = 0.0
            budget = math.inf
        if cfg.max_step_budget_ms is not None:
            budget = min(budget, cfg.max_step_budget_ms)

        # Forced prefill progress (anti-starvation) is part of the mandatory work.
        forced_chunk = 0
        forced_cached = 0
        if cfg.guarantee_prefill_progress and first_prefill >= 0:
            forced_chunk, forced_cached = self._forced_chunk(snap, first_prefill)

        if num_decodes:
            kv = dec.kv_tokens
            kv_total = int(kv.sum())
            guard = (
                cfg.park_guard_factor
                * max(
                    floor_ms,
                    cm.predict_raw_ms(
                        num_decodes, float(kv_total), 0.0, num_decode_reqs=num_decodes
                    ),
                )
                + cfg.urgency_margin_ms
            )
            if cfg.enable_parking:
                forced = ~dec.can_park
                if cfg.max_consecutive_parked_steps is not None:
                    forced = forced | (dec.parked_steps >= cfg.max_consecutive_parked_steps)
            else:
                forced = np.ones(num_decodes, dtype=bool)
            # Raise the budget until it covers the mandatory set; raising it can only make more
            # decodes urgent, so this reaches a fixed point in at most num_decodes rounds.
            while True:
                urgent = forced | (slack < budget + guard)
                num_urgent = int(np.count_nonzero(urgent))
                urgent_kv = kv_total if num_urgent == num_decodes else int(kv[urgent].sum())
                mandatory_ms = cm.predict_raw_ms(
                    num_urgent + forced_chunk,
                    float(urgent_kv),
                    chunk_attn_work(forced_chunk, forced_cached),
                    num_decode_reqs=num_urgent,
                )
                if mandatory_ms <= budget:
                    break
                budget = mandatory_ms
            num_fit = min(num_urgent, tok_room, kv_room)
            if num_fit == num_decodes:
                # Every decode is urgent and fits: all run, and their slack order is not needed.
                run_parts = []  # all rows (see num_run)
                unserved = ahead_sorted = _NO_ROWS
            else:
                order = slack.argsort(kind="stable")
                urgent_in_order = urgent[order]
                urgent_sorted = order[urgent_in_order]
                ahead_sorted = order[~urgent_in_order]
                run_parts = [urgent_sorted[:num_fit]]
                unserved = urgent_sorted[num_fit:]
            num_tokens = num_run = num_fit
            decode_kv = (
                urgent_kv if num_fit == num_urgent else int(kv[urgent_sorted[:num_fit]].sum())
            )
        else:
            ahead_sorted = unserved = _NO_ROWS
            run_parts = []
            num_urgent = 0
            num_tokens = num_run = 0
            decode_kv = 0
        kv_used = num_tokens  # one KV slot per decode token
        adm_used = 0  # admitted chunks and their requests' reserves (decodes hold their own)

        # --- Prefills ----------------------------------------------------------------------
        chunks: list[PrefillChunk] = []
        num_prefill_tokens = 0
        attn_work = 0.0
        if pre.num_reqs and not len(unserved):
            new_left = snap.max_new_prefills if snap.max_new_prefills is not None else pre.num_reqs
            for i in prefill_rows:
                continuing = pre.is_continuing.item(i)
                if not continuing and new_left <= 0:
                    break
                remaining = pre.num_remaining_tokens.item(i)
                reserve = pre.kv_reserve_tokens.item(i)
                # Admission as SGLang's PrefillAdder does it (managers/schedule_policy.py):
                if continuing:
                    # add_chunked_req (:1207-1218): its output reserve is charged with its last
                    # chunk, unchecked; available_chunk_tokens (mem_cache/prefill_budget.py:
                    # 142-145) caps the chunk by rem_total_tokens while positive, else lets it
                    # progress up to the physical KV (stalling it would hold its KV while the
                    # decodes eat the rest).
                    adm_left = adm_room - adm_used
                    if adm_left <= 0:
                        adm_left = kv_room
                else:
                    # A new request only when its whole remaining prompt and its reserve fit
                    # (:1406-1411, NO_TOKEN ends the scan); admitting cut chunks past that
                    # overcommitted the KV (3-5x stock mixed's retractions without ignore_eos).
                    adm_left = adm_room - adm_used - reserve
                    if remaining > adm_left:
                        break
                cap = min(
                    remaining,
                    snap.max_prefill_tokens - num_prefill_tokens,
                    tok_room - num_tokens,
                    kv_room - kv_used,
                    adm_left,
                )
                if cap <= 0:
                    break
                cached = pre.num_cached_tokens.item(i)
                if i == first_prefill and forced_chunk:
                    # Its forced share was priced into the budget; never give it less.
                    c = max(
                        min(forced_chunk, cap),
                        self._chunk_within(
                            budget, num_tokens, decode_kv, attn_work, cached, cap, num_run
                        ),
                    )
                else:
                    c = self._chunk_within(
                        budget, num_tokens, decode_kv, attn_work, cached, cap, num_run
                    )
                    if c < min(remaining, cfg.min_chunk_tokens):
                        break
                if c <= 0:
                    break
                completes = c == remaining
                chunks.append(PrefillChunk(i, c, completes))
                num_prefill_tokens += c
                num_tokens += c
                kv_used += c
                adm_used += c + (reserve if completes else 0)
                attn_work += chunk_attn_work(c, cached)
                if not continuing:
                    new_left -= 1
                if not completes:
                    break  # SGLang keeps a single chunked request: a partial chunk ends the step
                if cfg.protect_prefill_ttft:
                    ttft_slack = (
                        pre.arrival_ms.item(i) + pre.ttft_slo_ms.item(i) * cfg.deadline_headroom
                    ) - snap.now_ms
                    step_ms = cm.predict_raw_ms(
                        num_tokens, decode_kv, attn_work, num_decode_reqs=num_run
                    )
                    if ttft_slack >= step_ms:
                        budget = min(budget, max(ttft_slack, floor_ms))

        # --- Decodes ahead of their envelope -----------------------------------------------
        parked = _EMPTY
        if len(ahead_sorted):
            room = min(tok_room - num_tokens, kv_room - kv_used)
            if not chunks:
                # Parking only pays for prefill; with none in the step every decode that fits runs.
                num_take = min(len(ahead_sorted), room)
            else:
                cum_tokens = num_tokens + np.arange(1, len(ahead_sorted) + 1)
                cum_kv = decode_kv + np.cumsum(dec.kv_tokens[ahead_sorted])
                step_ms = cm.predict_raw_ms_array(
                    cum_tokens, cum_kv, attn_work, num_decode_reqs=cum_tokens - num_prefill_tokens
                )
                # Step time rises with every decode added (c1 >= c5), so the prefix is a cut.
                num_take = min(int(np.searchsorted(step_ms, budget, side="right")), room)
            num_take = max(num_take, 0)
            taken = ahead_sorted[:num_take]
            run_parts.append(taken)
            num_tokens += num_take
            num_run += num_take
            kv_used += num_take
            decode_kv += int(dec.kv_tokens[taken].sum())
            parked = tuple(sorted(ahead_sorted[num_take:].tolist()))

        # run_parts hold distinct rows; when all rows run they sort to range(num_decodes).
        if num_run == num_decodes:
            run_rows = _all_rows(num_decodes)
        else:
            run_rows = tuple(sorted(np.concatenate(run_parts).tolist()))
        return BatchDecision(
            run_decode_indices=run_rows,
            parked_decode_indices=parked,
            unserved_decode_indices=tuple(sorted(unserved.tolist())) if len(unserved) else _EMPTY,
            prefill_chunks=tuple(chunks),
            budget_ms=budget,
            predicted_step_ms=cm.predict_raw_ms(
                num_tokens, decode_kv, attn_work, num_decode_reqs=num_run
            ),
            num_prefill_tokens=num_prefill_tokens,
            num_batched_tokens=num_tokens,
            kv_tokens_used=kv_used + adm_used - num_prefill_tokens,
            num_urgent_decodes=num_urgent,
        )

    # ------------------------------------------------------------------------------------------
    def _chunk_within(
        self,
        budget: float,
        num_tokens: int,
        decode_kv: int,
        attn_work: float,
        cached: int,
        cap: int,
        num_decodes: int,
    ) -> int:
        return self.cost_model.max_chunk_tokens_raw(
            budget,
            num_tokens,
            float(decode_kv),
            attn_work,
            cached,
            cap,
            num_decode_reqs=num_decodes,
        )

    def _forced_chunk(self, snap: SchedulerSnapshot, i: int) -> tuple[int, int]:
        """(tokens, cached) of the guaranteed progress for prefill i, within the caps."""
        pre = snap.prefills
        if not bool(pre.is_continuing[i]) and snap.max_new_prefills == 0:
            return 0, 0
        # Caps are checked against an empty step: decodes may take the room, see decide().
        c = min(
            int(pre.num_remaining_tokens[i]),
            self.config.min_chunk_tokens,
            snap.max_prefill_tokens,
            snap.max_num_batched_tokens,
            snap.kv_free_tokens,
            snap.admission_room_tokens - int(pre.kv_reserve_tokens[i]),
        )
        return (c, int(pre.num_cached_tokens[i])) if c > 0 else (0, 0)


def decode_slack_ms(snap: SchedulerSnapshot, config: FairBatchingConfig) -> np.ndarray:
    """Slack of each running decode's next token under the configured envelope anchor."""
    dec = snap.decodes
    h = config.deadline_headroom
    ttft = dec.ttft_slo_ms * h if h != 1.0 else dec.ttft_slo_ms
    tpot = dec.tpot_slo_ms * h if h != 1.0 else dec.tpot_slo_ms
    if config.decode_deadline_anchor != "first_token":
        return next_token_slack_ms(snap.now_ms, dec.arrival_ms, ttft, tpot, dec.num_output_tokens)
    # next_token_slack_ms's arithmetic, in its order, keeping arrival + ttft for the shift.
    base = dec.arrival_ms + ttft
    slack = base + dec.num_output_tokens * tpot - snap.now_ms
    first = dec.first_token_ms
    # Token j is due at first_token + j * tpot instead of arrival + ttft + j * tpot.
    return np.where(np.isnan(first), slack, slack + (first - base))


def prefill_ttft_slack_ms(snap: SchedulerSnapshot, config: FairBatchingConfig) -> np.ndarray:
    pre = snap.prefills
    return pre.arrival_ms + pre.ttft_slo_ms * config.deadline_headroom - snap.now_ms


def prefill_order(snap: SchedulerSnapshot, config: FairBatchingConfig) -> np.ndarray:
    """Continuing chunk first, then new requests by TTFT slack (stable on queue order)."""
    pre = snap.prefills
    ttft_slack = prefill_ttft_slack_ms(snap, config)
    if config.late_prefill_order == "deprioritize":
        # Meetable ones first by slack, then late ones by slack; a late one past the deferral
        # bound rejoins the first group, where its (most negative) slack puts it first.
        deferred = ttft_slack < 0
        bound = config.late_prefill_max_defer_slo
        if bound is not None:
            deferred &= ttft_slack >= -bound * pre.ttft_slo_ms
        return np.lexsort((ttft_slack, deferred, ~pre.is_continuing))
    return np.lexsort((ttft_slack, ~pre.is_continuing))

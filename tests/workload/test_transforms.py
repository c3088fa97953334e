"""Each transformation: what it preserves, what it changes, and that it records itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairbatching_sglang.workload import (
    RequestTable,
    clip_lengths,
    retime,
    scale_rate,
    spread_buckets,
    time_window,
)


def _table(arrivals, n_in=None, n_out=None, **kw) -> RequestTable:
    n = len(arrivals)
    return RequestTable.from_arrays(
        arrivals,
        n_in if n_in is not None else [100] * n,
        n_out if n_out is not None else [10] * n,
        **kw,
    )


sorted_times = st.lists(
    st.floats(0, 1e4, allow_nan=False, allow_infinity=False), min_size=3, max_size=60
).map(sorted)


@settings(max_examples=60, deadline=None)
@given(sorted_times, st.floats(0.1, 50))
def test_scale_rate_preserves_gap_ratios(times, factor):
    t = _table(times)
    s = scale_rate(t, factor)
    np.testing.assert_allclose(s.arrival_s * factor, t.arrival_s, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.diff(s.arrival_s), np.diff(t.arrival_s) / factor, atol=1e-9)
    assert s.transformations[-1] == f"scale_rate factor={factor:g}"
    assert t.transformations == ()  # the input is untouched


def test_scale_rate_rejects_bad_factor():
    with pytest.raises(ValueError):
        scale_rate(_table([0, 1, 2]), 0)


def test_time_window():
    t = _table([0.0, 1.0, 2.0, 3.0, 4.0])
    w = time_window(t, 1.0, 2.0)
    assert w.arrival_s.tolist() == [0.0, 1.0]
    assert time_window(t, 1.0, 2.0, rebase=False).arrival_s.tolist() == [1.0, 2.0]
    assert time_window(t, 3.0).arrival_s.tolist() == [0.0, 1.0]


def test_clip_lengths():
    t = _table(
        [0, 1, 2, 3],
        [100, 5000, 8000, 10],
        [50, 4000, 10, 3000],
        hash_ids=[[1], list(range(10)), list(range(16)), [1]],
    )
    c = clip_lengths(t, max_context=8192, max_output=2048)
    inp, out = c.input_tokens, c.output_tokens
    assert np.all(inp + out <= 8192) and np.all(out <= 2048) and np.all(out >= 1)
    assert inp.tolist() == [100, 5000, 8000, 10]  # prompts that fit are kept whole
    assert out.tolist() == [50, 2048, 10, 2048]
    small = clip_lengths(t, max_context=4096)
    assert small.input_tokens.tolist()[2] == 4095 and small.output_tokens.tolist()[2] == 1
    assert len(small.hash_ids[2]) == 8  # ceil(4095 / 512) blocks kept
    d = clip_lengths(t, max_context=8192, max_output=2048, mode="drop")
    assert d.input_tokens.tolist() == [100, 8000]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=2, max_size=80), st.integers(0, 2**31))
def test_spread_stays_inside_buckets(buckets, seed):
    bucket_s = 3.0
    t = _table(sorted(b * bucket_s for b in buckets))
    s = spread_buckets(t, bucket_s, seed=seed)
    before = np.floor(t.arrival_s / bucket_s)
    after = np.floor(s.arrival_s / bucket_s)
    assert np.array_equal(before, after)
    assert np.all(np.diff(s.arrival_s) >= 0)  # order of requests kept
    assert np.array_equal(spread_buckets(t, bucket_s, seed=seed).arrival_s, s.arrival_s)


def test_spread_breaks_up_a_bucket():
    t = _table([3.0] * 100)
    s = spread_buckets(t, 3.0, seed=1)
    assert s.arrival_s.min() >= 3.0 and s.arrival_s.max() < 6.0
    assert np.unique(s.arrival_s).size == 100


@pytest.mark.parametrize(("process", "cv"), [("poisson", 1.0), ("gamma", 0.5), ("gamma", 3.0)])
def test_retime_reaches_cv_and_keeps_rate(process, cv):
    rng = np.random.default_rng(0)
    t = _table(np.sort(rng.uniform(0, 2000, 50_000)), rng.integers(1, 999, 50_000))
    r = retime(t, process, cv=cv, seed=7)
    gaps = np.diff(r.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)
    assert r.mean_rate_rps == pytest.approx(t.mean_rate_rps, rel=1e-9)
    assert r.arrival_s[0] == t.arrival_s[0]
    assert np.array_equal(r.input_tokens, t.input_tokens)
    assert "retime" in r.transformations[-1]

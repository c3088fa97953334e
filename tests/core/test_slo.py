from __future__ import annotations

import pytest

from fairbatching_sglang.core import SloTable, SloTargets, token_deadline_ms


def test_envelope_deadline() -> None:
    slo = SloTargets(500.0, 20.0)
    assert token_deadline_ms(1000.0, slo, 0) == 1500.0
    assert token_deadline_ms(1000.0, slo, 10) == 1700.0


def test_resolution_order_override_class_default() -> None:
    table = SloTable(SloTargets(1000, 50), {"batch": SloTargets(10_000, 200)})
    assert table.resolve() == SloTargets(1000, 50)
    assert table.resolve("batch") == SloTargets(10_000, 200)
    assert table.resolve("batch", tpot_slo_ms=100) == SloTargets(10_000, 100)
    assert table.resolve(None, ttft_slo_ms=300) == SloTargets(300, 50)
    with pytest.raises(KeyError, match="unknown SLO class 'bach'"):
        table.resolve("bach")


@pytest.mark.parametrize(("ttft", "tpot"), [(0, 50), (100, -1), (float("nan"), 50)])
def test_targets_must_be_positive(ttft: float, tpot: float) -> None:
    with pytest.raises(ValueError):
        SloTargets(ttft, tpot)

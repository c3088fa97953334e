"""The emulator's environment settings (no server): the test-only policy fault injection."""

from __future__ import annotations

import pytest

from fairbatching_sglang.emulator.settings import ENV_DEVICE, ENV_POLICY_FAULT, EmulatorSettings


def test_policy_fault_is_off_unless_set() -> None:
    assert EmulatorSettings.from_env({ENV_DEVICE: "profile"}).policy_fault_every is None
    settings = EmulatorSettings.from_env({ENV_DEVICE: "profile", ENV_POLICY_FAULT: " 7 "})
    assert settings.policy_fault_every == 7
    assert "policy fault every 7" in settings.describe()


@pytest.mark.parametrize("raw", ["0", "-3", "x", "1.5"])
def test_bad_policy_fault_names_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=ENV_POLICY_FAULT):
        EmulatorSettings.from_env({ENV_DEVICE: "profile", ENV_POLICY_FAULT: raw})


def test_policy_fault_raises_every_nth_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    from fairbatching_sglang.core.policy import FairBatchingPolicy
    from fairbatching_sglang.emulator import fault

    calls: list[int] = []
    monkeypatch.setattr(FairBatchingPolicy, "decide", lambda self, snap: calls.append(snap))
    fault.install_policy_fault(3)
    fault.install_policy_fault(3)  # a second install does not wrap twice
    policy = object.__new__(FairBatchingPolicy)
    outcomes = []
    for k in range(1, 10):
        try:
            policy.decide(k)
            outcomes.append("ok")
        except fault.InjectedPolicyFault as exc:
            assert f"decision {k}, every 3" in str(exc)
            outcomes.append("raised")
    assert outcomes == ["ok", "ok", "raised"] * 3
    assert calls == [1, 2, 4, 5, 7, 8]

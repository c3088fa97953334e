"""Flags parse, reach ServerArgs / the schedule config, validate, and show in --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sglang
pytest.importorskip("sglang")

from cpu_harness import publish_config  # noqa: E402

from fairbatching_sglang.sglang_adapter.settings import (  # noqa: E402
    FairBatchingArgsError,
    FairBatchingSettings,
    check_fairbatching_args,
)

FLAGS = [
    "--enable-fairbatching",
    "--fairbatching-ttft-slo-ms",
    "--fairbatching-tpot-slo-ms",
    "--fairbatching-profile",
    "--fairbatching-step-log",
    "--fairbatching-config",
    "--fairbatching-overhead-ms",
]


def test_cli_parses_into_server_args(tmp_path: Path) -> None:
    import argparse

    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    ns = parser.parse_args(
        [
            "--model-path",
            str(tmp_path),
            "--enable-fairbatching",
            "--fairbatching-ttft-slo-ms",
            "750",
            "--fairbatching-tpot-slo-ms",
            "40",
            "--fairbatching-config",
            '{"enable_parking": false}',
            "--fairbatching-step-log",
            "s.jsonl",
        ]
    )
    args = ServerArgs.from_cli_args(ns)
    assert args.enable_fairbatching is True
    settings = FairBatchingSettings.from_server_args(args)
    assert (settings.ttft_slo_ms, settings.tpot_slo_ms) == (750.0, 40.0)
    assert settings.policy_config().enable_parking is False
    assert settings.step_log == "s.jsonl"


def test_flags_reach_schedule_namespace(tmp_path: Path) -> None:
    from sglang.srt.runtime_context import get_schedule

    publish_config(
        tmp_path / "m",
        chunked_prefill_size=256,
        enable_fairbatching=True,
        fairbatching_tpot_slo_ms=33.0,
    )
    sched = get_schedule()
    assert sched.enable_fairbatching is True
    assert sched.fairbatching_tpot_slo_ms == 33.0
    assert sched.fairbatching_profile == "h100-llama3.1-8b"


def test_help_lists_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ).stdout
    for flag in FLAGS:
        assert flag in out


class _Args:
    def __init__(self, **kw: object) -> None:
        base = dict(
            chunked_prefill_size=8192,
            speculative_algorithm=None,
            pp_size=1,
            disaggregation_mode="null",
            enable_pdmux=False,
            enable_dp_attention=False,
            dllm_algorithm=None,
            enable_priority_scheduling=False,
            enable_dynamic_chunking=False,
            enable_prefill_delayer=False,
            enable_hisparse=False,
            is_embedding=False,
            fairbatching_ttft_slo_ms=1000.0,
            fairbatching_tpot_slo_ms=50.0,
            fairbatching_profile="h100-llama3.1-8b",
            fairbatching_step_log=None,
            fairbatching_config=None,
            fairbatching_overhead_ms=None,
        )
        base.update(kw)
        self.__dict__.update(base)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"chunked_prefill_size": -1}, "needs chunked prefill"),
        ({"speculative_algorithm": "EAGLE"}, "speculative decoding"),
        ({"pp_size": 2}, "pipeline parallelism"),
        ({"disaggregation_mode": "prefill"}, "PD disaggregation"),
        ({"enable_dp_attention": True}, "DP attention"),
        ({"fairbatching_tpot_slo_ms": 0.0}, "tpot_slo_ms"),
        ({"fairbatching_profile": "no-such-profile"}, "unknown profile"),
        ({"fairbatching_config": '{"bogus": 1}'}, "unknown key"),
    ],
)
def test_validation_refuses(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(FairBatchingArgsError, match=needle):
        check_fairbatching_args(_Args(**kw))


def test_validation_accepts_defaults() -> None:
    assert check_fairbatching_args(_Args()).tpot_slo_ms == 50.0


def test_check_server_args_calls_validation(tmp_path: Path) -> None:
    import json

    from cpu_harness import TINY_LLAMA
    from sglang.srt.server_args import ServerArgs

    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA))
    args = ServerArgs(
        model_path=str(tmp_path),
        device="cpu",
        skip_tokenizer_init=True,
        enable_fairbatching=True,
        chunked_prefill_size=-1,
    )
    args.resolve_once()
    with pytest.raises(FairBatchingArgsError, match="chunked prefill"):
        args.check_server_args()

"""Step-log reading: good logs round-trip, bad lines name file, line and field."""

from __future__ import annotations

import json

import pytest

from fairbatching_sglang.profiles.step_log import (
    StepLogError,
    StepRecord,
    read_step_log,
    records_to_samples,
    write_step_log,
)

GOOD = {
    "num_prefill_tokens": 512,
    "num_decode_reqs": 8,
    "decode_kv_tokens": 8000,
    "prefill_attn_work": 131072.0,
    "measured_ms": 14.2,
}


def test_round_trip(tmp_path):
    path = tmp_path / "steps.jsonl"
    recs = [StepRecord(**GOOD, predicted_ms=13.9, time_s=1.5, extra={"batch_id": 3})]
    write_step_log(path, recs)
    back = read_step_log(path)
    assert back == recs and back[0].extra == {"batch_id": 3}
    samples = records_to_samples(back)
    assert samples.num_tokens[0] == 520 and samples.step_ms[0] == 14.2


def test_comments_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text("# header\n\n" + json.dumps(GOOD) + "\n")
    assert len(read_step_log(path)) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "measured_ms"}), "'measured_ms'"),
        (json.dumps({**GOOD, "num_decode_reqs": -1}), "field 'num_decode_reqs' must be an int"),
        (json.dumps({**GOOD, "num_prefill_tokens": 1.5}), "field 'num_prefill_tokens'"),
        (json.dumps({**GOOD, "measured_ms": 0}), "field 'measured_ms' must be > 0"),
        (json.dumps({**GOOD, "prefill_attn_work": "x"}), "field 'prefill_attn_work'"),
        (json.dumps({**GOOD, "predicted_ms": -2}), "field 'predicted_ms'"),
        (
            json.dumps({**GOOD, "num_prefill_tokens": 0, "num_decode_reqs": 0}),
            "an empty step",
        ),
    ],
)
def test_bad_lines_name_file_line_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(StepLogError) as err:
        read_step_log(path)
    assert str(path) in str(err.value)
    assert f"{path}: line 2:" in str(err.value)
    assert message in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(StepLogError, match="not found"):
        read_step_log(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(StepLogError, match="no steps"):
        read_step_log(empty)


def test_unmeasured_lines_are_skipped(tmp_path) -> None:
    # The patched server writes measured_ms null for a step followed by an idle period.
    from fairbatching_sglang.profiles.step_log import read_step_log

    p = tmp_path / "s.jsonl"
    p.write_text(
        '{"num_prefill_tokens": 10, "num_decode_reqs": 1, "decode_kv_tokens": 5, '
        '"prefill_attn_work": 50.0, "measured_ms": 3.5}\n'
        '{"num_prefill_tokens": 0, "num_decode_reqs": 2, "decode_kv_tokens": 9, '
        '"prefill_attn_work": 0.0, "measured_ms": null}\n'
    )
    recs = read_step_log(p)
    assert [r.measured_ms for r in recs] == [3.5]

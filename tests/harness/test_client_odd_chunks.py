"""Odd SSE chunks and client bugs end one request's record, never the replay (issue #14.3)."""

from __future__ import annotations

import numpy as np
import pytest

from fairbatching_sglang.core import SloTable, SloTargets
from fairbatching_sglang.harness import client as client_mod
from fairbatching_sglang.harness.client import ClientConfig, replay
from fairbatching_sglang.harness.sse import BadChunk, parse_chunk
from fairbatching_sglang.workload import RequestTable
from tests.harness.fake_server import FakeServer

SLO = SloTable(SloTargets(1000.0, 50.0))
ODD = [
    "5",
    "null",
    "[1]",
    '"text"',
    '{"meta_info": "x"}',
    '{"meta_info": [1]}',
    '{"meta_info": {"completion_tokens": {}}}',
    '{"meta_info": {"completion_tokens": Infinity}}',
    '{"meta_info": {"completion_tokens": NaN}}',
    '{"meta_info": {"completion_tokens": 1e15}}',
    '{"meta_info": {"completion_tokens": 2.5}}',
    '{"meta_info": {"completion_tokens": true}}',
    '{"meta_info": {"completion_tokens": 1, "cached_tokens": "many"}}',
    "{not json",
]


def _table(n: int, inp: list[int]) -> RequestTable:
    return RequestTable.from_arrays(np.linspace(0.0, 0.1, n), inp, [3] * n, source="t")


@pytest.mark.parametrize("data", ODD)
def test_parse_chunk_rejects(data: str) -> None:
    with pytest.raises(BadChunk):
        parse_chunk(data, expected_tokens=3, input_tokens=8)


def test_parse_chunk_accepts() -> None:
    c = parse_chunk('{"meta_info": {"completion_tokens": 2.0, "cached_tokens": 4}}', 3, 8)
    assert (c.completion_tokens, c.cached_tokens, c.error) == (2, 4, None)
    assert parse_chunk('{"text": "x", "meta_info": null}', 3, 8) == parse_chunk("{}", 3, 8)
    assert parse_chunk('{"error": {"message": "boom"}}', 3, 8).error == "{'message': 'boom'}"


def test_odd_chunks_fail_only_their_request() -> None:
    # Request i (input length 100 + i) gets ODD[i]; the requests of length 8 are served well.
    inp = [8] * 4 + [100 + i for i in range(len(ODD))]
    table = _table(len(inp), inp)

    def behavior(body: dict) -> str:
        n = len(body["input_ids"])
        return "ok" if n == 8 else "raw:" + ODD[n - 100]

    with FakeServer(behavior) as srv:
        res = replay(table, SLO, ClientConfig(base_url=srv.base_url, request_timeout_s=5.0))
    rec = res.records.set_index("rid")
    assert res.counts() == {"ok": 4, "failed": len(ODD), "timeout": 0}
    odd = rec[rec["input_tokens"] >= 100]
    assert odd["error"].str.startswith("bad chunk").all(), odd["error"].tolist()
    assert (rec.loc[rec["input_tokens"] == 8, "status"] == "ok").all()


def test_client_bug_in_one_request_keeps_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = client_mod._Replay._one_unguarded

    async def flaky(self: client_mod._Replay, i: int) -> None:
        if i == 2:
            raise KeyError("a bug")
        await orig(self, i)

    monkeypatch.setattr(client_mod._Replay, "_one_unguarded", flaky)
    with FakeServer() as srv:
        res = replay(_table(5, [8] * 5), SLO, ClientConfig(base_url=srv.base_url))
    assert res.counts() == {"ok": 4, "failed": 1, "timeout": 0}
    assert "KeyError" in res.records.set_index("rid").loc[2, "error"]


def test_replay_abort_keeps_finished_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scheduling loop dies after 3 requests: those keep their records, the rest fail.
    real_create = client_mod.asyncio.create_task
    made = []

    def create_task(coro):  # type: ignore[no-untyped-def]
        if len(made) == 3:
            coro.close()
            raise RuntimeError("loop broke")
        made.append(1)
        return real_create(coro)

    monkeypatch.setattr(client_mod.asyncio, "create_task", create_task)
    with FakeServer() as srv:
        res = replay(_table(6, [8] * 6), SLO, ClientConfig(base_url=srv.base_url))
    rec = res.records.set_index("rid")
    assert len(rec) == 6 and res.counts() == {"ok": 3, "failed": 3, "timeout": 0}
    assert rec.loc[5, "error"].startswith("client: replay aborted: RuntimeError: loop broke")

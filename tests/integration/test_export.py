"""Conversation export, for real: a ReAct-style agent with tool calls writes its
messages through our saver (in a plain channel and in a DeltaChannel), and the
library and the command line give them back as of any checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.export import ExportError, conversation, message_record
from tests.support.migration import build_react_graph, cfg, chat

from .conftest import saver_options


def cli(dep: Any, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["--url", dep.url, "--prefix", prefix, "export", *args]
    return subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def put_values(saver: RedisClusterSaver, thread: str, values: dict[str, Any]) -> None:
    """One checkpoint holding ``values``, as another program might have written it."""
    cp = empty_checkpoint()
    cp["channel_values"] = values
    cp["channel_versions"] = {k: 1 for k in values}
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    saver.put(config, cp, {"source": "input", "step": -1}, dict(cp["channel_versions"]))


@pytest.fixture
def chats(deployment: Any) -> Any:
    options = saver_options(deployment)
    with RedisClusterSaver.from_conn_string(deployment.url, **options) as saver:
        chat(saver, "plain", 2)
        chat(saver, "delta", 3, delta=True)
        put_values(
            saver,
            "dicts",
            {
                "messages": [
                    {"role": "user", "content": "hi", "id": "u1"},
                    {
                        "lc": 1,
                        "type": "constructor",
                        "id": ["langchain", "schema", "messages", "AIMessage"],
                        "kwargs": {
                            "content": "hello",
                            "id": "a1",
                            "tool_calls": [{"name": "f", "args": {"x": 1}, "id": "k1"}],
                        },
                    },
                    {"type": "tool", "data": {"content": "42", "tool_call_id": "k1", "id": "t1"}},
                ]
            },
        )
        put_values(saver, "counter", {"count": 3})
        yield deployment, options["key_prefix"], saver


def test_records_of_a_react_agent(chats: Any) -> None:
    _, _, saver = chats
    got = conversation(saver, cfg("plain"))
    assert [m["role"] for m in got] == [
        "system",
        "human",
        *["ai", "tool", "ai", "tool", "ai"],
        "human",
        *["ai", "tool", "ai", "tool", "ai"],
    ]
    assert got[0] == {
        "role": "system",
        "content": "be brief",
        "tool_calls": [],
        "tool_call_id": None,
        "id": "sys",
    }
    assert got[2]["tool_calls"] == [{"name": "lookup", "args": {"query": "t1 q0"}, "id": "c1-0"}]
    assert got[2]["id"] == "ai1-0" and got[2]["content"] == ""
    assert got[3]["tool_call_id"] == "c1-0" and got[3]["name"] == "lookup"
    assert got[3]["content"] == "results for t1 q0"
    assert got[6] == {
        "role": "ai",
        "content": "answer 1",
        "tool_calls": [],
        "tool_call_id": None,
        "id": "ai1-end",
        "name": "bot",
    }
    assert conversation(saver, cfg("dicts")) == [
        {"role": "human", "content": "hi", "tool_calls": [], "tool_call_id": None, "id": "u1"},
        {
            "role": "ai",
            "content": "hello",
            "tool_calls": [{"name": "f", "args": {"x": 1}, "id": "k1"}],
            "tool_call_id": None,
            "id": "a1",
        },
        {"role": "tool", "content": "42", "tool_calls": [], "tool_call_id": "k1", "id": "t1"},
    ]
    assert message_record(HumanMessage("x", id="h", name="ann"))["name"] == "ann"
    assert message_record(AIMessage("y"))["role"] == "ai"
    assert message_record(3) is None


def test_every_checkpoint_as_the_graph_sees_it(chats: Any) -> None:
    """DeltaChannel messages: between snapshots the checkpoint holds no value, and the
    export rebuilds it; at every checkpoint it equals the graph's own state."""
    _, _, saver = chats
    for thread, delta in (("plain", False), ("delta", True)):
        graph = build_react_graph(saver, delta)
        history = list(graph.get_state_history(cfg(thread)))
        rebuilt = 0
        for h in history:
            t = saver.get_tuple(h.config)
            assert t is not None
            stored = t.checkpoint["channel_values"].get("messages")
            if delta and not isinstance(stored, _DeltaSnapshot) and h.values.get("messages"):
                rebuilt += 1
            expected = [message_record(m) for m in h.values.get("messages", [])]
            if "messages" in t.checkpoint["channel_versions"]:
                assert conversation(saver, h.config) == expected, h.config
        assert rebuilt > 5 or not delta


def test_cli_latest_checkpoint_json_jsonl_all_threads(chats: Any) -> None:
    dep, prefix, saver = chats
    graph = build_react_graph(saver, True)
    history = list(graph.get_state_history(cfg("delta")))
    latest = conversation(saver, cfg("delta"))
    assert len(latest) == 1 + 3 * 6

    jsonl = cli(dep, prefix, "delta")
    assert jsonl.returncode == 0, jsonl.stderr
    assert [json.loads(line) for line in jsonl.stdout.splitlines()] == latest
    as_json = cli(dep, prefix, "delta", "--format", "json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == latest

    past = history[len(history) // 2]
    expected = [message_record(m) for m in past.values["messages"]]
    assert 0 < len(expected) < len(latest)
    one = cli(dep, prefix, "delta", "--checkpoint", past.config["configurable"]["checkpoint_id"])
    assert one.returncode == 0, one.stderr
    assert [json.loads(line) for line in one.stdout.splitlines()] == expected

    every = cli(dep, prefix, "--all-threads")
    assert every.returncode == 0, every.stderr
    docs = [json.loads(line) for line in every.stdout.splitlines()]
    assert [d["thread_id"] for d in docs] == ["delta", "dicts", "plain"]
    by_thread = {d["thread_id"]: d for d in docs}
    assert by_thread["delta"]["messages"] == latest
    assert by_thread["delta"]["checkpoint_id"] == history[0].config["configurable"]["checkpoint_id"]
    assert by_thread["plain"]["messages"] == conversation(saver, cfg("plain"))
    assert "exported 3 thread(s); skipped 1" in every.stderr and "thread/s" in every.stderr
    listed = cli(dep, prefix, "--all-threads", "--format", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == docs


def test_cli_errors(chats: Any) -> None:
    dep, prefix, saver = chats
    nobody = cli(dep, prefix, "nobody")
    assert nobody.returncode == 1 and "no thread 'nobody'" in nobody.stderr
    bad = "1f0ffff0-0000-6000-8000-000000000000"
    missing = cli(dep, prefix, "plain", "--checkpoint", bad)
    assert missing.returncode == 1 and f"no checkpoint {bad} in thread 'plain'" in missing.stderr
    none = cli(dep, prefix, "counter")
    assert none.returncode == 1 and "has no channel 'messages'" in none.stderr
    assert "channels: count" in none.stderr
    wrong = cli(dep, prefix, "counter", "--channel", "count")
    assert wrong.returncode == 1 and "channel 'count' holds no messages" in wrong.stderr
    assert cli(dep, prefix).returncode == 2  # neither a thread nor --all-threads
    with pytest.raises(ExportError, match="no thread 'nobody'"):
        conversation(saver, cfg("nobody"))

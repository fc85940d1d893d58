"""The pure parts of migration and export: put order, comparison, URLs, records."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import Overwrite

from redis_cluster_saver.export import ExportError, _fold, conversation, message_record
from redis_cluster_saver.migrate import (
    MigrationSourceError,
    _in_order,
    _same_values,
    source_saver,
    thread_namespaces,
)


def tup(ns: str, cid: str, parent: str | None) -> CheckpointTuple:
    conf = {"thread_id": "t", "checkpoint_ns": ns, "checkpoint_id": cid}
    pconf = {"configurable": {**conf, "checkpoint_id": parent}} if parent else None
    cp = empty_checkpoint()
    cp["id"] = cid
    return CheckpointTuple({"configurable": conf}, cp, {}, pconf, [])  # type: ignore[arg-type]


def test_parents_come_first_whatever_the_ids() -> None:
    # "b" is a fork made from "e" (a smaller id than its parent, as from a skewed clock)
    tuples = [tup("", "e", "d"), tup("", "b", "e"), tup("", "d", None), tup("s", "c", None)]
    tuples.append(tup("s", "a", "c"))
    order = [t.config["configurable"]["checkpoint_id"] for t in _in_order(tuples)]
    assert order == ["c", "a", "d", "e", "b"]
    assert _in_order([]) == []


def test_a_snapshot_held_by_one_side_only_is_no_difference() -> None:
    snap = _DeltaSnapshot(["x"])
    assert _same_values({"a": 1, "log": snap}, {"a": 1})
    assert _same_values({"a": 1}, {"a": 1, "log": snap})
    assert not _same_values({"a": 1, "log": snap}, {"a": 1, "log": _DeltaSnapshot(["y"])})
    assert not _same_values({"a": 1, "b": 2}, {"a": 1})
    assert not _same_values({"a": 1}, {"a": 2})


def test_source_urls(tmp_path: Path) -> None:
    with pytest.raises(MigrationSourceError, match="unknown source scheme 'mysql://'"):
        source_saver("mysql://x/y").__enter__()
    with pytest.raises(MigrationSourceError, match="no SQLite file"):
        source_saver(f"sqlite:///{tmp_path}/none.db").__enter__()
    assert not (tmp_path / "none.db").exists()
    path = tmp_path / "ok.db"
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path)
    SqliteSaver(conn).setup()
    conn.close()
    with source_saver(f"sqlite:///{path}") as saver:
        assert type(saver).__name__ == "SqliteSaver" and thread_namespaces(saver) == {}
    with source_saver(f"sqlite:///{path}") as saver, pytest.raises(sqlite3.OperationalError):
        saver.conn.execute("CREATE TABLE x (y int)")  # type: ignore[attr-defined]


def test_message_records() -> None:
    call = {"name": "f", "args": {"q": 1}, "id": "c1"}
    records = [
        message_record(m)
        for m in [
            SystemMessage("s", id="1"),
            HumanMessage("h", id="2", name="ann"),
            AIMessage("", id="3", tool_calls=[call]),
            ToolMessage("r", id="4", tool_call_id="c1", name="f"),
            AIMessageChunk("chunk", id="5"),
            ChatMessage("c", role="critic", id="6"),
        ]
    ]
    assert [r and r["role"] for r in records] == ["system", "human", "ai", "tool", "ai", "critic"]
    assert records[1] and records[1]["name"] == "ann"
    assert records[2] and records[2]["tool_calls"] == [call]
    assert records[3] and records[3]["tool_call_id"] == "c1"
    openai = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "{}"}}],
    }
    assert message_record(openai) == {
        "role": "ai",
        "content": "",
        "tool_calls": [{"name": "g", "args": "{}", "id": "c2"}],
        "tool_call_id": None,
        "id": None,
    }
    assert message_record({"unrelated": 1}) is None and message_record("text") is None


def test_fold_and_errors_on_any_saver() -> None:
    from langgraph.graph.message import add_messages

    seed = _DeltaSnapshot([HumanMessage("a", id="a")])
    writes: list[Any] = [[AIMessage("b", id="b")], Overwrite([HumanMessage("c", id="c")])]
    writes.append(AIMessage("d", id="d"))
    assert [m.id for m in _fold(seed, writes, add_messages)] == ["c", "d"]
    saver = InMemorySaver()
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": "not a list", "n": 1}
    cp["channel_versions"] = {"messages": 1, "n": 1}
    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    saver.put(config, cp, {}, {"messages": 1, "n": 1})
    with pytest.raises(ExportError, match="'messages' holds no messages"):
        conversation(saver, config)
    with pytest.raises(ExportError, match="has no channel 'chat'"):
        conversation(saver, config, "chat")
    with pytest.raises(ExportError, match="no thread 'u'"):
        conversation(saver, {"configurable": {"thread_id": "u"}})


@pytest.mark.parametrize(
    ("url", "module", "package"),
    [
        ("postgresql://u@h/db", "langgraph.checkpoint.postgres", "langgraph-checkpoint-postgres"),
        ("sqlite:///x.db", "langgraph.checkpoint.sqlite", "langgraph-checkpoint-sqlite"),
        (
            "valkey://h:1/0",
            "langgraph_checkpoint_aws.checkpoint.valkey",
            "langgraph-checkpoint-aws",
        ),
        ("redis://h:1", "langgraph.checkpoint.redis", "langgraph-checkpoint-redis"),
    ],
)
def test_a_missing_package_is_named(
    url: str, module: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MigrationSourceError, match=f"needs .*{package}.*pip install"):
        source_saver(url).__enter__()


def test_a_sqlite_file_in_rollback_journal_mode_reads_without_writing(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp_path / "odd name?#.db"
    conn = sqlite3.connect(path, check_same_thread=False)
    writer = SqliteSaver(conn)
    writer.setup()
    cp = empty_checkpoint()
    writer.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, cp, {}, {})
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    before = path.read_bytes()
    with source_saver(f"sqlite:///{path}") as saver:
        assert thread_namespaces(saver) == {"t": {""}}
    assert path.read_bytes() == before and not (tmp_path / "odd name?#.db-wal").exists()


def test_passwords_stay_out_of_messages() -> None:
    from redis_cluster_saver.migrate import redact

    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("valkey://h:1/0") == "valkey://h:1/0"

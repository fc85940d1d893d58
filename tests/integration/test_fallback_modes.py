"""Fallback modes that keep their promises: MULTI wherever the server allows it, a
script where only Lua is allowed, plain commands only where both are refused; a task's
writes all or none in every mode; a per-key read never torn."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.plan import RoundTrip, WriteMode
from tests.support.counting import commands_in, recording
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

PER_KEY = {"transactions": False, "scripts": False}


def thread_config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def put_one(saver: RedisClusterSaver, thread: str, n: int, parent: Any = None) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = {"n": n, "text": "x" * 100}
    cp["channel_versions"] = {"n": n + 1, "text": 1}
    return saver.put(parent or thread_config(thread), cp, {"step": n}, {"n": n + 1, "text": 1})


@pytest.fixture
def no_scripting_user(standalone: Any) -> Iterator[dict[str, Any]]:
    """An ACL user with every command but scripting, as managed services configure."""
    admin = redis.Redis.from_url(standalone.url)
    user = f"noscript{uuid.uuid4().hex[:6]}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-@scripting")
    try:
        yield {"username": user, "password": "pw"}
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_multi_allowed_and_lua_refused_gives_atomic_writes_and_plain_reads(
    standalone: Any,
    no_scripting_user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = saver_options(standalone, connection_args=no_scripting_user)
    with (
        caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
        RedisClusterSaver.from_conn_string(standalone.url, **options) as saver,
    ):
        caps = saver.capabilities
        assert caps is not None and caps.transactions is True and caps.scripts is False
        assert saver.ops.write_mode is WriteMode.TRANSACTION
        assert saver.ops.mode.scripts is False
        rows = dict(caps.rows())
        assert rows["writes"] == "transaction" and rows["reads"] == "plain"
        with recording(monkeypatch) as sent:
            first = put_one(saver, "acl", 0)
            saver.put_writes(first, [("n", 1), ("text", "y")], "task")
            put_one(saver, "acl", 1, first)
            tup = saver.get_tuple(thread_config("acl"))
            assert tup is not None and tup.checkpoint["channel_values"]["n"] == 1
            assert len(list(saver.list(thread_config("acl")))) == 2
            got = saver.get_tuple(first)
            assert got is not None and len(got.pending_writes or []) == 2
    packets = [commands_in(p) for p in sent]
    names = {n for p in packets for n in p}
    assert not names & {"EVAL", "EVALSHA"}, names
    writes = [p for p in packets if "HSET" in p or "HSETNX" in p]
    assert writes and all(p[0] == "MULTI" and p[-1] == "EXEC" for p in writes), writes
    warnings = [r.getMessage() for r in caplog.records]
    assert any("scripts" in w and "plain" in w for w in warnings), warnings


@pytest.mark.parametrize("topology", ["standalone", "cluster", "proxy"])
def test_a_per_key_read_with_a_delete_between_its_trips_is_never_torn(
    request: pytest.FixtureRequest, topology: str
) -> None:
    """The read takes several round trips without scripts; another client deletes the
    thread after the first: the reader gets the checkpoint whole or None, never one
    with its values missing."""
    dep = deployment_for(request, topology)
    options = saver_options(dep, **PER_KEY)
    with (
        RedisClusterSaver.from_conn_string(url_of(dep), **options) as reader,
        RedisClusterSaver.from_conn_string(url_of(dep), **options) as admin,
    ):
        for kind in ("latest", "by id", "list"):
            stored = put_one(admin, "torn", 7)
            fired: list[int] = []

            def hook(event: str, trip: RoundTrip, fired: list[int] = fired) -> None:
                if event == "reply" and not fired:
                    fired.append(1)
                    admin.delete_thread("torn")

            reader.shell.hook = hook
            try:
                if kind == "latest":
                    got = [reader.get_tuple(thread_config("torn"))]
                elif kind == "by id":
                    got = [reader.get_tuple(stored)]
                else:
                    got = list(reader.list(thread_config("torn")))
            finally:
                reader.shell.hook = None
            assert fired
            for tup in got:
                assert tup is None or tup.checkpoint["channel_values"] == {
                    "n": 7,
                    "text": "x" * 100,
                }, (kind, tup.checkpoint["channel_values"])


def test_per_key_writes_of_a_task_go_in_one_command(standalone: Any) -> None:
    options = saver_options(standalone, **PER_KEY)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        stored = put_one(saver, "task", 0)
        trips: list[RoundTrip] = []
        saver.shell.hook = lambda event, trip: trips.append(trip) if event == "send" else None
        saver.put_writes(stored, [("a", 1), ("b", 2), ("__error__", "x"), ("c", 3)], "t1")
        saver.shell.hook = None
        key = saver.ops.layout.thread("task").writes("", stored["configurable"]["checkpoint_id"])
        writing = [c for t in trips for c in t.calls if c.args[1] == key and c.args[0] != "HMGET"]
        assert [c.args[0] for c in writing] == ["HSET"], writing
        saver.put_writes(stored, [("a", 10), ("b", 20), ("__error__", "y"), ("c", 30)], "t1")
        tup = saver.get_tuple(stored)
        assert tup is not None
        assert sorted((c, v) for _, c, v in tup.pending_writes or []) == [
            ("__error__", "y"),
            ("a", 1),
            ("b", 2),
            ("c", 3),
        ]


def test_a_per_key_read_across_an_expiry_is_never_torn(standalone: Any) -> None:
    """The thread's TTL runs out between the read's round trips: None, not a
    checkpoint whose values expired under it."""
    options = saver_options(standalone, ttl={"default_ttl": 0.005}, **PER_KEY)  # 300 ms
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        for _ in range(3):
            stored = put_one(saver, "expiring", 3)
            waited: list[int] = []

            def hook(event: str, trip: RoundTrip, waited: list[int] = waited) -> None:
                if event == "reply" and not waited:
                    waited.append(1)
                    time.sleep(0.4)

            saver.shell.hook = hook
            try:
                got = saver.get_tuple(stored)
            finally:
                saver.shell.hook = None
            assert waited
            assert got is None or got.checkpoint["channel_values"] == {"n": 3, "text": "x" * 100}

"""A write that a server out of memory stops part-way leaves the thread as if it never
ran, in every mode, and the error reaches the caller at once.

Each test runs on servers of its own with a real ``maxmemory`` under ``noeviction``:
the limit is set just above what is in use, then a put (and a task's writes) carries
a value larger than the headroom. Redis counts a value against the limit while the
command holding it runs, and at these sizes frees it at once, so the server refuses
the value and usually takes the small commands after it: a plain pipeline (per-key
mode) used to publish a checkpoint whose values were refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint
from redis.exceptions import OutOfMemoryError, ResponseError

from cluster.binaries import available
from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

SIZES = [(100_000, 50_000), (120_000, 60_000), (150_000, 75_000), (200_000, 100_000)]
"""(bytes of a value the full server refuses, headroom left under its limit); each
is tried, as the server's own allocations decide which of them lets the commands
after the refused one through."""

MODES: dict[str, tuple[str, dict[str, Any], type[Exception]]] = {
    "script": ("standalone", {}, OutOfMemoryError),
    "multi": ("standalone", {"scripts": False}, OutOfMemoryError),
    "per-key": ("standalone", {"transactions": False, "scripts": False}, OutOfMemoryError),
    # twemproxy answers a backend's OOM reply with an "ERR Invalid argument" of its own
    "proxy": ("proxy", {}, ResponseError),
}

Call = Callable[[], Awaitable[Any]]


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[[str], Any]]:
    """Deployments of this module's own (their memory limits would disturb other
    tests), started on first use."""
    started: dict[str, Any] = {}

    def get(topology: str) -> Any:
        if topology not in started:
            reason = available(topology)
            if reason:
                pytest.skip(f"{topology} topology unavailable: {reason}")
            started[topology] = start(topology)
        return started[topology]

    try:
        yield get
    finally:
        for dep in started.values():
            stop(dep)


class Full:
    """Each data node's memory limit set ``headroom`` bytes above what it holds
    (``noeviction``); lifted on exit."""

    def __init__(self, dep: Any, headroom: int) -> None:
        nodes = [n for n in dep.nodes if n.role in ("primary", "backend")] or dep.nodes[:1]
        self.nodes = [redis.Redis(host=n.host, port=n.port) for n in nodes]
        self.headroom = headroom

    def __enter__(self) -> Full:
        for node in self.nodes:
            node.config_set("maxmemory-policy", "noeviction")
            used = int(node.info("memory")["used_memory"])
            node.config_set("maxmemory", used + self.headroom)
        return self

    def __exit__(self, *exc: Any) -> None:
        for node in self.nodes:
            node.config_set("maxmemory", 0)
            node.close()


THREAD = "t-oom"


def step(i: int, parent: str | None, value: Any) -> tuple[Any, Any, Any, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": value, "n": i}
    cp["channel_versions"] = {"messages": i + 1, "n": i + 1}
    config: Any = {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
    if parent:
        config["configurable"]["checkpoint_id"] = parent
    return config, cp, {"source": "loop", "step": i}, {"messages": i + 1, "n": i + 1}


def seen(saver: RedisClusterSaver) -> Any:
    """What a reader sees of the thread: the latest checkpoint's id and values, its
    pending writes, and the ids listed."""
    config = {"configurable": {"thread_id": THREAD}}
    latest = saver.get_tuple(config)
    assert latest is not None
    listed = [t.checkpoint["id"] for t in saver.list(config)]
    return (
        latest.checkpoint["id"],
        latest.checkpoint["channel_values"],
        latest.pending_writes,
        listed,
    )


def calls(
    saver: RedisClusterSaver | AsyncRedisClusterSaver, c0: Any, i: int, size: int
) -> list[Call]:
    """A put of a ``size``-byte value on ``c0``, then a task's writes of one."""
    put = step(i, c0["configurable"]["checkpoint_id"], ["hello", "x" * size])
    writes = ([("messages", "y" * size)], f"task-{i}")
    if isinstance(saver, AsyncRedisClusterSaver):
        return [lambda: saver.aput(*put), lambda: saver.aput_writes(c0, *writes)]

    async def sync_put() -> Any:
        return saver.put(*put)

    async def sync_writes() -> Any:
        return saver.put_writes(c0, *writes)

    return [sync_put, sync_writes]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("style", ["sync", "async"])
async def test_a_write_refused_for_memory_leaves_the_thread_as_it_was(
    servers: Callable[[str], Any], mode: str, style: str, caplog: pytest.LogCaptureFixture
) -> None:
    topology, options, refused = MODES[mode]
    dep = servers(topology)
    options = {"key_prefix": f"oom{uuid.uuid4().hex[:8]}", **options}
    if dep.client_kwargs:
        options["connection_args"] = dict(dep.client_kwargs)
    saver: RedisClusterSaver | AsyncRedisClusterSaver
    saver = (
        RedisClusterSaver(dep.url, **options)
        if style == "sync"
        else AsyncRedisClusterSaver(dep.url, **options)
    )
    with RedisClusterSaver.from_conn_string(dep.url, **options) as reader:
        try:
            c0 = reader.put(*step(0, None, ["hello"]))
            reader.put_writes(c0, [("messages", "pending")], "task-0")
            before = seen(reader)
            if isinstance(saver, AsyncRedisClusterSaver):
                await saver.asetup()
            else:
                saver.setup()
            for i, (size, headroom) in enumerate(SIZES, start=1):
                with Full(dep, headroom):
                    for call in calls(saver, c0, i, size):
                        began = time.monotonic()
                        with pytest.raises(refused):
                            await call()
                        took = time.monotonic() - began
                        assert took < 2.0, f"the error took {took:.2f} s to reach the caller"
                    assert seen(reader) == before, size  # read while the server is full
                assert seen(reader) == before, size
            # the mode stays what it was: running out of memory is no refusal of MULTI or Lua
            assert not [r for r in caplog.records if "mid-flight" in r.getMessage()]
            done = calls(saver, c0, len(SIZES) + 1, SIZES[-1][0])
            c1 = await done[0]()
            latest = reader.get_tuple(c1)
            assert latest is not None
            assert latest.checkpoint["channel_values"]["messages"] == ["hello", "x" * SIZES[-1][0]]
        finally:
            if isinstance(saver, AsyncRedisClusterSaver):
                await saver.aclose()
            else:
                saver.close()

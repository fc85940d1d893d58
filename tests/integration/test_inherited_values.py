"""A checkpoint names the values of its unchanged channels, which an earlier put stored.
When those are gone by the time it is written (a failover lost the earlier put, as a
partition does; another process deleted them), the put stores them from the checkpoint
itself, in the same atomic write: no checkpoint is ever written naming a value the
server does not hold. Before, such a checkpoint read back without those channels, a
shorter state with no error (seen after a partition healed on Sentinel).

A value gone after the checkpoint was written (evicted, say) is damage the reader
reports, as for a value the checkpoint stored itself.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.errors import ThreadDamagedError
from redis_cluster_saver.keys import blob_field

from .conftest import deployment_for, saver_options

TOPOLOGIES = ["standalone", "cluster"]


def _raw(dep: Any) -> Any:
    if dep.topology == "cluster":
        node = dep.primaries[0]
        return redis.RedisCluster(host=node.host, port=node.port)
    return redis.Redis.from_url(dep.url)


def _checkpoint(values: dict[str, Any], versions: dict[str, int]) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = values
    cp["channel_versions"] = versions
    return cp


def _puts(thread: str) -> tuple[tuple[Any, ...], Any, Any]:
    """The first put's arguments, and the second's config-less rest: ``b`` unchanged."""
    first = (
        {"configurable": {"thread_id": thread, "checkpoint_ns": ""}},
        _checkpoint({"a": "a1", "b": "unchanged-b"}, {"a": 1, "b": 1}),
        {"source": "loop", "step": 0},
        {"a": 1, "b": 1},
    )
    second = _checkpoint({"a": "a2", "b": "unchanged-b"}, {"a": 2, "b": 1})
    return first, second, {"a": 2}


def _lose(dep: Any, saver: Any, thread: str, channel: str, version: int) -> None:
    """What a failover does to a put it lost: its value is not on the server."""
    raw = _raw(dep)
    try:
        blobs = saver.ops.layout.thread(thread).blobs("")
        assert raw.hdel(blobs, blob_field(channel, version)) == 1
    finally:
        raw.close()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_put_stores_an_inherited_value_that_is_gone(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    with RedisClusterSaver.from_conn_string(dep.url, **saver_options(dep)) as saver:
        first, second, changed = _puts("t")
        stored = saver.put(*first)
        _lose(dep, saver, "t", "b", 1)
        latest = saver.put(stored, second, {"source": "loop", "step": 1}, changed)
        tup = saver.get_tuple(latest)
        assert tup is not None
        assert tup.checkpoint["channel_values"] == {"a": "a2", "b": "unchanged-b"}
        # the value is gone after the checkpoint was written: damage, never a shorter state
        _lose(dep, saver, "t", "b", 1)
        with pytest.raises(ThreadDamagedError, match="b:"):
            saver.get_tuple(latest)


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_an_async_put_stores_an_inherited_value_that_is_gone(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    options = saver_options(dep)
    async with AsyncRedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        first, second, changed = _puts("t")
        stored = await saver.aput(*first)
        _lose(dep, saver, "t", "b", 1)
        latest = await saver.aput(stored, second, {"source": "loop", "step": 1}, changed)
        tup = await saver.aget_tuple(latest)
        assert tup is not None
        assert tup.checkpoint["channel_values"] == {"a": "a2", "b": "unchanged-b"}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_an_inherited_value_that_is_there_is_not_sent_again(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    with RedisClusterSaver.from_conn_string(dep.url, **saver_options(dep)) as saver:
        first, second, changed = _puts("t")
        stored = saver.put(*first)
        sent: list[Any] = []
        saver.shell.hook = lambda event, trip: sent.append(trip) if event == "send" else None
        saver.put(stored, second, {"source": "loop", "step": 1}, changed)
        saver.shell.hook = None
        assert len(sent) == 1  # one round trip
        assert b"unchanged-b" not in repr(sent[0]).encode()

"""Construction the way LangGraph users expect: URLs of every kind, ready clients."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.types import TASKS

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.connection import is_cluster_client

from .conftest import saver_options


def roundtrip(saver: RedisClusterSaver) -> None:
    cp = empty_checkpoint()
    cp["channel_values"] = {"k": "v"}
    cp["channel_versions"] = {"k": 1}
    stored = saver.put({"configurable": {"thread_id": "c", "checkpoint_ns": ""}}, cp, {}, {"k": 1})
    tup = saver.get_tuple(stored)
    assert tup is not None and tup.checkpoint["channel_values"] == {"k": "v"}


def sentinel_url(dep: Any) -> str:
    hosts = ",".join(f"{h}:{p}" for h, p in dep.sentinels)
    return f"redis+sentinel://{hosts}/{dep.service_name}"


def test_a_plain_url_to_a_cluster_node_finds_the_cluster(redis_cluster: Any) -> None:
    with RedisClusterSaver.from_conn_string(redis_cluster.url, **saver_options(redis_cluster)) as s:
        assert is_cluster_client(s.client)
        roundtrip(s)


def test_several_seeds_make_a_cluster_client(redis_cluster: Any) -> None:
    seeds = ",".join(f"127.0.0.1:{n.port}" for n in redis_cluster.primaries)
    with RedisClusterSaver.from_conn_string(
        f"redis://{seeds}", **saver_options(redis_cluster)
    ) as saver:
        assert is_cluster_client(saver.client)
        roundtrip(saver)


def test_cluster_mode_false_is_respected(standalone: Any) -> None:
    options = saver_options(standalone, cluster_mode=False)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        assert not is_cluster_client(saver.client)
        roundtrip(saver)


def test_sentinel_url(sentinel: Any) -> None:
    with RedisClusterSaver.from_conn_string(sentinel_url(sentinel), **saver_options(sentinel)) as s:
        roundtrip(s)


async def test_async_sentinel_url_and_cluster_probe(sentinel: Any, redis_cluster: Any) -> None:
    for url, dep in ((sentinel_url(sentinel), sentinel), (redis_cluster.url, redis_cluster)):
        async with AsyncRedisClusterSaver.from_conn_string(url, **saver_options(dep)) as saver:
            cp = empty_checkpoint()
            config: Any = {"configurable": {"thread_id": "a", "checkpoint_ns": ""}}
            stored = await saver.aput(config, cp, {"step": 1}, {})
            tup = await saver.aget_tuple(stored)
            assert tup is not None and tup.metadata == {"step": 1}
            assert is_cluster_client(saver.client) == (dep is redis_cluster)


def test_ready_clients(standalone: Any, redis_cluster: Any, sentinel: Any) -> None:
    clients = [
        redis.Redis.from_url(standalone.url),
        redis.cluster.RedisCluster.from_url(redis_cluster.url),
        redis.sentinel.Sentinel(sentinel.sentinels).master_for(sentinel.service_name),
    ]
    for client, dep in zip(clients, (standalone, redis_cluster, sentinel)):
        saver = RedisClusterSaver(redis_client=client, **saver_options(dep))
        saver.setup()
        roundtrip(saver)
        saver.close()  # not ours: the client stays open
        assert client.ping()
        client.close()


async def test_ready_async_clients(standalone: Any, redis_cluster: Any, sentinel: Any) -> None:
    clients = [
        (redis.asyncio.Redis.from_url(standalone.url), standalone),
        (redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url), redis_cluster),
        (
            redis.asyncio.sentinel.Sentinel(sentinel.sentinels).master_for(sentinel.service_name),
            sentinel,
        ),
    ]
    for client, dep in clients:
        saver = AsyncRedisClusterSaver(redis_client=client, **saver_options(dep))
        await saver.asetup()
        config: Any = {"configurable": {"thread_id": "r", "checkpoint_ns": ""}}
        stored = await saver.aput(config, empty_checkpoint(), {}, {})
        assert await saver.aget_tuple(stored) is not None
        await client.aclose()


def test_a_decoding_client_is_refused(standalone: Any) -> None:
    client = redis.Redis.from_url(standalone.url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisClusterSaver(redis_client=client)
    client.close()


def test_exactly_one_of_url_or_client() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RedisClusterSaver()


def test_pending_sends_of_old_checkpoints_are_migrated(sync_saver: RedisClusterSaver) -> None:
    """Checkpoints before format v4 kept Send packets as the parent's TASKS writes."""
    parent = empty_checkpoint()
    parent["v"] = 3
    parent["channel_versions"] = {"a": 2}
    config: Any = {"configurable": {"thread_id": "old", "checkpoint_ns": ""}}
    stored = sync_saver.put(config, parent, {}, {})
    sync_saver.put_writes(stored, [(TASKS, "send-1"), (TASKS, "send-2"), ("x", 1)], "t1")
    child = empty_checkpoint()
    child["v"] = 3
    child["channel_versions"] = {"a": 5}
    sync_saver.put(stored, child, {}, {})
    tup = sync_saver.get_tuple(config)
    assert tup is not None and tup.checkpoint["id"] == child["id"]
    assert tup.checkpoint["channel_values"][TASKS] == ["send-1", "send-2"]
    assert tup.checkpoint["channel_versions"][TASKS] == 5

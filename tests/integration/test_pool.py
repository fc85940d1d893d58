"""Connection pools under load: callers queue for a connection, a full pool is never
taken for a failover.

``failover_wait=0`` makes any error the saver would retry as a failover reach the
caller at once, so a test that sees no error saw nothing retried either.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import MaxConnectionsError

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.errors import PoolTimeoutError
from redis_cluster_saver.pool import AsyncQueuedPool, QueuedPool, QueuedSentinelPool
from tests.support.steps import checkpoint, config

from .conftest import saver_options

CALLS = 200


async def many_async(saver: AsyncRedisClusterSaver, n: int = CALLS) -> list[BaseException]:
    """``n`` concurrent put + get_tuple pairs, each on its own thread: the errors."""

    async def one(i: int) -> None:
        stored = await saver.aput(config(f"a{i}"), checkpoint(i), {"i": i}, {"n": 1})
        tup = await saver.aget_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"] == {"n": i}

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


def many_threads(saver: RedisClusterSaver, threads: int = 32, each: int = 8) -> list[BaseException]:
    """As many_async, from ``threads`` OS threads at once."""

    def one(i: int) -> None:
        stored = saver.put(config(f"s{i}"), checkpoint(i), {"i": i}, {"n": 1})
        tup = saver.get_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"] == {"n": i}

    errors: list[BaseException] = []

    def worker(t: int) -> None:
        for i in range(t * each, (t + 1) * each):
            try:
                one(i)
            except Exception as exc:
                errors.append(exc)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return errors


async def test_async_cluster_client_with_a_tiny_node_pool_queues(redis_cluster: Any) -> None:
    """redis-py's asyncio cluster nodes cannot queue: a full node raises
    MaxConnectionsError at once. The saver queues its trips per node instead."""
    client = redis.asyncio.cluster.RedisCluster.from_url(
        redis_cluster.url, max_connections=2, **redis_cluster.client_kwargs
    )
    saver = AsyncRedisClusterSaver(
        redis_client=client, **saver_options(redis_cluster, failover_wait=0)
    )
    try:
        errors = await many_async(saver)
        assert errors == [], f"{len(errors)} of {CALLS} failed, first: {errors[0]!r}"
    finally:
        await client.aclose()


FULL_POOLS = {
    # a plain pool raises MaxConnectionsError at once
    "plain": (redis.ConnectionPool, {}, MaxConnectionsError, None, 1.0),
    # a blocking pool says "No connection available." with a plain ConnectionError
    "blocking": (
        redis.BlockingConnectionPool,
        {"timeout": 0.2},
        redis.ConnectionError,
        "No connection available",
        1.5,
    ),
}


@pytest.mark.parametrize("kind", list(FULL_POOLS))
def test_a_full_pool_of_a_client_passed_in_is_no_failover(standalone: Any, kind: str) -> None:
    """A client passed in keeps its own pool: when that pool is full, its error reaches
    the caller at once, not after failover_wait of retries."""
    pool_class, extra, error, message, within = FULL_POOLS[kind]
    pool = pool_class.from_url(
        standalone.url, max_connections=1, **extra, **standalone.client_kwargs
    )
    client = redis.Redis(connection_pool=pool)
    saver = RedisClusterSaver(redis_client=client, **saver_options(standalone, failover_wait=3))
    saver.setup()
    held = pool.get_connection()
    try:
        began = time.monotonic()
        with pytest.raises(error, match=message):
            saver.get_tuple(config("full"))
        assert time.monotonic() - began < within
    finally:
        pool.release(held)
        client.close()


async def test_async_cluster_client_full_from_outside_fails_at_once(redis_cluster: Any) -> None:
    """A node of a client passed in may be filled by its owner's own commands: the
    saver's MaxConnectionsError then reaches the caller at once, not after
    failover_wait of retries."""
    client = redis.asyncio.cluster.RedisCluster.from_url(
        redis_cluster.url, max_connections=2, **redis_cluster.client_kwargs
    )
    saver = AsyncRedisClusterSaver(
        redis_client=client, **saver_options(redis_cluster, failover_wait=3)
    )
    await saver.asetup()
    held = [(node, node.acquire_connection()) for node in client.get_primaries() for _ in "ab"]
    try:
        began = time.monotonic()
        with pytest.raises(MaxConnectionsError):
            await saver.aget_tuple(config("full"))
        assert time.monotonic() - began < 1.0
    finally:
        for node, conn in held:
            node.release(conn)
        await client.aclose()


async def test_async_cluster_option_queues(redis_cluster: Any) -> None:
    saver = AsyncRedisClusterSaver(
        redis_cluster.url, **saver_options(redis_cluster, failover_wait=0, max_connections=2)
    )
    async with saver:
        await saver.asetup()  # the URL's endpoint is asked what it is on first use
        assert saver.shell.bounds is not None and saver.shell.bounds.limit == 2
        assert saver.client.get_connection_kwargs()["max_connections"] == 2 * 2  # headroom
        errors = await many_async(saver)
        assert errors == [], f"{len(errors)} of {CALLS} failed, first: {errors[0]!r}"


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_sync_saver_threads_queue_for_connections(
    topology: str, request: pytest.FixtureRequest
) -> None:
    dep = request.getfixturevalue("standalone" if topology == "standalone" else "redis_cluster")
    options = saver_options(dep, failover_wait=0, max_connections=2)
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        if topology == "cluster":
            pools = [
                saver.client.get_redis_connection(n).connection_pool
                for n in saver.client.get_primaries()
            ]
        else:
            pools = [saver.client.connection_pool]
        assert all(isinstance(p, QueuedPool) and p.max_connections == 2 for p in pools)
        errors = many_threads(saver)
        assert errors == [], f"{len(errors)} failed, first: {errors[0]!r}"


def test_sentinel_pools_queue(sentinel: Any) -> None:
    hosts = ",".join(f"{h}:{p}" for h, p in sentinel.sentinels)
    url = f"redis+sentinel://{hosts}/{sentinel.service_name}"
    options = saver_options(sentinel, failover_wait=0, max_connections=2)
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        pool = saver.client.connection_pool
        assert isinstance(pool, QueuedSentinelPool) and pool.max_connections == 2
        assert many_threads(saver, threads=8, each=4) == []


async def test_async_sentinel_and_standalone_pools_queue(sentinel: Any, standalone: Any) -> None:
    hosts = ",".join(f"{h}:{p}" for h, p in sentinel.sentinels)
    urls = [
        (f"redis+sentinel://{hosts}/{sentinel.service_name}", sentinel),
        (standalone.url, standalone),
    ]
    for url, dep in urls:
        options = saver_options(dep, failover_wait=0, max_connections=2)
        async with AsyncRedisClusterSaver.from_conn_string(url, **options) as saver:
            pool = saver.client.connection_pool
            assert isinstance(pool, AsyncQueuedPool) and pool.max_connections == 2
            assert saver.shell.bounds is None
            assert await many_async(saver, 50) == []


# ---- pool_timeout: one connection, held elsewhere --------------------------------

TIMEOUT = 0.5
LIMITED = {"max_connections": 1, "pool_timeout": TIMEOUT, "failover_wait": 5}


def times_out_in_time(began: float) -> None:
    """Within about pool_timeout, well before failover_wait."""
    assert TIMEOUT * 0.9 <= time.monotonic() - began < TIMEOUT + 1.5


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_sync_pool_timeout_is_a_clear_error(topology: str, request: pytest.FixtureRequest) -> None:
    dep = request.getfixturevalue("standalone" if topology == "standalone" else "redis_cluster")
    with RedisClusterSaver.from_conn_string(dep.url, **saver_options(dep, **LIMITED)) as saver:
        stored = saver.put(config("held"), checkpoint(1), {}, {"n": 1})
        if topology == "cluster":
            nodes = saver.client.get_primaries()
            pools = [saver.client.get_redis_connection(n).connection_pool for n in nodes]
        else:
            pools = [saver.client.connection_pool]
        held = [(pool, pool.get_connection()) for pool in pools]
        try:
            began = time.monotonic()
            with pytest.raises(PoolTimeoutError, match=r"pool_timeout=0\.5 s") as caught:
                saver.get_tuple(stored)
            times_out_in_time(began)
            assert "max_connections=1" in str(caught.value)
            assert not isinstance(caught.value, redis.ConnectionError)
        finally:
            for pool, conn in held:
                pool.release(conn)
        assert saver.get_tuple(stored) is not None  # and the pool serves again


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
async def test_async_pool_timeout_is_a_clear_error(
    topology: str, request: pytest.FixtureRequest
) -> None:
    dep = request.getfixturevalue("standalone" if topology == "standalone" else "redis_cluster")
    async with AsyncRedisClusterSaver.from_conn_string(
        dep.url, **saver_options(dep, **LIMITED)
    ) as saver:
        stored = await saver.aput(config("held"), checkpoint(1), {}, {"n": 1})
        began = 0.0
        if topology == "cluster":
            # the cluster's nodes cannot queue: the saver's own bound is the pool
            assert saver.shell.bounds is not None
            names = sorted(n.name for n in saver.client.get_primaries())
            held = await saver.shell.bounds.take_names(names)
            try:
                began = time.monotonic()
                with pytest.raises(PoolTimeoutError, match=r"pool_timeout=0\.5 s"):
                    await saver.aget_tuple(stored)
            finally:
                saver.shell.bounds.give(held)
        else:
            pool = saver.client.connection_pool
            conn = await pool.get_connection()
            try:
                began = time.monotonic()
                with pytest.raises(PoolTimeoutError, match=r"pool_timeout=0\.5 s"):
                    await saver.aget_tuple(stored)
            finally:
                await pool.release(conn)
        times_out_in_time(began)
        assert await saver.aget_tuple(stored) is not None


# ---- construction ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1.5, "8", True, None])
def test_bad_max_connections_is_refused(value: Any) -> None:
    for cls in (RedisClusterSaver, AsyncRedisClusterSaver):
        with pytest.raises(ValueError, match="max_connections"):
            cls("redis://127.0.0.1:1", max_connections=value)


@pytest.mark.parametrize("value", [0, -0.5, "1", True, None, float("inf"), float("nan")])
def test_bad_pool_timeout_is_refused(value: Any) -> None:
    for cls in (RedisClusterSaver, AsyncRedisClusterSaver):
        with pytest.raises(ValueError, match="pool_timeout"):
            cls("redis://127.0.0.1:1", pool_timeout=value)


@pytest.mark.parametrize("name", ["max_connections", "connection_pool_class"])
def test_pool_arguments_in_connection_args_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} in connection_args"):
        RedisClusterSaver("redis://127.0.0.1:1", connection_args={name: 8}, cluster_mode=False)


# ---- the connection kept aside between calls --------------------------------------


def test_the_kept_connection_goes_to_a_waiting_caller_and_is_reused_when_none_waits(
    standalone: Any,
) -> None:
    """A connection given back while a caller waits goes to that caller (it is never
    kept aside with someone waiting); given back while nobody waits, the next caller
    gets that same connection, without redis-py's checks, and it still works."""
    pool = QueuedPool.from_url(
        standalone.url, max_connections=1, timeout=2, **standalone.client_kwargs
    )
    try:
        first = pool.get_connection()
        with ThreadPoolExecutor(1) as waiter:
            waiting = waiter.submit(pool.get_connection)
            time.sleep(0.2)
            assert not waiting.done()
            began = time.monotonic()
            pool.release(first)
            handed = waiting.result(timeout=1)
            assert time.monotonic() - began < 0.5
        assert handed is first
        pool.release(handed)  # nobody waits: kept aside
        again = pool.get_connection()
        assert again is first
        again.send_command("PING")
        assert again.read_response() in (b"PONG", "PONG")
        pool.release(again)
    finally:
        pool.disconnect()


async def test_the_async_kept_connection_goes_to_a_waiting_caller(standalone: Any) -> None:
    pool = AsyncQueuedPool.from_url(
        standalone.url, max_connections=1, timeout=2, **standalone.client_kwargs
    )
    try:
        first = await pool.get_connection()
        waiting = asyncio.ensure_future(pool.get_connection())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await pool.release(first)
        handed = await asyncio.wait_for(waiting, 0.5)
        assert handed is first
        await pool.release(handed)
        again = await pool.get_connection()
        assert again is first
        await again.send_command("PING")
        assert await again.read_response() in (b"PONG", "PONG")
        await pool.release(again)
    finally:
        await pool.disconnect()

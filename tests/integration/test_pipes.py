"""The asyncio shell's shared connections (redis_cluster_saver/pipes.py), per cluster
node and on a single endpoint:
concurrent calls to a node go out together and come back each to its caller; a
connection lost with calls in flight sends them through the client; a cancelled
caller leaves the connection in step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from redis_cluster_saver import AsyncRedisClusterSaver
from redis_cluster_saver.pipes import NodePipe
from tests.support.counting import commands_in, recording
from tests.support.steps import checkpoint, config

from .conftest import saver_options


@pytest.fixture
async def saver(redis_cluster: Any) -> AsyncIterator[AsyncRedisClusterSaver]:
    options = saver_options(redis_cluster, failover_wait=0)  # nothing retried as a failover
    async with AsyncRedisClusterSaver.from_conn_string(redis_cluster.url, **options) as s:
        yield s


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    with recording(monkeypatch) as packets:
        yield packets


def threads_on_one_node(saver: AsyncRedisClusterSaver, n: int) -> tuple[Any, list[str]]:
    """``n`` thread ids whose keys live on one primary, and that primary."""
    client = saver.client
    node = client.get_node_from_key(saver.ops.layout.thread("t0").namespaces)
    found = []
    i = 0
    while len(found) < n:
        tid = f"t{i}"
        if client.get_node_from_key(saver.ops.layout.thread(tid).namespaces).name == node.name:
            found.append(tid)
        i += 1
    return node, found


def drop_the_first_flushed_connection(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The first shared connection to write its calls dies right after (the calls
    sent, no reply to come): the connections it took, for the test to check."""
    flush = NodePipe.flush
    dropped: list[Any] = []

    def flush_then_drop(pipe: NodePipe) -> None:
        conn = pipe.conn
        flush(pipe)
        if not dropped and conn is not None:
            dropped.append(conn)
            conn._writer.transport.abort()

    monkeypatch.setattr(NodePipe, "flush", flush_then_drop)
    return dropped


async def test_calls_in_flight_to_a_node_share_a_write_and_each_gets_its_reply(
    saver: AsyncRedisClusterSaver, sent: list[bytes]
) -> None:
    node, threads = threads_on_one_node(saver, 40)
    for i, t in enumerate(threads):  # listed in the directory, scripts known
        await saver.aput(config(t), checkpoint(i), {"i": i}, {"n": 1})
    sent.clear()
    tuples = await asyncio.gather(*(saver.aget_tuple(config(t)) for t in threads))
    assert [t.checkpoint["channel_values"] for t in tuples if t] == [{"n": i} for i in range(40)]
    reads = [commands_in(p).count("EVALSHA") for p in sent]
    assert sum(reads) == 40 and max(reads) > 1, reads  # several calls in one write
    pipe = saver.shell.pipes[node.name]
    assert pipe.conn is None and not pipe.waiting  # given back to the node when done


async def test_a_connection_lost_with_calls_in_flight_sends_them_through_the_client(
    saver: AsyncRedisClusterSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, threads = threads_on_one_node(saver, 20)
    for i, t in enumerate(threads):
        await saver.aput(config(t), checkpoint(i), {"i": i}, {"n": 1})
    through_client: list[Any] = []
    execute = saver.client.execute_command

    async def counted(*args: Any, **kwargs: Any) -> Any:
        through_client.append(args[0])
        return await execute(*args, **kwargs)

    monkeypatch.setattr(saver.client, "execute_command", counted)
    dropped = drop_the_first_flushed_connection(monkeypatch)
    tuples = await asyncio.gather(*(saver.aget_tuple(config(t)) for t in threads))
    assert [t.checkpoint["channel_values"] for t in tuples if t] == [{"n": i} for i in range(20)]
    assert dropped and through_client and set(through_client) == {"EVALSHA"}
    through_client.clear()
    assert await saver.aget_tuple(config(threads[0])) is not None
    assert through_client == []  # the next call has a connection of its own again


async def test_a_cancelled_call_leaves_the_connection_in_step(
    saver: AsyncRedisClusterSaver, redis_cluster: Any
) -> None:
    node, threads = threads_on_one_node(saver, 3)
    for i, t in enumerate(threads):
        await saver.aput(config(t), checkpoint(i), {"i": i}, {"n": 1})
    host, port = node.host, node.port
    admin = redis.Redis(host=host, port=port, **redis_cluster.client_kwargs)
    try:
        admin.execute_command("CLIENT", "PAUSE", 300, "ALL")  # replies held back
        slow = asyncio.ensure_future(saver.aget_tuple(config(threads[0])))
        other = asyncio.ensure_future(saver.aget_tuple(config(threads[1])))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        tup = await other  # the reply before it was read and dropped
        assert tup is not None and tup.checkpoint["channel_values"] == {"n": 1}
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    tup = await saver.aget_tuple(config(threads[2]))
    assert tup is not None and tup.checkpoint["channel_values"] == {"n": 2}


async def test_an_error_reply_goes_to_its_own_caller_only(
    saver: AsyncRedisClusterSaver, redis_cluster: Any
) -> None:
    """After SCRIPT FLUSH every call in flight gets NOSCRIPT (and sends EVAL); the
    replies stay matched to their callers."""
    node, threads = threads_on_one_node(saver, 20)
    for i, t in enumerate(threads):
        await saver.aput(config(t), checkpoint(i), {"i": i}, {"n": 1})
    admin = redis.Redis(host=node.host, port=node.port, **redis_cluster.client_kwargs)
    try:
        admin.script_flush()
    finally:
        admin.close()
    tuples = await asyncio.gather(*(saver.aget_tuple(config(t)) for t in threads))
    assert [t.checkpoint["channel_values"] for t in tuples if t] == [{"n": i} for i in range(20)]


# ---- a single endpoint: the calls in flight share one of the pool's connections ----


@pytest.fixture
async def single(standalone: Any) -> AsyncIterator[AsyncRedisClusterSaver]:
    options = saver_options(standalone, failover_wait=0)
    async with AsyncRedisClusterSaver.from_conn_string(standalone.url, **options) as s:
        yield s


async def test_calls_in_flight_on_a_single_endpoint_share_a_connection(
    single: AsyncRedisClusterSaver, sent: list[bytes]
) -> None:
    """Concurrent calls go out together on one connection (each gets its own reply);
    the pool is not drained one connection per call, and a call alone keeps its
    connection of its own."""
    threads = [f"s{i}" for i in range(40)]
    for i, t in enumerate(threads):
        await single.aput(config(t), checkpoint(i), {"i": i}, {"n": 1})
    sent.clear()
    tuples = await asyncio.gather(*(single.aget_tuple(config(t)) for t in threads))
    assert [t.checkpoint["channel_values"] for t in tuples if t] == [{"n": i} for i in range(40)]
    reads = [commands_in(p).count("EVALSHA") for p in sent]
    assert sum(reads) == 40 and max(reads) > 1, reads
    pool = single.client.connection_pool
    assert len(pool._in_use_connections) + len(pool._available_connections) <= 4
    pipe = single.shell.single_pipe
    assert pipe is not None
    for _ in range(20):  # the burst's connection goes back to the pool when it is done
        if pipe.conn is None:
            break
        await asyncio.sleep(0.01)
    assert pipe.conn is None and not pipe.waiting


async def test_a_single_endpoints_shared_connection_lost_sends_the_calls_again(
    single: AsyncRedisClusterSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = [f"l{i}" for i in range(20)]
    for i, t in enumerate(threads):
        await single.aput(config(t), checkpoint(i), {"i": i}, {"n": 1})
    dropped = drop_the_first_flushed_connection(monkeypatch)
    tuples = await asyncio.gather(*(single.aget_tuple(config(t)) for t in threads))
    assert dropped
    assert [t.checkpoint["channel_values"] for t in tuples if t] == [{"n": i} for i in range(20)]
    assert await single.aget_tuple(config(threads[0])) is not None


async def test_writes_in_flight_on_a_single_endpoint_share_a_connection(
    single: AsyncRedisClusterSaver, sent: list[bytes]
) -> None:
    """Concurrent writes sent as MULTI/EXEC go out together on the shared connection,
    each block read whole and answered to its own caller: the pool is not drained one
    connection per write."""
    threads = [f"w{i}" for i in range(40)]
    stored = []
    for i, t in enumerate(threads):
        stored.append(await single.aput(config(t), checkpoint(i), {"i": i}, {"n": 1}))
    sent.clear()
    await asyncio.gather(
        *(single.aput_writes(c, [("a", i), ("b", -i)], "task") for i, c in enumerate(stored))
    )
    blocks = [commands_in(p).count("MULTI") for p in sent]
    assert sum(blocks) == 40 and max(blocks) > 1, blocks  # several blocks in one write
    pool = single.client.connection_pool
    assert len(pool._in_use_connections) + len(pool._available_connections) <= 4
    for i, c in enumerate(stored):
        tup = await single.aget_tuple(c)
        assert tup is not None
        assert sorted(v for _, _, v in tup.pending_writes or []) == sorted([i, -i])


async def test_a_refused_write_in_a_shared_block_fails_only_its_caller(
    single: AsyncRedisClusterSaver,
) -> None:
    """An error inside one MULTI/EXEC block on the shared connection (a command of the
    block refused: here a key of the wrong type) reaches that caller alone; the others
    in flight are written."""
    good = [await single.aput(config(f"g{i}"), checkpoint(i), {}, {"n": 1}) for i in range(8)]
    bad = await single.aput(config("bad"), checkpoint(99), {}, {"n": 1})
    keys = single.ops.layout.thread("bad")
    admin = single.client
    write_keys = keys.write_keys
    await admin.delete(write_keys)
    await admin.set(write_keys, "not a set")  # SADD into it fails inside EXEC
    results = await asyncio.gather(
        *(single.aput_writes(c, [("a", 1)], "task") for c in [*good, bad]),
        return_exceptions=True,
    )
    assert all(r is None for r in results[:-1]), results
    assert isinstance(results[-1], ResponseError) and "WRONGTYPE" in str(results[-1])
    await admin.delete(write_keys)

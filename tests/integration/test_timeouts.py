"""A stalled server is not waited for: with ``socket_timeout`` set, a call to a
paused primary (``CLIENT PAUSE``) reaches the caller as redis-py's TimeoutError
within a few timeouts, on every topology and in both I/O styles; neither redis-py's
own retries nor the saver's retry a timeout. Once the pause ends, the same saver
serves again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint
from redis.crc import key_slot
from redis.exceptions import TimeoutError

from cluster.faults import slot_owner
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.keys import KeyLayout
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

SOCKET_TIMEOUT = 0.2
PAUSE_MS = 3000
BOUND = 4 * SOCKET_TIMEOUT + 0.5
"""A timed-out call reaches the caller within this many seconds (measured: one to two
timeouts, 0.2-0.45 s); the pause it must not wait out lasts 3 s."""
TOPOLOGIES = ["standalone", "cluster", "sentinel"]


def options(dep: Any, **extra: Any) -> dict[str, Any]:
    args = {**dep.client_kwargs, "socket_timeout": SOCKET_TIMEOUT}
    return saver_options(dep, connection_args=args, failover_wait=10.0, **extra)


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def checkpoint(n: int) -> Any:
    cp = empty_checkpoint()
    cp["id"] = f"1ef0000{n}-0000-6000-8000-000000000000"
    cp["channel_values"] = {"n": n}
    cp["channel_versions"] = {"n": n}
    return cp


def primary_of(dep: Any, prefix: str, thread: str) -> Any:
    """The node that holds the thread's keys."""
    if dep.topology == "cluster":
        return slot_owner(dep, key_slot(KeyLayout(prefix).thread(thread).namespaces.encode()))
    if dep.topology == "sentinel":  # the primary now: a pause as long as ours fails it over
        host, port = dep.sentinels[0]
        with redis.Redis(host=host, port=port, decode_responses=True) as sentinel:
            addr = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", dep.service_name)
        return next(n for n in dep.nodes if (n.host, n.port) == (addr[0], int(addr[1])))
    return next(n for n in dep.nodes if n.role in ("primary", "backend"))


@contextmanager
def paused(node: Any) -> Iterator[None]:
    """The node stalls every client (as a stuck process would) until the block ends."""
    side = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
    try:
        side.execute_command("CLIENT", "PAUSE", PAUSE_MS)
        yield
    finally:
        side.execute_command("CLIENT", "UNPAUSE")
        side.close()


def timed(call: Any) -> float:
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        call()
    return time.monotonic() - began


async def atimed(call: Any) -> float:
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        await call()
    return time.monotonic() - began


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_stalled_primary_times_out_at_once(request: pytest.FixtureRequest, topology: str) -> None:
    dep = deployment_for(request, topology)
    opts = options(dep)
    with RedisClusterSaver.from_conn_string(url_of(dep), **opts) as saver:
        saver.put(config("stalled"), checkpoint(1), {"source": "input", "step": 0}, {"n": 1})
        node = primary_of(dep, opts["key_prefix"], "stalled")
        with paused(node):
            read = timed(lambda: saver.get_tuple(config("stalled")))
            write = timed(
                lambda: saver.put(
                    config("stalled"), checkpoint(2), {"source": "loop", "step": 1}, {"n": 2}
                )
            )
        print(f"\n{topology} sync read {read:.2f} write {write:.2f}")
        assert read < BOUND, f"get_tuple waited {read:.2f} s"
        assert write < BOUND, f"put waited {write:.2f} s"
        saver.put(config("stalled"), checkpoint(3), {"source": "loop", "step": 2}, {"n": 3})
        got = saver.get_tuple(config("stalled"))
        assert got is not None and got.checkpoint["channel_values"] == {"n": 3}


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_async_a_stalled_primary_times_out_at_once(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    opts = options(dep)
    async with AsyncRedisClusterSaver.from_conn_string(url_of(dep), **opts) as saver:
        meta: Any = {"source": "input", "step": 0}
        await saver.aput(config("stalled"), checkpoint(1), meta, {"n": 1})
        node = primary_of(dep, opts["key_prefix"], "stalled")
        with paused(node):
            read = await atimed(lambda: saver.aget_tuple(config("stalled")))
            write = await atimed(
                lambda: saver.aput(
                    config("stalled"), checkpoint(2), {"source": "loop", "step": 1}, {"n": 2}
                )
            )
        print(f"\n{topology} async read {read:.2f} write {write:.2f}")
        assert read < BOUND, f"aget_tuple waited {read:.2f} s"
        assert write < BOUND, f"aput waited {write:.2f} s"
        await saver.aput(config("stalled"), checkpoint(3), {"source": "loop", "step": 2}, {"n": 3})
        got = await saver.aget_tuple(config("stalled"))
        assert got is not None and got.checkpoint["channel_values"] == {"n": 3}

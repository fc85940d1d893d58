"""A slot move the operator's tool left half done (IMPORTING on the target, MIGRATING on
the source, some keys moved, never finished) is waited out for ``failover_wait``, like
any slot in motion; then the caller gets a SlotMigrationError naming the slot and the
fix, raised from the redis-py error, not that raw error. Once the move is finished, the
thread works again. Sync and async, put and get_tuple, on a real cluster."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from redis.crc import key_slot
from redis.exceptions import ClusterError, RedisError

import redis_cluster_saver
from cluster import Migration, begin_migration, finish_migration
from cluster.faults import slot_owner
from cluster.ports import HOST
from cluster.processes import admin_client, command
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver, SaverError
from redis_cluster_saver.keys import KeyLayout

from .conftest import saver_options

THREAD = "stalled"
WAIT = 1.0
LATE = 1.5
"""Seconds past ``failover_wait`` the error may come: the last attempt, begun just
before the deadline, runs out redis-py's own redirection budget ("TTL exhausted",
its TRYAGAIN pauses) first."""


def cfg(thread: str, checkpoint_id: str | None = None) -> Any:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id:
        c["checkpoint_id"] = checkpoint_id
    return {"configurable": c}


VERSIONS = iter(range(1, 1000))


def checkpoint(value: str) -> Any:
    """A checkpoint whose channel ``x`` holds ``value`` at a version of its own."""
    c = empty_checkpoint()
    c["channel_values"] = {"x": value}
    c["channel_versions"] = {"x": next(VERSIONS)}
    return c


def put_args(thread: str, value: str) -> tuple[Any, Any, Any, Any]:
    """What ``put`` takes to store ``value`` as the thread's next checkpoint."""
    c = checkpoint(value)
    return cfg(thread), c, {}, c["channel_versions"]


def half_move(dep: Any, prefix: str) -> tuple[int, Migration]:
    """SETSLOT IMPORTING/MIGRATING for the thread's slot and MIGRATE of every key but
    the one its read script declares (so a read runs on the source and meets the moved
    keys), then nothing more: the operator's tool died."""
    keys = KeyLayout(prefix).thread(THREAD)
    slot = key_slot(keys.namespaces.encode())
    source = slot_owner(dep, slot)
    target = next(p for p in dep.primaries if p.port != source.port)
    m = begin_migration(dep, slot, target)
    client = admin_client(source.port, decode=False)
    try:
        held: list[bytes] = command(client, "CLUSTER", "GETKEYSINSLOT", slot, 1000)
        moving = [k for k in held if k != keys.namespaces.encode()]
        assert moving and len(moving) < len(held), held
        command(client, "MIGRATE", HOST, target.port, "", 0, 10_000, "KEYS", *moving)
        left = command(client, "CLUSTER", "COUNTKEYSINSLOT", slot)
    finally:
        client.close()
    with admin_client(target.port) as on_target:
        assert command(on_target, "CLUSTER", "COUNTKEYSINSLOT", slot) == len(moving)
    assert left == 1
    return slot, m


def check_clear(err: BaseException, slot: int, took: float) -> None:
    assert isinstance(err, SaverError) and type(err).__name__ == "SlotMigrationError", (
        f"raw {type(err).__name__}: {err}"
    )
    assert isinstance(err, redis_cluster_saver.SlotMigrationError)
    assert isinstance(err, ClusterError)  # handlers of redis-py's errors still catch it
    text = str(err)
    assert f"slot {slot} " in text, text
    assert "--cluster fix" in text and f"CLUSTER SETSLOT {slot} NODE" in text, text
    assert f"CLUSTER SETSLOT {slot} STABLE" in text, text
    assert err.slots == (slot,)
    cause = err.__cause__
    assert isinstance(cause, RedisError) and type(cause).__module__ == "redis.exceptions"
    assert not isinstance(cause, SaverError)
    assert str(cause) in text
    assert WAIT <= took <= WAIT + LATE, took


def timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    began = time.monotonic()
    with pytest.raises(RedisError) as caught:
        call()
    return caught.value, time.monotonic() - began


async def atimed(call: Callable[[], Awaitable[Any]]) -> tuple[BaseException, float]:
    began = time.monotonic()
    with pytest.raises(RedisError) as caught:
        await call()
    return caught.value, time.monotonic() - began


async def test_a_stalled_slot_move_ends_in_a_clear_error_and_the_thread_works_once_finished(
    fresh_cluster: Any,
) -> None:
    dep = fresh_cluster
    options = saver_options(dep, failover_wait=WAIT)
    with RedisClusterSaver(dep.url, **options) as saver:
        for i in range(3):
            saver.put(*put_args(THREAD, f"before-{i}"))
        async with AsyncRedisClusterSaver(dep.url, **options) as asaver:
            await asaver.asetup()
            slot, m = half_move(dep, options["key_prefix"])

            err, took = timed(lambda: saver.put(*put_args(THREAD, "s")))
            check_clear(err, slot, took)
            err, took = timed(lambda: saver.get_tuple(cfg(THREAD)))
            check_clear(err, slot, took)
            err, took = await atimed(lambda: asaver.aput(*put_args(THREAD, "a")))
            check_clear(err, slot, took)
            err, took = await atimed(lambda: asaver.aget_tuple(cfg(THREAD)))
            check_clear(err, slot, took)

            # Another thread, on a slot at rest, answers at once, as ever.
            other = KeyLayout(options["key_prefix"]).thread("elsewhere")
            assert key_slot(other.namespaces.encode()) != slot
            began = time.monotonic()
            saver.put(*put_args("elsewhere", "o"))
            assert time.monotonic() - began < WAIT

            finish_migration(m)
            assert slot_owner(dep, slot).port == m.target.port

            stored = saver.put(*put_args(THREAD, "after-sync"))
            got = saver.get_tuple(cfg(THREAD))
            assert got is not None and got.config == stored
            assert got.checkpoint["channel_values"] == {"x": "after-sync"}
            stored = await asaver.aput(*put_args(THREAD, "after-async"))
            agot = await asaver.aget_tuple(cfg(THREAD))
            assert agot is not None and agot.config == stored
            assert agot.checkpoint["channel_values"] == {"x": "after-async"}
            listed = [t.checkpoint["channel_values"]["x"] for t in saver.list(cfg(THREAD))]
            assert listed == ["after-async", "after-sync", "before-2", "before-1", "before-0"]

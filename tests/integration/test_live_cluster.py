"""A busy thread's slot moves while agents in other processes write and read it, sync
and async: key by key (SETSLOT/MIGRATE without REPLACE, held half-moved for a while)
and with valkey 9's atomic CLUSTER MIGRATESLOTS. Callers see no error, only latency;
the move never meets BUSYKEY; afterwards every acknowledged checkpoint is listed and
reads back the same."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.crc import key_slot

from cluster import begin_migration, finish_migration, migrate_keys, migrate_slots_atomically
from cluster.faults import slot_owner
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.keys import KeyLayout
from tests.support.agents import Agent, Busy, async_busy_writer, busy_writer

from .conftest import saver_options

SECONDS = 30.0  # the most an agent runs; the test stops them sooner
THREAD = "busy"


def move(dep: Any, slot: int, target: Any, method: str) -> None:
    if method == "atomic":
        migrate_slots_atomically(dep, [(slot, slot)], target)
        return
    m = begin_migration(dep, slot, target)
    migrate_keys(m, 5)  # half moved: the agents go on meanwhile
    time.sleep(1.0)
    migrate_keys(m, 20)
    time.sleep(0.5)
    finish_migration(m)


def check_all_listed(saver: RedisClusterSaver, results: list[Busy]) -> int:
    written = {cid: m for busy in results for cid, m in busy.written}
    listed = {
        t.checkpoint["id"]: t.checkpoint["channel_values"]["messages"]
        for t in saver.list({"configurable": {"thread_id": THREAD}})
    }
    assert set(written) <= set(listed), sorted(set(written) - set(listed))[:5]
    for cid, messages in written.items():
        assert listed[cid] == messages
    return len(written)


@pytest.mark.parametrize("method", ["keys", "atomic"])
def test_a_busy_threads_slot_moves_under_sync_and_async_agents(
    request: pytest.FixtureRequest, method: str
) -> None:
    dep = request.getfixturevalue("fresh_cluster" if method == "keys" else "fresh_bare_cluster")
    options = saver_options(dep, failover_wait=20)
    slot = key_slot(KeyLayout(options["key_prefix"]).thread(THREAD).namespaces.encode())
    with (
        Agent(busy_writer, dep.url, options, THREAD, SECONDS) as sync_agent,
        Agent(async_busy_writer, dep.url, options, THREAD, SECONDS) as async_agent,
    ):
        agents = [sync_agent, async_agent]
        for agent in agents:
            assert agent.recv() == ("ready",)
        time.sleep(1.0)
        owner = slot_owner(dep, slot)
        target = next(p for p in dep.primaries if p.port != owner.port)
        began = time.monotonic()
        move(dep, slot, target, method)
        moved_in = time.monotonic() - began
        time.sleep(1.0)
        results: list[Busy] = [agent.call("stop") for agent in agents]
    assert slot_owner(dep, slot).port == target.port
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        acknowledged = check_all_listed(saver, results)
    slowest = max(b.slowest for b in results)
    print(
        f"\n| {method} | {moved_in:.2f} s | {acknowledged} | "
        f"{sum(len(b.errors) for b in results)} | {slowest * 1000:.0f} ms |"
    )
    assert [b.errors for b in results] == [[], []]
    assert all(len(b.written) > 10 for b in results)
    assert slowest < options["failover_wait"]

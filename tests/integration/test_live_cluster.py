"""A busy thread's slot moves while agents in other processes write and read it, sync
and async: key by key (SETSLOT/MIGRATE without REPLACE, held half-moved for a while)
and with valkey 9's atomic CLUSTER MIGRATESLOTS. Callers see no error, only latency;
the move never meets BUSYKEY; afterwards every acknowledged checkpoint is listed and
reads back the same."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from redis.crc import key_slot

from cluster import (
    add_primary,
    begin_migration,
    finish_migration,
    migrate_keys,
    migrate_slots_atomically,
    rebalance,
)
from cluster.faults import slot_owner
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.keys import KeyLayout
from tests.support.agents import Agent, Busy, Fleet, async_busy_writer, async_fleet, busy_writer

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


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


@pytest.mark.parametrize("method", ["keys", "atomic"])
def test_scale_out_under_32_agents_loses_nothing(
    request: pytest.FixtureRequest, method: str
) -> None:
    """A fourth primary (with a replica) joins and takes slots while 32 agents in four
    processes run; afterwards the threads live on four primaries."""
    dep = request.getfixturevalue("fresh_cluster" if method == "keys" else "fresh_bare_cluster")
    options = saver_options(dep, failover_wait=20)
    layout = KeyLayout(options["key_prefix"])
    threads = [f"agent-{i}" for i in range(32)]
    slots = {t: key_slot(layout.thread(t).namespaces.encode()) for t in threads}
    groups = [threads[i::4] for i in range(4)]
    with contextlib.ExitStack() as stack:
        agents = [
            stack.enter_context(Agent(async_fleet, dep.url, options, g, 60.0)) for g in groups
        ]
        for agent in agents:
            assert agent.recv() == ("ready",)
        time.sleep(1.0)
        began = time.monotonic()
        new = add_primary(dep)
        if method == "atomic":
            rebalance(dep, "atomic")
        else:  # a quarter of the agents' slots, and some empty ones (8 ms a slot)
            moving = {slots[t] for t in threads[::4]} | set(range(0, 16384, 128))
            rebalance(dep, "keys", slots=moving)
        moved_in = time.monotonic() - began
        time.sleep(1.0)
        fleets: list[Fleet] = [agent.call("stop") for agent in agents]
    owners = {t: slot_owner(dep, s).port for t, s in slots.items()}
    assert new.port in owners.values() and len(set(owners.values())) == 4, owners
    written = {(t, cid): m for f in fleets for t, cid, m in f.written}
    lost = 0
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        for thread in threads:
            listed = {
                tup.checkpoint["id"]: tup.checkpoint["channel_values"]["messages"]
                for tup in saver.list({"configurable": {"thread_id": thread}})
            }
            mine = {cid: m for (t, cid), m in written.items() if t == thread}
            lost += len(set(mine) - set(listed))
            assert all(listed.get(cid) == m for cid, m in mine.items())
    errors = [e for f in fleets for e in f.errors]
    latencies = [x for f in fleets for x in f.latencies]
    print(
        f"\n| scale-out {method} | {moved_in:.1f} s | {len(written)} | {lost} | {len(errors)} | "
        f"{p99(latencies) * 1000:.0f} ms | {max(latencies) * 1000:.0f} ms |"
    )
    assert errors == [] and lost == 0, "\n".join(errors[:2])
    assert all(len({t for t, _, _ in f.written}) == 8 for f in fleets)

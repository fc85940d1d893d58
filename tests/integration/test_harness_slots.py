"""The harness's slot moves and scale-out, proven on idle clusters with plain redis-py data.

The saver's own behaviour under these moves is tested elsewhere; these tests make sure the
operator-side tools do what they claim (half-moved slots answer ASK, BUSYKEY is reported
rather than overwritten, atomic moves keep values, new primaries join, take slots and
die with the deployment).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, TryAgainError

from cluster import (
    Deployment,
    FaultError,
    Node,
    add_primary,
    begin_migration,
    finish_migration,
    healthy,
    migrate_keys,
    migrate_slots_atomically,
    plan_rebalance,
    rebalance,
    slot_owner,
    stop,
)
from cluster.model import load_state
from cluster.processes import is_running
from cluster.topologies import cluster_view


def direct(node: Node) -> redis.Redis:
    """A plain client of one node: it sees ASK/MOVED instead of following them."""
    return redis.Redis(host=node.host, port=node.port, decode_responses=True, socket_timeout=5)


def asking(node: Node, *args: Any) -> Any:
    """``args`` sent to ``node`` right after ASKING on the same connection."""
    with direct(node) as r:
        pipe = r.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.execute_command(*args)
        return pipe.execute()[1]


def myself(node: Node) -> str:
    """The node's own line of CLUSTER NODES (it carries the importing/migrating markers)."""
    with direct(node) as r:
        text = str(r.execute_command("CLUSTER", "NODES"))
    return next(line for line in text.splitlines() if "myself" in line)


def owners_everywhere(dep: Deployment) -> list[dict[int, str]]:
    """Per live node: slot -> owning primary id, as that node sees it."""
    views = []
    for n in dep.nodes:
        if is_running(n.pid):
            owners: dict[int, str] = {}
            for v in cluster_view(n.port):
                if "master" in v["flags"]:
                    for lo, hi in v["slots"]:
                        owners.update(dict.fromkeys(range(lo, hi + 1), v["id"]))
            views.append(owners)
    return views


def loaded_modules(node: Node) -> set[str]:
    """MODULE LIST names, without the scripting engine valkey 9 lists as module "lua"."""
    with direct(node) as r:
        return {m["name"] for m in r.module_list()} - {"lua"}


def count_in_slot(node: Node, slot: int) -> int:
    with direct(node) as r:
        return int(r.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))


def assert_stop_kills_every_node(dep: Deployment) -> None:
    pids = [n.pid for n in dep.nodes]
    stop(dep)
    for pid in pids:
        assert not is_running(pid), f"pid {pid} survived stop"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ------------------------------------------------------------------ key by key


def test_a_half_migrated_slot_answers_ask_and_finishes_whole(fresh_cluster: Deployment) -> None:
    dep = fresh_cluster
    rc = RedisCluster.from_url(dep.url, decode_responses=True)
    values = {f"{{half}}k{i}": f"v{i}" for i in range(50)}
    try:
        for k, v in values.items():
            rc.set(k, v)
        slot = rc.keyslot(next(iter(values)))
        source = slot_owner(dep, slot)
        target = next(p for p in dep.primaries if p.node_id != source.node_id)

        m = begin_migration(dep, slot, target)
        assert (m.source.node_id, m.target.node_id) == (source.node_id, target.node_id)
        assert f"[{slot}->-{target.node_id}]" in myself(source)
        assert f"[{slot}-<-{source.node_id}]" in myself(target)
        assert migrate_keys(m, 20) == 20
        assert count_in_slot(source, slot) == 30

        with direct(source) as s:
            left = set(s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100))
            moved = sorted(set(values) - left)
            assert len(moved) == 20
            with pytest.raises(AskError) as ask:
                s.get(moved[0])
            assert (ask.value.slot_id, ask.value.port) == (slot, target.port)
            kept = sorted(left)[0]
            assert s.get(kept) == values[kept]  # the source still serves what it holds
            with pytest.raises(TryAgainError):
                s.mget(moved[0], kept)  # a multi-key read split across both nodes
        with direct(target) as t, pytest.raises(MovedError):
            t.get(moved[0])  # without ASKING the target still refers to the source
        assert asking(target, "GET", moved[0]) == values[moved[0]]
        # A cluster client follows ASK both ways; a new key lands on the target.
        assert [rc.get(k) for k in values] == list(values.values())
        rc.set("{half}new", "fresh")
        assert asking(target, "EXISTS", "{half}new") == 1

        finish_migration(m)
        assert m.moved == 50
        assert count_in_slot(source, slot) == 0
        assert count_in_slot(target, slot) == 51
        assert "[" not in myself(source) and "[" not in myself(target)
        views = owners_everywhere(dep)
        assert len(views) == 6 and all(v[slot] == target.node_id for v in views)
        assert [rc.get(k) for k in values] == list(values.values())
    finally:
        rc.close()
    with RedisCluster.from_url(dep.url, decode_responses=True) as fresh:
        assert [fresh.get(k) for k in values] == list(values.values())
        assert fresh.get("{half}new") == "fresh"


def test_busykey_is_reported_and_nothing_is_replaced(fresh_cluster: Deployment) -> None:
    dep = fresh_cluster
    values = {f"{{busy}}k{i}": f"v{i}" for i in range(10)}
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        for k, v in values.items():
            rc.set(k, v)
        slot = rc.keyslot("{busy}")
    source = slot_owner(dep, slot)
    target = next(p for p in dep.primaries if p.node_id != source.node_id)
    m = begin_migration(dep, slot, target)
    victim = "{busy}k3"
    # The source's copy was written before the move began: a MIGRATING source sends new
    # keys to the target with ASK, so it cannot be created there now.
    with direct(source) as s, pytest.raises(AskError):
        s.set("{busy}other", "x")
    assert asking(target, "SET", victim, "target-copy") is True

    with pytest.raises(FaultError, match="BUSYKEY") as info:
        migrate_keys(m, 100)
    message = str(info.value)
    assert victim in message
    assert not [k for k in values if k != victim and k in message], message
    with direct(source) as s:
        assert s.get(victim) == values[victim]  # the source keeps its copy
    assert asking(target, "GET", victim) == "target-copy"  # not overwritten
    assert count_in_slot(source, slot) == 1  # the other nine moved

    assert asking(target, "DEL", victim) == 1
    finish_migration(m)
    assert slot_owner(dep, slot).node_id == target.node_id
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        assert [rc.get(k) for k in values] == list(values.values())


# ---------------------------------------------------------------------- atomic


def test_atomic_migration_moves_a_range_with_its_keys(fresh_bare_cluster: Deployment) -> None:
    dep = fresh_bare_cluster
    lo, hi = 5400, 5520  # straddles the first two primaries' ranges
    keys = [k for k in (f"a{i}" for i in range(80_000)) if lo <= key_slot(k.encode()) <= hi]
    keys = keys[:300]
    assert len(keys) == 300
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        for k in keys:
            rc.set(k, k[::-1])
    sources = {slot_owner(dep, lo).node_id, slot_owner(dep, hi).node_id}
    assert len(sources) == 2
    target = next(p for p in dep.primaries if p.node_id not in sources)
    assert loaded_modules(target) == set()

    began = time.monotonic()
    migrate_slots_atomically(dep, [(lo, hi)], target, timeout=30)
    elapsed = time.monotonic() - began

    views = owners_everywhere(dep)
    assert len(views) == 6
    assert all(v[s] == target.node_id for v in views for s in range(lo, hi + 1))
    assert all(v[lo - 1] in sources and v[hi + 1] in sources for v in views)  # only the range
    slots = range(lo, hi + 1)
    assert sum(count_in_slot(target, s) for s in slots) == len(keys)
    for p in dep.primaries:
        if p.node_id in sources:
            assert sum(count_in_slot(p, s) for s in slots) == 0
    with direct(target) as t:
        assert [t.get(k) for k in keys] == [k[::-1] for k in keys]
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        assert [rc.get(k) for k in keys] == [k[::-1] for k in keys]
    assert healthy(dep) is None
    assert elapsed < 30


def test_atomic_migration_is_refused_while_modules_are_loaded(redis_cluster: Deployment) -> None:
    dep = redis_cluster
    source = slot_owner(dep, 0)
    target = next(p for p in dep.primaries if p.node_id != source.node_id)
    with pytest.raises(FaultError, match="modules=False"):
        migrate_slots_atomically(dep, [(0, 0)], target, timeout=5)
    assert slot_owner(dep, 0).node_id == source.node_id


# ------------------------------------------------------------------- scale-out


def _write_spread(dep: Deployment, count: int) -> dict[str, str]:
    values = {f"pre{i}": f"value-{i}" for i in range(count)}
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        for k, v in values.items():
            rc.set(k, v)
    return values


def _assert_joined(dep: Deployment, new: Node, modules: set[str]) -> Node:
    """The new primary and its replica are recorded, saved, linked; returns the replica."""
    assert new.role == "primary" and new.node_id
    assert len(dep.primaries) == 4 and len(dep.replicas) == 4
    state = load_state(Path(dep.workdir))
    assert state is not None and [n.pid for n in state.nodes] == [n.pid for n in dep.nodes]
    replica = dep.nodes[-1]
    assert replica.role == "replica" and replica.pid != new.pid
    assert loaded_modules(new) == modules
    with direct(replica) as r:
        assert r.info("replication")["master_link_status"] == "up"
        assert r.info("replication")["master_port"] == new.port
    return replica


def _primary_slot_counts(dep: Deployment) -> list[dict[str, int]]:
    return [
        {owner: sum(1 for o in v.values() if o == owner) for owner in set(v.values())}
        for v in owners_everywhere(dep)
    ]


def test_add_primary_then_rebalance_key_by_key(fresh_cluster: Deployment) -> None:
    dep = fresh_cluster
    values = _write_spread(dep, 400)
    new = add_primary(dep)
    _assert_joined(dep, new, {"ReJSON", "search"})
    assert healthy(dep) is None

    plan = plan_rebalance(dep)
    assert {mv.target.node_id for mv in plan} == {new.node_id}
    assert sum(len(mv.slots) for mv in plan) == 4096
    used = {key_slot(k.encode()) for k in values}
    # All 4096 slots key by key take ~35 s (each SETSLOT waits for the replica): move
    # the last 60 of each donor's share plus every planned slot that holds a key.
    wanted = {s for mv in plan for s in mv.slots[-60:]} | (
        used & {s for mv in plan for s in mv.slots}
    )
    moves = rebalance(dep, "keys", slots=wanted)
    assert {s for mv in moves for s in mv.slots} == wanted

    counts = _primary_slot_counts(dep)
    assert len(counts) == 8
    for c in counts:
        assert len(c) == 4 and c[str(new.node_id)] == len(wanted)
    assert all(o[s] == new.node_id for o in owners_everywhere(dep) for s in wanted)
    with direct(new) as r:
        assert r.dbsize() == sum(1 for k in values if key_slot(k.encode()) in wanted)
        assert r.dbsize() > 0
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        assert [rc.get(k) for k in values] == list(values.values())
    assert healthy(dep) is None
    assert_stop_kills_every_node(dep)


def test_add_primary_then_rebalance_atomically(fresh_bare_cluster: Deployment) -> None:
    dep = fresh_bare_cluster
    values = _write_spread(dep, 400)
    new = add_primary(dep)
    replica = _assert_joined(dep, new, set())

    began = time.monotonic()
    moves = rebalance(dep, "atomic", timeout=30)
    elapsed = time.monotonic() - began
    assert sum(len(mv.slots) for mv in moves) == 4096
    counts = _primary_slot_counts(dep)
    assert len(counts) == 8 and all(sorted(c.values()) == [4096] * 4 for c in counts)
    with RedisCluster.from_url(dep.url, decode_responses=True) as rc:
        assert [rc.get(k) for k in values] == list(values.values())
        on_new = sum(1 for k in values if rc.get_node_from_key(k).port == new.port)
    assert 50 < on_new < 200  # about a quarter of the keys moved
    with direct(new) as p, direct(replica) as r:
        assert p.dbsize() == on_new
        deadline = time.monotonic() + 10
        while r.dbsize() != on_new and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.dbsize() == on_new  # the new replica holds the moved keys too
    assert healthy(dep) is None
    assert elapsed < 30
    assert_stop_kills_every_node(dep)

"""Across threads: the same queries over the same data give the same results, in the
same order, whether answered by the search index (standalone), by fanning out to the
index of every primary (cluster), or by the thread directory (plain, proxy)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from redis_cluster_saver import RedisClusterSaver, search

from .conftest import deployment_for, saver_options

THREADS = [f"thread-{i:02d}" for i in range(14)] + ["", "{odd},id|x"]
RUNS = ["run-a", "run-b", "run-c"]
SOURCES = ["input", "loop", "loop", "update"]
IDS = iter([str(uuid6(clock_seq=-1)) for _ in range(400)])
# (thread, ns, checkpoint id, metadata), written in this order on every topology
DATA: list[tuple[str, str, str, dict[str, Any]]] = []
for n, (thread, ns) in enumerate(itertools.product(THREADS, ["", "child:1"])):
    for step in range(5 if ns == "" else 2):
        md = {
            "source": SOURCES[(n + step) % 4],
            "step": step,
            "run_id": RUNS[(n + step) % 3],
            "custom": {"x": step % 2},
        }
        DATA.append((thread, ns, next(IDS), md))

# a copied thread repeats checkpoint ids: ties are ordered by thread, then namespace
COPIED = [("thread-99", ns, cid, md) for t, ns, cid, md in DATA if t == "thread-03"]
ROWS = DATA + COPIED
BEFORE = sorted(d[2] for d in DATA)[len(DATA) // 2]
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("all", {}),
    ("run", {"filter": {"run_id": "run-b"}}),
    ("loop-7", {"filter": {"source": "loop"}, "limit": 7}),
    ("loop-step", {"filter": {"source": "loop", "step": 2}}),
    ("before", {"before": {"configurable": {"checkpoint_id": BEFORE}}, "limit": 9}),
    ("custom", {"filter": {"custom": {"x": 1}}, "limit": 11}),
    ("none", {"filter": {"run_id": "nope"}}),
]


def expected(name: str, rows: list[tuple[str, str, str, dict[str, Any]]]) -> list[Any]:
    """What every path must return, computed in Python from the data."""
    opts = dict(QUERIES)[name]
    out = [
        r
        for r in rows
        if all(r[3].get(k) == v for k, v in opts.get("filter", {}).items())
        and (not opts.get("before") or r[2] < BEFORE)
    ]
    out.sort(key=lambda r: (r[2], r[0], r[1]), reverse=True)
    return [(t, ns, cid, md["run_id"]) for t, ns, cid, md in out[: opts.get("limit")]]


def load(saver: RedisClusterSaver) -> None:
    parents: dict[tuple[str, str], str] = {}
    for thread, ns, cid, md in DATA:
        cp = empty_checkpoint()
        cp["id"] = cid
        cp["channel_values"] = {"v": cid}
        cp["channel_versions"] = {"v": 1}
        conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
        if (thread, ns) in parents:
            conf["checkpoint_id"] = parents[(thread, ns)]
        saver.put({"configurable": conf}, cp, md, {"v": 1})  # type: ignore[arg-type]
        parents[(thread, ns)] = cid
    saver.copy_thread("thread-03", "thread-99")


def answers(saver: RedisClusterSaver) -> dict[str, list[Any]]:
    out = {}
    for name, opts in QUERIES:
        out[name] = [
            (
                t.config["configurable"]["thread_id"],
                t.config["configurable"]["checkpoint_ns"],
                t.checkpoint["id"],
                t.metadata["run_id"],
            )
            for t in saver.list(None, **opts)
        ]
        assert all(t.checkpoint["channel_values"] for t in saver.list(None, **opts))
    saver.delete_for_runs(["run-c"])
    out["after-delete"] = [t.checkpoint["id"] for t in saver.list(None)]
    return out


PATHS = {"standalone": "index", "cluster": "fan-out", "plain": "directory", "proxy": "directory"}


@pytest.mark.parametrize("topology", list(PATHS))
def test_cross_thread_queries_agree_on_every_path(
    request: pytest.FixtureRequest, topology: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "PAGE", 7)  # many pages: exercises the merge
    deployment = deployment_for(request, topology)
    with RedisClusterSaver.from_conn_string(deployment.url, **saver_options(deployment)) as saver:
        load(saver)
        got = answers(saver)
        caps = saver.capabilities
        assert caps is not None
        path = "directory"
        if caps.search:
            names = saver.ops.checkpoint_indexes.names or []
            path = "fan-out" if len(names) > 1 else "index"
        assert path == PATHS[topology]
        if topology == "cluster":
            assert len(saver.ops.checkpoint_indexes.names or []) == 3
    for name, _ in QUERIES:
        assert got[name] == expected(name, ROWS), name
    survivors = [r for r in ROWS if r[3]["run_id"] != "run-c"]
    order = sorted(survivors, key=lambda r: (r[2], r[0], r[1]), reverse=True)
    assert got["after-delete"] == [r[2] for r in order]


def test_fan_out_follows_failover_and_moved_slots(fresh_cluster: Any) -> None:
    """After a primary dies, its replica answers with the replicated index; after the
    slot of an index name moves, the saver notices the missing index and re-creates
    one per primary. Results stay complete throughout."""
    from redis.crc import key_slot

    from cluster.faults import kill_primary, migrate_slot, slot_owner, wait_for_failover

    dep = fresh_cluster
    options = saver_options(dep)
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        load(saver)
        want = [t.checkpoint["id"] for t in saver.list(None, filter={"run_id": "run-b"})]
        assert len(want) == len([r for r in ROWS if r[3]["run_id"] == "run-b"])
        old = kill_primary(dep, 1)
        wait_for_failover(dep, old)
        again = [t.checkpoint["id"] for t in saver.list(None, filter={"run_id": "run-b"})]
        assert again == want
        before = list(saver.ops.checkpoint_indexes.names or [])
        name = before[0]
        slot = key_slot(name.encode())
        owner = slot_owner(dep, slot)
        target = next(p for p in dep.primaries if p.port != owner.port)
        migrate_slot(dep, slot, target)
        moved = [t.checkpoint["id"] for t in saver.list(None, filter={"run_id": "run-b"})]
        assert moved == want
        assert saver.ops.checkpoint_indexes.names != before  # worked out again after the move

"""The saver's concurrency and fault rules hold for the store: many processes writing
and deleting the same namespaces leave listings and searches exact, a primary killed
under load loses no acknowledged durable write (each waited out within
``failover_wait``), and a label's slot moved under load loses nothing."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from typing import Any

import pytest
from redis.crc import key_slot

from cluster.faults import kill_primary, migrate_slot, slot_owner, wait_for_failover
from redis_cluster_saver.keys import KeyLayout
from redis_cluster_saver.store import RedisClusterStore
from tests.support.embeddings import DIMS, LetterEmbeddings
from tests.support.servers import url_of

from .conftest import deployment_for

LABELS = ["alice", "bob", "carol"]
STEPS = 120
SECONDS_BOUND = 60.0


def writer(url: str, prefix: str, seed: int, out: Any) -> None:
    """Puts and deletes over shared namespaces; reports what it left (key -> value)."""
    import random

    rng = random.Random(seed)
    mine: dict[tuple[tuple[str, ...], str], int | None] = {}
    deadline = time.monotonic() + SECONDS_BOUND
    with RedisClusterStore.from_conn_string(url, key_prefix=prefix) as store:
        for step in range(STEPS):
            if time.monotonic() > deadline:
                break
            ns = (rng.choice(LABELS), rng.choice(["mem", "docs"]))
            key = f"w{seed}-{rng.randrange(10)}"  # each process its own keys
            if rng.random() < 0.3:
                store.delete(ns, key)
                mine[(ns, key)] = None
            else:
                store.put(ns, key, {"step": step, "by": seed})
                mine[(ns, key)] = step
    out.put({f"{'/'.join(ns)}|{key}": v for (ns, key), v in mine.items()})


@pytest.mark.parametrize("topology", ["standalone", "cluster", "proxy"])
def test_processes_writing_and_deleting_leave_the_store_exact(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    prefix = f"sf{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(url_of(dep), prefix, i, results)) for i in range(4)]
    for p in procs:
        p.start()
    left: dict[str, int | None] = {}
    for _ in procs:
        left.update(results.get(timeout=SECONDS_BOUND * 2))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    want = {k: v for k, v in left.items() if v is not None}
    with RedisClusterStore.from_conn_string(url_of(dep), key_prefix=prefix) as store:
        found = {
            f"{'/'.join(i.namespace)}|{i.key}": i.value["step"]
            for i in store.search((), limit=10_000)
        }
        assert found == want
        namespaces = {tuple(k.split("|")[0].split("/")) for k in want}
        assert set(store.list_namespaces(limit=1000)) == namespaces
        for k, step in want.items():
            ns, key = k.split("|")
            item = store.get(tuple(ns.split("/")), key)
            assert item is not None and item.value["step"] == step


def test_a_primary_killed_under_load_loses_no_durable_put(request: pytest.FixtureRequest) -> None:
    dep = request.getfixturevalue("fresh_cluster")
    options = {
        "key_prefix": f"sk{uuid.uuid4().hex[:8]}",
        "durability": {"replicas": 1, "timeout_ms": 1000},
        "failover_wait": 20,
    }
    acked: dict[tuple[tuple[str, ...], str], int] = {}
    errors: list[str] = []
    stop = time.monotonic() + 8
    lock = threading.Lock()

    def load(n: int) -> None:
        with RedisClusterStore.from_conn_string(dep.url, **options) as store:
            i = 0
            while time.monotonic() < stop and i < 5000:
                ns, key = (f"user{(n * 7 + i) % 12}", "mem"), f"k{n}-{i}"
                try:
                    store.put(ns, key, {"i": i})
                    with lock:
                        acked[(ns, key)] = i
                except Exception as exc:  # counted: a failover in progress, too few replicas
                    errors.append(type(exc).__name__)
                i += 1

    workers = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    time.sleep(2.5)
    victim = kill_primary(dep, 0)
    wait_for_failover(dep, victim)
    for w in workers:
        w.join(60)
    assert acked
    with RedisClusterStore.from_conn_string(dep.url, key_prefix=options["key_prefix"]) as store:
        lost = []
        for (ns, key), i in acked.items():
            item = store.get(ns, key)
            if item is None or item.value != {"i": i}:
                lost.append((ns, key))
    print(f"store under kill -9: {len(acked)} acknowledged, {len(lost)} lost, {len(errors)} errors")
    assert lost == []


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "vector-index"])
def test_moving_a_busy_labels_slot_loses_nothing(
    request: pytest.FixtureRequest, indexed: bool
) -> None:
    """A label's slot moves (IMPORTING/MIGRATING, key by key) while a writer puts, gets
    and searches under it: every call succeeds (ASK and MOVED waited out) and every put
    is there afterwards, under the new owner (with a vector index: found by a query
    through the new owner's index too)."""
    dep = request.getfixturevalue("fresh_cluster")
    prefix = f"sm{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"key_prefix": prefix}
    if indexed:
        options["index"] = {"dims": DIMS, "embed": LetterEmbeddings(), "fields": ["text"]}
    query = "item" if indexed else None
    errors: list[BaseException] = []
    written: list[int] = []
    stop = threading.Event()

    def busy() -> None:
        with RedisClusterStore.from_conn_string(dep.url, **options) as store:
            n = 0
            while not stop.is_set() and n < 20_000:
                try:
                    store.put(("mover", "mem"), f"k{n}", {"n": n, "text": f"item {n}"})
                    item = store.get(("mover", "mem"), f"k{n}")
                    assert item is not None and item.value["n"] == n
                    if n % 50 == 3:  # a search reads every item under the label
                        assert len(store.search(("mover",), query=query, limit=3)) == 3
                except BaseException as exc:
                    errors.append(exc)
                    return
                written.append(n)
                n += 1

    worker = threading.Thread(target=busy)
    worker.start()
    time.sleep(0.5)
    slot = key_slot(KeyLayout(prefix).store(("mover",)).index.encode())
    owner = slot_owner(dep, slot)
    target = next(p for p in dep.primaries if p.port != owner.port)
    migrate_slot(dep, slot, target)
    time.sleep(0.5)
    stop.set()
    worker.join(60)
    assert errors == []
    assert slot_owner(dep, slot).port == target.port
    with RedisClusterStore.from_conn_string(dep.url, **options) as store:
        found = {item.value["n"] for item in store.search(("mover",), limit=100_000)}
        if indexed:
            sent: list[Any] = []
            store.shell.hook = lambda event, trip: sent.extend(c.args[0] for c in trip.calls)
            hits = store.search(("mover",), query=query, limit=len(written))
            assert {h.value["n"] for h in hits} == set(written)
            assert "FT.SEARCH" in sent and "ZRANGEBYSCORE" not in sent  # the index had all
    assert found == set(written) and len(written) > 20

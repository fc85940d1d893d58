"""The store on real servers: what BaseStore promises, on every topology, sync and
async; its layout (a first label's namespaces on one slot, one round trip a write);
expiry by the server; hostile names; and bad input refused with nothing written."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp
from langgraph.store.memory import InMemoryStore
from redis.crc import key_slot

from redis_cluster_saver.keys import KeyLayout
from redis_cluster_saver.store import AsyncRedisClusterStore, RedisClusterStore, SearchTooBroadError
from tests.support.embeddings import DIMS, LetterEmbeddings

from .conftest import deployment_for

TOPOLOGIES = ["standalone", "cluster", "plain", "proxy"]


def options(dep: Any, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"key_prefix": f"st{uuid.uuid4().hex[:8]}", **extra}
    if dep.client_kwargs:
        out["connection_args"] = dict(dep.client_kwargs)
    return out


@pytest.fixture(params=TOPOLOGIES)
def store(request: pytest.FixtureRequest) -> Iterator[RedisClusterStore]:
    dep = deployment_for(request, request.param)
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as s:
        yield s


@pytest.fixture(params=["standalone", "cluster"])
async def astore(request: pytest.FixtureRequest) -> AsyncIterator[AsyncRedisClusterStore]:
    dep = deployment_for(request, request.param)
    async with AsyncRedisClusterStore.from_conn_string(dep.url, **options(dep)) as s:
        yield s


def fill(store: Any) -> None:
    store.put(("users", "u1"), "prefs", {"theme": "dark", "n": 3})
    store.put(("users", "u1", "memories"), "m1", {"text": "likes green tea", "n": 5})
    store.put(("users", "u2"), "prefs", {"theme": "light", "n": 1})
    store.put(("docs",), "d1", {"text": "python tutorial", "n": 2})


def test_put_get_search_list_delete(store: RedisClusterStore) -> None:
    fill(store)
    item = store.get(("users", "u1"), "prefs")
    assert item is not None and item.value == {"theme": "dark", "n": 3}
    assert item.namespace == ("users", "u1") and item.key == "prefs"
    assert store.get(("users", "u1"), "nothing") is None
    found = [(i.namespace, i.key) for i in store.search(("users",))]
    assert found == [(("users", "u1"), "prefs"), (("users", "u1", "memories"), "m1"),
                     (("users", "u2"), "prefs")]  # fmt: skip
    assert [i.key for i in store.search(("users",), filter={"n": {"$gte": 3}})] == ["prefs", "m1"]
    assert [i.key for i in store.search((), filter={"theme": "light"})] == ["prefs"]
    assert len(store.search(())) == 4
    assert [i.key for i in store.search((), limit=2, offset=1)] == ["prefs", "m1"]
    assert store.list_namespaces() == [
        ("docs",), ("users", "u1"), ("users", "u1", "memories"), ("users", "u2")
    ]  # fmt: skip
    assert store.list_namespaces(prefix=("users",), max_depth=2) == [
        ("users", "u1"), ("users", "u2")
    ]  # fmt: skip
    assert store.list_namespaces(suffix=("memories",)) == [("users", "u1", "memories")]
    assert store.list_namespaces(prefix=("*", "u1")) == [
        ("users", "u1"), ("users", "u1", "memories")
    ]  # fmt: skip
    store.put(("users", "u1"), "prefs", {"theme": "blue"})
    assert store.get(("users", "u1"), "prefs").value == {"theme": "blue"}  # type: ignore[union-attr]
    store.delete(("users", "u2"), "prefs")
    assert store.get(("users", "u2"), "prefs") is None
    assert ("users", "u2") not in store.list_namespaces()


async def test_async_store(astore: AsyncRedisClusterStore) -> None:
    await astore.aput(("users", "u1"), "prefs", {"theme": "dark"})
    await astore.aput(("users", "u1", "memories"), "m1", {"text": "tea"})
    got = await astore.aget(("users", "u1"), "prefs")
    assert got is not None and got.value == {"theme": "dark"}
    assert [i.key for i in await astore.asearch(("users", "u1"))] == ["prefs", "m1"]
    assert await astore.alist_namespaces(prefix=("users",)) == [
        ("users", "u1"), ("users", "u1", "memories")
    ]  # fmt: skip
    await astore.adelete(("users", "u1"), "prefs")
    assert await astore.aget(("users", "u1"), "prefs") is None


def test_a_users_namespaces_share_a_slot_and_users_spread(standalone: Any) -> None:
    layout = KeyLayout("p")
    slots = set()
    for ns in [("u1",), ("u1", "memories"), ("u1", "memories", "2026")]:
        keys = layout.store(ns)
        slots |= {key_slot(k.encode()) for k in (keys.item(ns, "k"), keys.index)}
    assert len(slots) == 1
    users = {key_slot(layout.store((f"user-{i}",)).index.encode()) for i in range(50)}
    assert len(users) > 40


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_write_and_a_read_are_one_round_trip(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        # a cluster lists the label first (once), and again for a new namespace
        store.put(("u1", "mem"), "first", {"n": 0})
        trips: list[Any] = []
        store.shell.hook = lambda event, trip: trips.append(trip) if event == "send" else None
        store.put(("u1", "mem"), "k", {"n": 1})
        assert len(trips) == 1
        trips.clear()
        assert store.get(("u1", "mem"), "k") is not None
        assert len(trips) == 1


def test_hostile_names_round_trip(store: RedisClusterStore) -> None:
    names = [("a:b",), ("a", "b"), ("{x}", "%41", "ü:}{"), ("*", "k:ey")]
    for i, ns in enumerate(names):
        store.put(ns, f"key:{{{i}}}%", {"i": i})
    for i, ns in enumerate(names):
        item = store.get(ns, f"key:{{{i}}}%")
        assert item is not None and item.value == {"i": i} and item.namespace == ns
    assert sorted(store.list_namespaces()) == sorted(names)
    assert [i.value["i"] for i in store.search(("a",))] == [1]


def test_expiry_is_the_servers(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "cluster")
    ttl = {"default_ttl": 0.005, "refresh_on_read": True}  # 300 ms
    with RedisClusterStore.from_conn_string(dep.url, **options(dep, ttl=ttl)) as store:
        store.put(("u1",), "short", {"n": 1})
        store.put(("u1",), "kept", {"n": 2}, ttl=None)
        store.put(("u2",), "read", {"n": 3})
        for _ in range(4):  # read every 150 ms: its ttl starts again each time
            time.sleep(0.15)
            assert store.get(("u2",), "read") is not None
        assert store.get(("u1",), "short") is None
        assert store.get(("u1",), "kept") is not None
        assert [i.key for i in store.search(("u1",))] == ["kept"]
        time.sleep(0.4)
        assert store.get(("u2",), "read", refresh_ttl=False) is None
        assert store.list_namespaces() == [("u1",)]


def test_vector_search_scores_match_in_memory_store(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "cluster")
    index = {"dims": DIMS, "embed": LetterEmbeddings(), "fields": ["text"]}
    memory = InMemoryStore(index=index)  # type: ignore[arg-type]
    texts = ["green tea", "black coffee", "python tutorial", "tea ceremony", "rust guide"]
    with RedisClusterStore.from_conn_string(dep.url, **options(dep, index=index)) as store:
        for s in (store, memory):
            for i, text in enumerate(texts):
                s.put(("docs", f"u{i % 2}"), f"d{i}", {"text": text, "i": i})
            s.put(("docs", "u0"), "plain", {"other": 1, "i": 9}, index=False)
        ours = store.search(("docs",), query="tea", limit=10)
        theirs = memory.search(("docs",), query="tea", limit=10)
        assert [(i.key, round(i.score or -1, 12)) for i in ours] == [
            (i.key, round(i.score or -1, 12)) for i in theirs
        ]
        assert ours[-1].key == "plain" and ours[-1].score is None
        filtered = store.search(("docs",), query="tea", filter={"i": {"$lt": 3}})
        assert [i.key for i in filtered] == [i.key for i in memory.search(
            ("docs",), query="tea", filter={"i": {"$lt": 3}})]  # fmt: skip


def test_bad_input_is_refused_with_nothing_written(store: RedisClusterStore) -> None:
    with pytest.raises(TypeError, match="JSON"):  # a bad put under another first label
        store.batch([PutOp(("u1",), "good", {"n": 1}), PutOp(("u2",), "bad", {"x": object()})])
    assert store.get(("u1",), "good") is None
    with pytest.raises(TypeError, match="dict"):
        store.put(("u1",), "k", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON"):
        store.put(("u1",), "k", {"when": object()})
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"n": 1})
    with pytest.raises(ValueError, match="operator"):
        store.search(("u1",), filter={"n": {"$regex": "x"}})
    assert store.list_namespaces() == []
    assert store.search(()) == []


def test_bad_options() -> None:
    url = "redis://127.0.0.1:1"
    with pytest.raises(ValueError, match="ttl option"):
        RedisClusterStore(url, ttl={"sweep_interval_minutes": 5})
    with pytest.raises(ValueError, match="default_ttl"):
        RedisClusterStore(url, ttl={"default_ttl": -1})
    with pytest.raises(ValueError, match="dims"):
        RedisClusterStore(url, index={"dims": 0, "embed": LetterEmbeddings()})
    with pytest.raises(ValueError, match="max_candidates"):
        RedisClusterStore(url, max_candidates=0)


def test_a_search_too_broad_for_exact_scoring_says_so(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "standalone")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep, max_candidates=5)) as store:
        for i in range(6):
            store.put(("u1",), f"k{i}", {"i": i})
        with pytest.raises(SearchTooBroadError, match="max_candidates=5"):
            store.search(("u1",))
        assert store.get(("u1",), "k5") is not None


def test_a_label_is_listed_again_after_the_server_lost_its_data(
    request: pytest.FixtureRequest,
) -> None:
    dep = request.getfixturevalue("fresh_cluster")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        store.put(("u9", "a"), "k", {"n": 1})
        for node in dep.primaries:  # a restart without persistence
            client = redis.Redis(host=node.host, port=node.port)
            client.flushall()
            client.close()
        store.put(("u9", "b"), "k", {"n": 2})  # this process had listed "u9" before
        assert store.list_namespaces() == [("u9", "b")]
        assert [i.value for i in store.search(())] == [{"n": 2}]


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_batch_pipelines_its_gets_and_writes_each_label_at_once(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        for label in ("a", "b", "c"):
            store.put((label,), "seed", {"n": 0})  # labels listed (once per process)
        trips: list[Any] = []
        store.shell.hook = lambda event, trip: trips.append(trip) if event == "send" else None
        puts = [PutOp((label, "mem"), f"k{i}", {"i": i}) for label in "abc" for i in range(5)]
        store.batch([*puts, PutOp(("a",), "seed", None)])
        assert len(trips) == 3  # one atomic write per label
        trips.clear()
        got = store.batch([GetOp((label, "mem"), f"k{i}") for label in "abc" for i in range(5)])
        assert len(trips) == 1
        assert [g.value["i"] for g in got] == [i for _ in "abc" for i in range(5)]  # type: ignore[union-attr]
        assert store.get(("a",), "seed") is None


async def test_async_hostile_names_and_bad_input(astore: AsyncRedisClusterStore) -> None:
    """The async store takes the same names and refuses the same input as the sync
    one, with nothing written."""
    names = [("a:b",), ("a", "b"), ("{x}", "%41", "ü:}{"), ("*", "k:ey"), ("\u2028", " ")]
    for i, ns in enumerate(names):
        await astore.aput(ns, f"key:{{{i}}}%", {"i": i})
    for i, ns in enumerate(names):
        item = await astore.aget(ns, f"key:{{{i}}}%")
        assert item is not None and item.value == {"i": i} and item.namespace == ns
    assert sorted(await astore.alist_namespaces()) == sorted(names)
    assert [i.value["i"] for i in await astore.asearch(("a",))] == [1]
    with pytest.raises(TypeError, match="dict"):
        await astore.aput(("u1",), "k", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON"):
        await astore.aput(("u1",), "k", {"when": object()})
    with pytest.raises(InvalidNamespaceError):
        await astore.aput(("a.b",), "k", {"n": 1})
    with pytest.raises(ValueError, match="operator"):
        await astore.asearch(("u1",), filter={"n": {"$regex": "x"}})
    with pytest.raises(TypeError, match="JSON"):  # one bad put: none of the batch lands
        await astore.abatch(
            [PutOp(("u1",), "good", {"n": 1}), PutOp(("u2",), "bad", {"x": object()})]
        )
    assert await astore.aget(("u1",), "good") is None
    assert sorted(await astore.alist_namespaces()) == sorted(names)

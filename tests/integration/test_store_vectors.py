"""Vector search through the Search module: an index per shard, queried on every
primary, merged exactly; the same answers as InMemoryStore (and as the exact path
the store takes without the module), and nothing left behind by updates, deletes and
expiry."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langgraph.store.base import PutOp
from langgraph.store.memory import InMemoryStore

from redis_cluster_saver.plan import RoundTrip
from redis_cluster_saver.store import RedisClusterStore, SearchTooBroadError
from tests.support.embeddings import DIMS, LetterEmbeddings

from .conftest import deployment_for

INDEX = {"dims": DIMS, "embed": LetterEmbeddings(), "fields": ["text", "tags[*]"]}
WORDS = ["tea", "coffee", "python", "rust", "green", "black", "guide", "zebra", "x9", "a-b"]


def options(dep: Any, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"key_prefix": f"sv{uuid.uuid4().hex[:8]}", "index": INDEX, **extra}
    if dep.client_kwargs:
        out["connection_args"] = dict(dep.client_kwargs)
    return out


def commands(store: RedisClusterStore) -> list[str]:
    """Record the name of every command the store sends from now on."""
    seen: list[str] = []

    def hook(event: str, trip: RoundTrip) -> None:
        if event == "send":
            seen.extend(str(getattr(c, "args", ("script",))[0]) for c in trip.calls)

    store.shell.hook = hook
    return seen


def fill(stores: list[Any], n: int, seed: int = 7, users: int = 12) -> None:
    rng = random.Random(seed)
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        value: dict[str, Any] = {"text": text, "i": i, "kind": rng.choice(["fact", "pref"])}
        if i % 5 == 0:
            # several vectors (distinct texts: InMemoryStore miscounts repeated ones)
            value["tags"] = [f"{w} tag" for w in rng.sample(WORDS, 2)]
        ns = (f"user:{i % users}", "mem" if i % 3 else "notes")
        for s in stores:
            s.put(ns, f"k{i}", value)


def rows(found: list[Any]) -> list[tuple[Any, ...]]:
    return [(h.namespace, h.key, round(h.score, 9) if h.score is not None else None) for h in found]


def same(ours: list[Any], memory: InMemoryStore, prefix: tuple[str, ...], **case: Any) -> None:
    """The same page as InMemoryStore's: the same scores in the same places, and each
    item with the score InMemoryStore gives it (items of equal score may trade places:
    InMemoryStore breaks ties by insertion order, ours by namespace and key)."""
    theirs = memory.search(prefix, **case)
    assert [r[2] for r in rows(ours)] == [r[2] for r in rows(theirs)], (prefix, case)
    every = {
        (r[0], r[1]): r[2]
        for r in rows(memory.search(prefix, **{**case, "limit": 10**6, "offset": 0}))
    }
    assert all(every[(r[0], r[1])] == r[2] for r in rows(ours)), (prefix, case)


@pytest.fixture(params=["standalone", "cluster"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[RedisClusterStore, InMemoryStore]]:
    dep = deployment_for(request, request.param)
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        yield store, InMemoryStore(index=INDEX)  # type: ignore[arg-type]


def test_an_index_per_primary_and_every_one_queried(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "cluster")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        names = store.plans.vector_indexes.names  # type: ignore[union-attr]
        assert names is not None and len(names) == 3
        owners = {store.client.get_node_from_key(n).name for n in names}
        assert len(owners) == 3  # each on its own primary
        memory = InMemoryStore(index=INDEX)  # type: ignore[arg-type]
        fill([store, memory], 120)
        sent = commands(store)
        ours = store.search((), query="green tea", limit=10)
        assert sent.count("FT.SEARCH") == 3  # one KNN per primary, in one round trip
        same(ours, memory, (), query="green tea", limit=10)


def test_answers_equal_in_memory_store(pair: tuple[RedisClusterStore, InMemoryStore]) -> None:
    store, memory = pair
    fill([store, memory], 150)
    sent = commands(store)
    cases: list[dict[str, Any]] = [
        {"query": "green tea"},
        {"query": "rust guide", "limit": 3, "offset": 4},
        {"query": "x9", "filter": {"kind": "pref"}},
        {"query": "zebra", "filter": {"i": {"$gte": 140}}},  # few match: k grows
        {"query": "python", "limit": 25},
    ]
    for prefix in [(), ("user:3",), ("user:4", "mem"), ("user:5", "notes")]:
        for case in cases:
            same(store.search(prefix, **case), memory, prefix, **case)
    assert "FT.SEARCH" in sent


def test_updates_and_deletes_leave_no_vectors(
    pair: tuple[RedisClusterStore, InMemoryStore],
) -> None:
    """An item's vectors are those of its last put only. (InMemoryStore keeps an
    earlier put's vectors of paths the last one lacks, so it is given only the final
    values here.)"""
    store, memory = pair
    store.put(("u1",), "a", {"text": "green tea", "tags": ["tea", "green"]})
    store.put(("u1",), "b", {"text": "black coffee"})
    store.put(("u1",), "c", {"text": "zebra"})
    store.put(("u1",), "a", {"text": "rust guide"})  # fewer vectors than before
    store.put(("u1",), "b", {"text": "black coffee"}, index=False)  # none at all
    store.delete(("u1",), "c")
    memory.put(("u1",), "a", {"text": "rust guide"})
    memory.put(("u1",), "b", {"text": "black coffee"}, index=False)
    for query in ("green tea", "black coffee", "zebra"):
        ours = store.search(("u1",), query=query)
        assert rows(ours) == rows(memory.search(("u1",), query=query))
        assert [h.key for h in ours] == ["a", "b"] and ours[-1].score is None
    keys = store.plans.layout.store(("u1",))
    client = store.client
    assert client.exists(keys.vectors(("u1",), "b"), keys.vectors(("u1",), "c")) == 0
    assert client.exists(keys.vectors(("u1",), "a")) == 1


def test_vectors_expire_with_their_item(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "standalone")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        store.put(("u1",), "short", {"text": "green tea"}, ttl=0.004)  # 240 ms
        store.put(("u1",), "long", {"text": "green tea"})
        docs = store.plans.layout.store(("u1",)).vectors(("u1",), "short")
        assert 0 < store.client.pttl(docs) <= 240
        assert [h.key for h in store.search(("u1",), query="tea")] == ["long", "short"]
        time.sleep(0.4)
        assert [h.key for h in store.search(("u1",), query="tea")] == ["long"]
        assert store.client.exists(docs) == 0


def test_an_item_gone_while_its_vectors_stay_is_passed_over(
    pair: tuple[RedisClusterStore, InMemoryStore],
) -> None:
    store, memory = pair
    fill([store, memory], 60)
    first = store.search((), query="green tea", limit=1)[0]
    keys = store.plans.layout.store(first.namespace)
    store.client.delete(keys.item(first.namespace, first.key))  # as eviction would
    memory.delete(first.namespace, first.key)
    ours = store.search((), query="green tea", limit=10)
    assert first.key not in [h.key for h in ours]
    same(ours, memory, (), query="green tea", limit=10)


def test_a_short_page_is_filled_with_items_without_vectors(
    pair: tuple[RedisClusterStore, InMemoryStore],
) -> None:
    store, memory = pair
    for s in (store, memory):
        s.put(("u1",), "v", {"text": "green tea"})
        for i in range(3):
            s.put(("u1",), f"plain{i}", {"n": i}, index=False)
    ours = store.search(("u1",), query="tea", limit=3)
    assert rows(ours) == rows(memory.search(("u1",), query="tea", limit=3))
    assert ours[0].key == "v" and ours[1].score is None


def test_a_filter_few_match_is_bounded(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "standalone")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep, max_candidates=40)) as store:
        store.batch([PutOp(("u1",), f"k{i}", {"text": "green tea", "i": i}) for i in range(100)])
        with pytest.raises(SearchTooBroadError, match="max_candidates=40"):
            store.search(("u1",), query="tea", filter={"i": 99})
        assert len(store.search(("u1",), query="tea", limit=5)) == 5


def test_an_index_dropped_by_hand_is_made_again(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "cluster")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep)) as store:
        memory = InMemoryStore(index=INDEX)  # type: ignore[arg-type]
        fill([store, memory], 40)
        name = (store.plans.vector_indexes.names or [])[1]  # type: ignore[union-attr]
        store.client.execute_command(
            "FT.DROPINDEX", name, target_nodes=store.client.get_node_from_key(name)
        )
        ours = store.search((), query="coffee", limit=8)
        same(ours, memory, (), query="coffee", limit=8)


def test_hostile_names_are_found(pair: tuple[RedisClusterStore, InMemoryStore]) -> None:
    store, memory = pair
    labels = ["{x}", "a:b", "*", "@p:{y}", "é\u2028", "%41", " ", "tag|x"]
    for s in (store, memory):
        for i, label in enumerate(labels):
            s.put((label, labels[-1 - i]), f"{{k}}:{i}", {"text": WORDS[i]})
    for label in labels:
        ours = store.search((label,), query="tea green")
        assert rows(ours) == rows(memory.search((label,), query="tea green"))


def test_search_is_forced_on_or_off(request: pytest.FixtureRequest) -> None:
    plain = deployment_for(request, "plain")
    store = RedisClusterStore(plain.url, **options(plain, search=True))
    with pytest.raises(ValueError, match="Search and JSON modules"):
        store.setup()
    store.close()
    dep = deployment_for(request, "standalone")
    with RedisClusterStore.from_conn_string(dep.url, **options(dep, search=False)) as off:
        off.put(("u1",), "a", {"text": "green tea"})
        sent = commands(off)
        assert [h.key for h in off.search(("u1",), query="tea")] == ["a"]
        assert "FT.SEARCH" not in sent and "FT.CREATE" not in sent
        client = redis.Redis.from_url(dep.url)
        try:
            assert off.plans.layout.store_index(DIMS).encode() not in client.execute_command(
                "FT._LIST"
            )
        finally:
            client.close()
    with pytest.raises(ValueError, match="vector_algorithm"):
        RedisClusterStore(dep.url, vector_algorithm="IVF")


def test_hnsw_finds_the_same_on_a_small_store(request: pytest.FixtureRequest) -> None:
    dep = deployment_for(request, "cluster")
    opts = options(dep, vector_algorithm="HNSW")
    with RedisClusterStore.from_conn_string(dep.url, **opts) as store:
        memory = InMemoryStore(index=INDEX)  # type: ignore[arg-type]
        fill([store, memory], 60)
        ours = store.search((), query="black guide", limit=5)
        same(ours, memory, (), query="black guide", limit=5)

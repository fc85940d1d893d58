"""The same random operations on our store and on LangGraph's InMemoryStore give equal
answers: gets, filtered searches, vector searches with deterministic embeddings
(scores equal to 12 places), and namespace listings.

Where InMemoryStore's answer depends on its dicts' insertion order (a search without a
query, and the order of equal scores), results are compared in one order: ours is by
namespace, then key. It also lists a namespace whose items were all deleted (and one a
get only looked into, a side effect of its defaultdict); ours lists the namespaces that
hold items, as PostgresStore does, so its listings are compared with InMemoryStore's
matching rules applied to those.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import MatchCondition
from langgraph.store.memory import InMemoryStore, _does_match

from redis_cluster_saver.store import RedisClusterStore
from tests.support.embeddings import DIMS, LetterEmbeddings

from .conftest import deployment_for

NAMESPACES = [("u1",), ("u1", "mem"), ("u1", "mem", "x"), ("u2",), ("u2", "docs"), ("v:1", "{a}")]
KEYS = ["k0", "k1", "k:2"]
WORDS = ["tea", "green tea", "coffee", "python", "rust guide", "tea time", "x"]
INDEX = {"dims": DIMS, "embed": LetterEmbeddings(), "fields": ["text"]}

values = st.fixed_dictionaries(
    {"n": st.integers(0, 4), "tag": st.sampled_from(["a", "b"]), "text": st.sampled_from(WORDS)},
    optional={"deep": st.fixed_dictionaries({"x": st.integers(0, 2)})},
)
filters = st.sampled_from(
    [None, {"tag": "a"}, {"n": {"$gt": 1}}, {"n": {"$lte": 2}, "tag": "b"}, {"n": {"$ne": 3}},
     {"deep": {"x": 1}}, {"n": {"$eq": 0}}]
)  # fmt: skip
prefixes = st.sampled_from([(), ("u1",), ("u1", "mem"), ("u2",), ("v:1",), ("nobody",)])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS), values),
        st.tuples(st.just("delete"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS)),
        st.tuples(st.just("get"), st.sampled_from(NAMESPACES), st.sampled_from(KEYS)),
        st.tuples(
            st.just("search"),
            prefixes,
            filters,
            st.sampled_from([None, "tea", "python code"]),
            st.integers(1, 6),
            st.integers(0, 3),
        ),
        st.tuples(
            st.just("list"),
            st.sampled_from([None, ("u1",), ("*", "mem"), ("u2", "docs")]),
            st.sampled_from([None, ("mem",), ("x",)]),
            st.sampled_from([None, 1, 2]),
        ),
    ),
    min_size=1,
    max_size=25,
)


def _row(item: Any) -> tuple[Any, ...]:
    score = None if getattr(item, "score", None) is None else round(item.score, 12)
    return (tuple(item.namespace), item.key, item.value, score)


def _listed(memory: InMemoryStore, prefix: Any, suffix: Any, depth: int | None) -> list[Any]:
    conditions = []
    if prefix:
        conditions.append(MatchCondition("prefix", prefix))
    if suffix:
        conditions.append(MatchCondition("suffix", suffix))
    live = [ns for ns, items in memory._data.items() if items]
    chosen = [ns for ns in live if all(_does_match(c, ns) for c in conditions)]
    if depth is not None:
        chosen = list({ns[:depth] for ns in chosen})
    return sorted(set(chosen))


def _check(store: RedisClusterStore, memory: InMemoryStore, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "put":
        for s in (store, memory):
            s.put(op[1], op[2], op[3])
    elif kind == "delete":
        for s in (store, memory):
            s.delete(op[1], op[2])
    elif kind == "get":
        ours, theirs = store.get(op[1], op[2]), memory.get(op[1], op[2])
        assert (ours and _row(ours)) == (theirs and _row(theirs))
    elif kind == "search":
        _, prefix, filter, query, limit, offset = op
        ours = [_row(i) for i in store.search(prefix, filter=filter, query=query, limit=100)]
        theirs = [_row(i) for i in memory.search(prefix, filter=filter, query=query, limit=100)]
        key = (lambda r: (-(r[3] if r[3] is not None else -9), r[0], r[1])) if query else None
        assert sorted(ours, key=key) == sorted(theirs, key=key)  # type: ignore[arg-type]
        page = store.search(prefix, filter=filter, query=query, limit=limit, offset=offset)
        if query:  # by score, as InMemoryStore pages: the same scores in the same places
            theirs_page = memory.search(
                prefix, filter=filter, query=query, limit=limit, offset=offset
            )
            assert [_row(i)[3] for i in page] == [_row(i)[3] for i in theirs_page]
        else:  # a page of our own full order
            assert [_row(i) for i in page] == ours[offset : offset + limit]
    else:
        _, prefix, suffix, depth = op
        ours_ns = store.list_namespaces(prefix=prefix, suffix=suffix, max_depth=depth)
        assert ours_ns == _listed(memory, prefix, suffix, depth)


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_random_operations_answer_as_in_memory_store(
    request: pytest.FixtureRequest, topology: str
) -> None:
    dep = deployment_for(request, topology)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops)
    def run(sequence: list[tuple[Any, ...]]) -> None:
        prefix = f"df{uuid.uuid4().hex[:10]}"
        with RedisClusterStore.from_conn_string(dep.url, key_prefix=prefix, index=INDEX) as store:
            memory = InMemoryStore(index=INDEX)  # type: ignore[arg-type]
            for op in sequence:
                _check(store, memory, op)

    run()

"""The store's pure parts: its keys, filters, paging and what a batch embeds."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langgraph.store.base import Item, MatchCondition, PutOp, SearchOp
from redis.crc import key_slot

from redis_cluster_saver.keys import KeyLayout, parse_store_entry, store_entry
from redis_cluster_saver.store.embedding import Index, wanted
from redis_cluster_saver.store.items import (
    Stored,
    check_filter,
    item_fields,
    load_item,
    matches,
    namespace_page,
    search_page,
)
from tests.support.embeddings import DIMS, LetterEmbeddings

labels = st.text(min_size=1, max_size=8).filter(lambda t: "." not in t and "\x00" not in t)
namespaces = st.lists(labels, min_size=1, max_size=4).map(tuple)


@given(namespaces, st.text(max_size=10), namespaces, st.text(max_size=10))
def test_store_keys_are_injective_and_a_label_keeps_one_slot(
    ns1: tuple[str, ...], k1: str, ns2: tuple[str, ...], k2: str
) -> None:
    layout = KeyLayout("p")
    a, b = layout.store(ns1), layout.store(ns2)
    if (ns1, k1) != (ns2, k2):
        assert a.item(ns1, k1) != b.item(ns2, k2)
        assert store_entry(ns1, k1) != store_entry(ns2, k2)
    assert parse_store_entry(store_entry(ns1, k1)) == (ns1, k1)
    assert key_slot(a.item(ns1, k1).encode()) == key_slot(a.index.encode())
    if ns1[0] == ns2[0]:
        assert a.index == b.index


@pytest.mark.parametrize(
    ("value", "filter", "hit"),
    [
        ({"n": 3}, {"n": 3}, True),
        ({"n": 3}, {"n": {"$gt": 2, "$lte": 3}}, True),
        ({"n": 3}, {"n": {"$ne": 3}}, False),
        ({"n": "x"}, {"n": {"$gt": 1}}, False),  # no number, no match (InMemoryStore raises)
        ({}, {"n": {"$lt": 1}}, False),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),
        ({"a": [1, 2]}, {"a": [1, 2]}, True),
        ({"a": [1, 2]}, {"a": [2, 1]}, False),
        ({"t": True}, {"t": 1}, True),  # Python's equality, as InMemoryStore's
    ],
)
def test_filters_mean_what_they_mean_in_in_memory_store(
    value: dict[str, Any], filter: dict[str, Any], hit: bool
) -> None:
    assert matches(value, filter) is hit


def test_a_bad_filter_operator_is_refused_before_anything_is_read() -> None:
    with pytest.raises(ValueError, match=r"\$regex"):
        check_filter({"a": {"b": {"$regex": "x"}}})
    with pytest.raises(TypeError, match="dict"):
        check_filter(["a"])  # type: ignore[arg-type]


def _stored(key: str, vectors: dict[str, list[float]]) -> Stored:
    now = datetime.now(timezone.utc)
    item = Item(value={}, key=key, namespace=("n",), created_at=now, updated_at=now)
    return Stored(item, vectors, None)


def test_pages_by_best_score_then_fill_with_unscored_as_in_memory_store() -> None:
    candidates = [
        _stored("a", {"x": [1.0, 0.0]}),
        _stored("b", {"x": [0.0, 1.0], "y": [1.0, 1.0]}),
        _stored("c", {}),
        _stored("d", {"x": [1.0, 0.1]}),
    ]
    page = search_page(candidates, [1.0, 0.0], 0, 10)
    assert [h.key for h in page] == ["a", "d", "b", "c"]
    assert page[-1].score is None
    assert [h.key for h in search_page(candidates, [1.0, 0.0], 1, 2)] == ["d", "b"]
    assert [h.key for h in search_page(candidates, None, 1, 2)] == ["b", "c"]


def test_namespace_listing_matches_wildcards_and_depth() -> None:
    found = [("a", "b", "c"), ("a", "x"), ("z", "b")]
    assert namespace_page(found, [MatchCondition("prefix", ("*", "b"))], None, 0, 10) == [
        ("a", "b", "c"), ("z", "b")
    ]  # fmt: skip
    assert namespace_page(found, [MatchCondition("suffix", ("b",))], None, 0, 10) == [("z", "b")]
    assert namespace_page(found, None, 1, 0, 10) == [("a",), ("z",)]
    assert namespace_page(found, None, None, 1, 1) == [("a", "x")]


def test_an_item_round_trips_through_its_hash() -> None:
    fields = item_fields(("u", "m"), "k:1", {"x": [1, "two"]}, 1_700_000_000_000, 2.0, {"$": [0.5]})
    raw = {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}
    stored = load_item(raw)
    assert stored is not None
    assert stored.item.namespace == ("u", "m") and stored.item.key == "k:1"
    assert stored.item.value == {"x": [1, "two"]}
    assert stored.vectors == {"$": [0.5]} and stored.ttl_ms == 120_000
    assert load_item({}) is None


def test_a_batch_embeds_each_text_once_and_only_the_last_put_of_an_item() -> None:
    index = Index.parse({"dims": DIMS, "embed": LetterEmbeddings(), "fields": ["text", "tags[*]"]})
    ops = [
        PutOp(("n",), "a", {"text": "tea", "tags": ["x", "tea"]}),
        PutOp(("n",), "b", {"text": "old"}),
        PutOp(("n",), "b", {"text": "tea"}),
        PutOp(("n",), "c", {"text": "skip"}, index=False),
        SearchOp(("n",), query="tea"),
    ]
    want = wanted(ops, index)
    assert want.texts == ["tea", "x"]
    assert sorted(want.places[0]) == [(0, "tags[*].1"), (0, "text"), (2, "text")]
    assert want.queries == ["tea"]
    vectors = want.vectors([[1.0] * DIMS, [2.0] * DIMS], DIMS)
    assert set(vectors) == {0, 2}
    with pytest.raises(ValueError, match="dimensions"):
        want.vectors([[1.0], [2.0]], DIMS)


def test_bad_index_options() -> None:
    with pytest.raises(ValueError, match="unknown index option"):
        Index.parse({"dims": 2, "embed": LetterEmbeddings(), "distance": "l2"})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(ValueError, match="embed"):
        Index.parse({"dims": 2})  # type: ignore[typeddict-item]

"""The key layout: injective, brace-free, never-empty tags; one slot per thread."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from redis_cluster_saver.keys import (
    KeyLayout,
    blob_field,
    escape,
    thread_tag,
    unescape,
    write_field,
)

HOSTILE = ["", "__empty__", "{", "}", "{}", "a}{b", "%", "%25", ":", "|", "\x00", "\n", "\u200f"]
# lone surrogates never reach a key: ids are checked to be valid Unicode first
long_ids = st.builds(
    lambda c, n: c * n, st.characters(exclude_categories=("Cs",)), st.integers(10_000, 10_050)
)
ids = st.text() | st.sampled_from(HOSTILE) | long_ids
layout = KeyLayout("app")


def all_keys(thread: str, ns: str, cid: str) -> list[str]:
    keys = layout.thread(thread)
    return [
        keys.namespaces,
        keys.registry(ns),
        keys.blobs(ns),
        keys.checkpoint(ns, cid),
        keys.writes(ns, cid),
    ]


def hashed_part(key: str) -> str:
    """What Redis hashes: the text between the first '{' and the next '}'."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


@given(ids)
def test_escape_round_trips_and_leaves_no_special_character(part: str) -> None:
    escaped = escape(part)
    assert unescape(escaped) == part
    assert not set(escaped) & set("{}:\n")


@given(ids, ids)
def test_thread_tags_are_injective_and_never_empty(a: str, b: str) -> None:
    assert thread_tag(a)
    if a != b:
        assert thread_tag(a) != thread_tag(b)
        assert layout.thread(a).handle != layout.thread(b).handle


@settings(max_examples=200)
@given(ids, ids, ids)
def test_every_key_of_a_thread_is_on_one_slot(thread: str, ns: str, cid: str) -> None:
    keys = all_keys(thread, ns, cid)
    assert {key_slot(k.encode()) for k in keys} == {
        key_slot(layout.thread(thread).namespaces.encode())
    }
    for key in keys:
        assert hashed_part(key) == thread_tag(thread)
        assert key.count("{") == 1 and key.count("}") == 1
        assert layout.thread_id_of(key) == thread


@given(st.tuples(ids, ids, ids), st.tuples(ids, ids, ids))
def test_checkpoint_keys_are_injective(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    if a != b:
        assert layout.thread(a[0]).checkpoint(a[1], a[2]) != layout.thread(b[0]).checkpoint(
            b[1], b[2]
        )
        assert layout.thread(a[0]).writes(a[1], a[2]) != layout.thread(b[0]).writes(b[1], b[2])
    if a[:2] != b[:2]:
        assert layout.thread(a[0]).registry(a[1]) != layout.thread(b[0]).registry(b[1])


@given(ids, st.integers(-4, 10**6), ids, st.integers(-4, 10**6))
def test_write_fields_are_injective(t1: str, i1: int, t2: str, i2: int) -> None:
    if (t1, i1) != (t2, i2):
        assert write_field(t1, i1) != write_field(t2, i2)


versions = st.text() | st.integers() | st.floats(allow_nan=False)


@given(ids, versions, ids, versions)
def test_blob_fields_are_injective(c1: str, v1: object, c2: str, v2: object) -> None:
    same = c1 == c2 and type(v1) is type(v2) and v1 == v2
    if not same:
        assert blob_field(c1, v1) != blob_field(c2, v2)  # type: ignore[arg-type]
    assert "\n" not in blob_field(c1, v1)  # type: ignore[arg-type]


def test_empty_and_sentinel_looking_ids_do_not_share_keys() -> None:
    assert layout.thread("").handle != layout.thread("__empty__").handle
    assert layout.thread("").namespaces == "app:ns:{t}"
    assert layout.thread("").checkpoint("", "c").startswith(layout.checkpoint_prefix)


def test_prefixes_namespace_everything() -> None:
    assert KeyLayout("a").thread("x").handle != KeyLayout("b").thread("x").handle
    assert KeyLayout("a").directory("x").startswith("a:")


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "x\ny"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        KeyLayout(prefix)


def test_directory_buckets_spread_over_slots() -> None:
    slots = {key_slot(b.encode()) for b in layout.all_directory_buckets()}
    assert len(slots) == len(layout.all_directory_buckets())

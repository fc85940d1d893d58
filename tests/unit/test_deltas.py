"""List deltas: what is stored for a growing list, and how it is rebuilt."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from redis_cluster_saver import codec, deltas
from redis_cluster_saver.errors import SaverError

SERDE = JsonPlusSerializer()
NS = b""


class Store:
    """One thread's blob hash, written and read the way the saver does."""

    def __init__(self, bases: deltas.ListBases | None = None) -> None:
        self.bases = bases or deltas.ListBases()
        self.frames: dict[bytes, bytes] = {}
        self.version = 0

    def write(self, value: Any, channel: str = "messages") -> tuple[str, deltas.Encoded]:
        self.version += 1
        field = f"{channel}:i{self.version}"
        encoded = self.bases.encode("thread", "", channel, field, *SERDE.dumps_typed(value))
        self.frames[field.encode()] = encoded.frame
        if encoded.written is not None:
            self.bases.remember("thread", "", channel, encoded.written)
        return field, encoded

    def read(self, field: str, resolver: deltas.Resolver | None = None) -> Any:
        resolver = resolver or deltas.Resolver({(NS, f): v for f, v in self.frames.items()})
        return SERDE.loads_typed(resolver.value(NS, field.encode(), self.frames[field.encode()]))


@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 65535, 65536, 70000])
def test_array_headers_round_trip(count: int) -> None:
    header = deltas.encode_header(count)
    assert deltas.array_header(header + b"\x00" * 3) == (count, len(header))


@pytest.mark.parametrize("value", [b"\xc0", b"", b"\x81\xa1a\x01", b"\xdc\x00"])
def test_non_arrays_have_no_header(value: bytes) -> None:
    assert deltas.array_header(value) is None


def test_a_growing_list_is_stored_as_its_new_items() -> None:
    store = Store()
    history: list[str] = []
    stored: list[tuple[str, list[str]]] = []
    for i in range(200):
        history = [*history, f"message {i} " + "x" * 50]
        field, encoded = store.write(history)
        stored.append((field, history))
        if i > 10:
            assert len(encoded.frame) < 200 or encoded.base is None
    for field, expected in stored:
        assert store.read(field) == expected
    total = sum(len(f) for f in store.frames.values())
    whole = sum(len(codec.pack(SERDE.dumps_typed(v))) for _, v in stored)
    assert total < whole / 5, (total, whole)


def test_chains_stay_short_and_cheap_to_read() -> None:
    store = Store()
    history: list[int] = []
    for i in range(300):
        history = [*history, i]
        _, encoded = store.write(history)
        depth, frame = 0, encoded.frame
        while (base := deltas.base_of(frame)) is not None:
            depth += 1
            frame = store.frames[base]
        assert depth <= deltas.MAX_DEPTH


@pytest.mark.parametrize(
    "change",
    [
        lambda v: v[:-1],  # shrunk
        lambda v: ["changed", *v[1:]],  # an earlier item replaced
        lambda v: {"not": "a list"},
        lambda v: None,
        lambda v: b"raw bytes",
    ],
)
def test_anything_but_an_append_is_stored_whole(change: Any) -> None:
    store = Store()
    first = [f"item {i}" * 20 for i in range(20)]
    store.write(first)
    field, encoded = store.write(change(first))
    assert encoded.base is None and deltas.base_of(encoded.frame) is None
    assert store.read(field) == change(first)


def test_an_item_mutated_in_place_is_not_lost() -> None:
    store = Store()
    items = [{"text": "a" * 100}, {"text": "b" * 100}]
    store.write(items)
    items[0]["text"] = "mutated"
    items.append({"text": "c" * 100})
    field, encoded = store.write(items)
    assert encoded.base is None
    assert store.read(field)[0]["text"] == "mutated"


def test_rewriting_a_version_never_makes_a_cycle() -> None:
    store = Store()
    store.write(["a" * 100] * 10)
    store.version = 0  # the same version again: it must not become its own base
    field, encoded = store.write(["a" * 100] * 11)
    assert encoded.base is None
    assert store.read(field) == ["a" * 100] * 11


def test_a_missing_base_is_an_error_not_a_shorter_list() -> None:
    store = Store()
    store.write(["x" * 100] * 20)
    field, encoded = store.write(["x" * 100] * 21)
    assert encoded.base is not None
    del store.frames[encoded.base.encode()]
    with pytest.raises(SaverError, match="incomplete"):
        store.read(field)


def test_a_cycle_in_stored_data_is_refused() -> None:
    frames = {b"a": b"+1\nb\n\x01", b"b": b"+1\na\n\x02"}
    with pytest.raises(SaverError, match="too long"):
        deltas.Resolver({(NS, k): v for k, v in frames.items()}).value(NS, b"a", frames[b"a"])


def test_encrypted_or_other_types_are_never_split() -> None:
    bases = deltas.ListBases()
    data = SERDE.dumps_typed([1, 2, 3])[1]
    bases.remember("t", "", "c", bases.encode("t", "", "c", "c:1", "msgpack", data).written)  # type: ignore[arg-type]
    longer = SERDE.dumps_typed([1, 2, 3, 4])[1]
    encoded = bases.encode("t", "", "c", "c:2", "msgpack+aes", longer)
    assert encoded.base is None and encoded.written is None


def test_memory_is_bounded_and_forgetting_a_thread_frees_it() -> None:
    bases = deltas.ListBases(max_bytes=10_000)
    data = SERDE.dumps_typed(["y" * 1000] * 3)[1]
    for t in range(20):
        written = bases.encode(f"t{t}", "", "c", "c:1", "msgpack", data).written
        assert written is not None
        bases.remember(f"t{t}", "", "c", written)
    assert bases._bytes <= 10_000
    bases.forget("t19")
    assert "t19" not in bases._threads


def test_shared_chains_are_rebuilt_once_per_reply() -> None:
    store = Store()
    fields = []
    history: list[str] = []
    for _ in range(40):
        history = [*history, "m" * 40]
        fields.append(store.write(history)[0])
    resolver = deltas.Resolver({(NS, f): v for f, v in store.frames.items()})
    for n, field in enumerate(fields, start=1):  # oldest first, as list() reads
        assert store.read(field, resolver) == ["m" * 40] * n
    assert len(resolver.built) <= len(fields)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.lists(st.text(max_size=30), max_size=4)),
            st.tuples(st.just("replace"), st.lists(st.text(max_size=30), max_size=6)),
            st.tuples(st.just("other"), st.integers(-(2**63), 2**63 - 1)),
        ),
        max_size=40,
    )
)
def test_every_version_reads_back_exactly(steps: list[tuple[str, Any]]) -> None:
    store = Store()
    value: Any = []
    written = []
    for kind, arg in steps:
        if kind == "append":
            value = [*(value if isinstance(value, list) else []), *arg]
        elif kind == "replace":
            value = list(arg)
        else:
            value = arg
        written.append((store.write(value)[0], value))
    for field, expected in written:
        assert store.read(field) == expected

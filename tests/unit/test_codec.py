"""Stored byte formats: frames, canonical metadata JSON, filter arguments."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_cluster_saver import codec


@given(st.lists(st.binary()))
def test_frames_round_trip(parts: list[bytes]) -> None:
    assert codec.unpack(codec.pack(parts)) == parts


def test_metadata_round_trips_per_key() -> None:
    md = {"source": "loop", "step": 3, "nested": {"b": [1, "x\x00y"], "a": None}, "f": 1.5}
    whole, fields = codec.dump_metadata(md)
    assert set(fields) == {"m:source", "m:step", "m:nested", "m:f"}
    assert codec.load_metadata(whole) == md


def test_whole_metadata_keeps_types_where_fields_are_canonical() -> None:
    md = {"flag": True, "n": 2.0, "z": -0.0, "d": {"b": False, "a": [1.0]}, "s": "1"}
    whole, fields = codec.dump_metadata(md)
    loaded = codec.load_metadata(whole)
    assert loaded == md
    assert [type(v) for v in loaded.values()] == [type(v) for v in md.values()]
    assert list(loaded["d"]) == ["b", "a"] and loaded["d"]["a"] == [1.0]
    assert type(loaded["d"]["b"]) is bool and type(loaded["d"]["a"][0]) is float
    assert fields == {
        "m:flag": b"1",
        "m:n": b"2",
        "m:z": b"0",
        "m:d": b'{"a":[1],"b":0}',
        "m:s": b'"1"',
    }


def test_equal_values_store_equal_bytes() -> None:
    assert codec.dump_json({"b": 1, "a": 2}) == codec.dump_json({"a": 2, "b": 1})
    assert codec.dump_json(2.0) == codec.dump_json(2)
    assert codec.dump_json(2.5) != codec.dump_json(2)


@pytest.mark.parametrize("bad", [object(), datetime.datetime(2024, 1, 1), {1, 2}, b"bytes"])
def test_non_json_metadata_names_the_key(bad: object) -> None:
    with pytest.raises(ValueError, match="metadata\\['weird'\\]"):
        codec.dump_metadata({"ok": 1, "weird": bad})


def test_filter_args_pair_fields_with_canonical_json() -> None:
    assert codec.filter_args({"step": 1.0, "source": "loop"}) == [
        b"m:step",
        b"1",
        b"m:source",
        b'"loop"',
    ]
    with pytest.raises(ValueError, match="filter"):
        codec.filter_args({"x": object()})


def test_pairs_accepts_flat_and_mapping_replies() -> None:
    assert codec.pairs([b"a", b"1", b"b", b"2"]) == {b"a": b"1", b"b": b"2"}
    assert codec.pairs({b"a": b"1"}) == {b"a": b"1"}
    assert codec.pairs(None) == {}


@given(st.text(), st.text(), st.text(), st.binary(), st.text(), st.integers(-(2**31), 2**31))
def test_pending_writes_round_trip(
    task_id: str, channel: str, type_: str, data: bytes, path: str, idx: int
) -> None:
    frame = codec.dump_write(task_id, channel, type_, data, path, idx)
    assert codec.load_write(frame) == (task_id, channel, type_, data, idx, path)


# JSON-like values drawn so that equal-but-differently-typed pairs are common: small
# ints, their floats and bools, -0.0, floats past 2**53 and past 64 bits.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, -2.5, 1e300, 2.0**60, 2.0**64, 1e-5])
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "0", "1", "true", "null", "1.0", "a"])
    | st.text(max_size=4)
)
JSON_LIKE = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "b", "c", ""]) | st.text(max_size=2), inner, max_size=3
        )
    ),
    max_leaves=8,
)


def _equal_twin(value: object, data: st.DataObject) -> object:
    """A value equal to ``value`` in Python, with types and key order changed where
    Python's equality allows: bool <-> int <-> integral float, dict keys reordered."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return data.draw(st.sampled_from([bool(value), int(value), float(value)]))
    if isinstance(value, int) and abs(value) < 2**53:
        return data.draw(st.sampled_from([value, float(value)]))
    if isinstance(value, float) and value.is_integer():
        return data.draw(st.sampled_from([value, int(value)]))
    if isinstance(value, list):
        return [_equal_twin(v, data) for v in value]
    if isinstance(value, dict):
        items = list(value.items())
        order = data.draw(st.permutations(items))
        return {k: _equal_twin(v, data) for k, v in order}
    return value


@given(JSON_LIKE, JSON_LIKE, st.data())
def test_canonical_json_is_equal_exactly_when_python_values_are(
    a: object, other: object, data: st.DataObject
) -> None:
    """Stored metadata fields and filter values are compared as bytes (in Lua and in
    the per-key plans), so the bytes must be equal exactly when InMemorySaver's
    ``==`` says the values are. ``b`` is another value, or an equal twin of ``a``
    (often unequal again once one leaf is swapped for ``other``)."""
    b = other
    if data.draw(st.booleans(), label="twin"):
        b = _equal_twin(a, data)
        if isinstance(b, list) and b and data.draw(st.booleans(), label="swap a leaf"):
            b[data.draw(st.integers(0, len(b) - 1), label="leaf")] = other
    assert (codec.dump_json(a) == codec.dump_json(b)) == (a == b), (a, b)


@given(JSON_LIKE, st.data())
def test_canonical_json_of_equal_values_is_the_same(a: object, data: st.DataObject) -> None:
    b = _equal_twin(a, data)
    assert a == b
    assert codec.dump_json(a) == codec.dump_json(b), (a, b)


EQUAL_PAIRS = {
    "True 1": (True, 1),
    "True 1.0": (True, 1.0),
    "False 0": (False, 0),
    "-0.0 0": (-0.0, 0),
    "2.0 2": (2.0, 2),
    "float past 2**53": (2.0**60, 2**60),
    "float past 64 bits": (1e300, int(1e300)),
    "dict": ({"a": 1, "b": 2}, {"b": 2.0, "a": True}),
    "list": ([1, 2], [1.0, 2]),
    "nested": ({"x": [True, {"y": None}]}, {"x": [1, {"y": None}]}),
}
UNEQUAL_PAIRS = {
    "string 1": ("1", 1),
    "string true": ("true", True),
    "string null": ("null", None),
    "None 0": (None, 0),
    "int past float": (2**60 + 1, 2.0**60),
    "0.1 0": (0.1, 0),
}


@pytest.mark.parametrize(("a", "b"), list(EQUAL_PAIRS.values()), ids=list(EQUAL_PAIRS))
def test_canonical_json_equal_pairs(a: object, b: object) -> None:
    assert a == b
    assert codec.dump_json(a) == codec.dump_json(b)


@pytest.mark.parametrize(("a", "b"), list(UNEQUAL_PAIRS.values()), ids=list(UNEQUAL_PAIRS))
def test_canonical_json_unequal_pairs(a: object, b: object) -> None:
    assert a != b
    assert codec.dump_json(a) != codec.dump_json(b)

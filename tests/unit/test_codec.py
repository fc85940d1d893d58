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
    fields = codec.dump_metadata(md)
    assert set(fields) == {"m:source", "m:step", "m:nested", "m:f"}
    assert codec.load_metadata(codec.joined_metadata(fields)) == md


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

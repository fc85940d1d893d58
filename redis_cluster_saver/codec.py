"""Byte formats of stored values: framed records, metadata JSON, channel values.

Values are the serializer's own bytes (``dumps_typed``) stored in hash fields, so
any ``SerializerProtocol`` works (including ``EncryptedSerializer``) and no base64
or JSON module is involved. Records of several parts use a length-prefixed frame.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
import orjson
import ormsgpack

_LEN = struct.Struct(">I")
_JSON_OPTS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_WHOLE_OPTS = _JSON_OPTS & ~orjson.OPT_SORT_KEYS
_SAME_BOTH_WAYS = (str, int)
"""Types whose whole and canonical JSON are the same bytes (ints past 64 bits are
refused by the whole form)."""
METADATA_FIELD = "m:"
READ_FIELDS = ("checkpoint", "type", "parent", "v", "blobs", "meta", "held")
"""The checkpoint hash fields a reader needs, in the order reads return them."""


def to_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def pack(parts: Iterable[str | bytes]) -> bytes:
    """Concatenate parts, each preceded by its 4-byte length."""
    out = bytearray()
    for part in parts:
        raw = to_bytes(part)
        out += _LEN.pack(len(raw))
        out += raw
    return bytes(out)


def unpack(frame: bytes) -> list[bytes]:
    """Inverse of :func:`pack`."""
    parts: list[bytes] = []
    size_at = _LEN.unpack_from
    pos, end = 0, len(frame)
    while pos < end:
        start = pos + 4
        pos = start + size_at(frame, pos)[0]
        parts.append(frame[start:pos])
    return parts


def dump_write(
    task_id: str, channel: str, type_: str, data: bytes, task_path: str, idx: int
) -> bytes:
    """One pending write as a msgpack array (read back in C, many per checkpoint)."""
    return ormsgpack.packb((task_id, channel, type_, data, idx, task_path))


def load_write(frame: bytes) -> tuple[str, str, str, bytes, int, str]:
    """(task id, channel, type, data, index, task path) of :func:`dump_write`."""
    task_id, channel, type_, data, idx, task_path = ormsgpack.unpackb(frame)
    return task_id, channel, type_, data, idx, task_path


def reply(raw: Any) -> Any:
    """A read script's reply: one msgpack string (parsed in C, where hundreds of
    nested RESP replies would be parsed in Python), or the per-key plans' lists.
    Lua's missing values arrive as False, the plans' as None: readers test truth."""
    return msgpack.unpackb(raw, raw=True) if isinstance(raw, bytes) else raw


def _reject(value: Any) -> Any:
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


_INT_RANGE = range(-(2**63), 2**64)
"""The ints orjson writes itself; others are written as their digits."""


def _canonical(value: Any) -> Any:
    """``value`` with every leaf in the one form shared by all values equal to it in
    Python (see :func:`dump_json`). NaN and infinities have no JSON form: refused."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return int(value)
    if kind is int:
        return value if value in _INT_RANGE else orjson.Fragment(str(value).encode())
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value!r} has no JSON form")
        if value.is_integer():  # int(value) is exact: 2.0**60 == 2**60
            return _canonical(int(value))
        return orjson.Fragment(repr(float(value)).encode())
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value  # refused by orjson, as in the whole form


def dump_json(value: Any) -> bytes:
    """Canonical JSON: equal bytes exactly when the values are equal in Python, so a
    script compares a filter with a stored field byte for byte and agrees with
    InMemorySaver's ``filter_value == metadata.get(key)``.

    Python's equality crosses types (``True == 1 == 1.0``, ``2.0**60 == 2**60``) and
    ignores dict order, so: bools are written as ints, integral floats as the exact
    int they equal (any size, as digits), other floats by ``repr`` (the shortest
    text that reads back as that float, which Python keeps stable, unlike a JSON
    library's float formatting), dict keys sorted, all of it recursively through
    lists and dicts; ``None`` is ``null`` and strings stay quoted, so ``"1" != 1``.
    Tuples are written as lists, as the whole form stores them (and as
    InMemorySaver's serializer reads them back); readers re-check filters exactly.
    """
    return orjson.dumps(_canonical(value), option=_JSON_OPTS, default=_reject)


def _dump_whole(value: Any) -> bytes:
    """A metadata value as put (``True`` stays ``true``, ``2.0`` stays ``2.0``)."""
    return orjson.dumps(value, option=_WHOLE_OPTS, default=_reject)


def dump_metadata(metadata: Mapping[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    """The metadata as stored: whole, as put (one JSON object, what readers load),
    and one hash field per top-level key in canonical form (:func:`dump_json`),
    which scripts filter by byte equality.

    Raises ValueError naming the key whose value is not JSON-serialisable.
    """
    whole: list[bytes] = []
    fields: dict[str, bytes] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be strings, got {key!r}")
        try:
            name = _dump_key(key)
            if type(value) in _SAME_BOTH_WAYS or value is None:
                fields[METADATA_FIELD + key] = dumped = orjson.dumps(value)
            else:
                fields[METADATA_FIELD + key] = dump_json(value)
                dumped = _dump_whole(value)
        except RecursionError:
            raise ValueError(f"metadata[{key!r:.80}] is nested too deeply") from None
        except TypeError as exc:  # orjson.JSONEncodeError too
            raise ValueError(f"metadata[{key!r:.80}] is not JSON-serialisable: {exc}") from None
        whole.append(name + b":" + dumped)
    return b"{" + b",".join(whole) + b"}", fields


def _dump_key(key: str) -> bytes:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"metadata key {key!r:.80} is not valid Unicode text") from None
    return orjson.dumps(key)


def load_metadata(whole: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(whole)
    return loaded


def filter_args(filter: Mapping[str, Any] | None) -> list[bytes]:
    """Flattened (field, canonical JSON) pairs a script compares byte for byte."""
    args: list[bytes] = []
    for key, value in (filter or {}).items():
        args.append((METADATA_FIELD + key).encode())
        try:
            args.append(dump_json(value))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ValueError(f"filter[{key!r}] is not JSON-serialisable: {exc}") from None
    return args


def pairs(flat: Sequence[Any] | Mapping[Any, Any] | None) -> dict[bytes, bytes]:
    """A hash reply as a dict, whether it came flat (scripts, RESP2) or as a map."""
    if not flat:
        return {}
    if isinstance(flat, Mapping):
        return dict(flat)
    it = iter(flat)
    return dict(zip(it, it, strict=True))

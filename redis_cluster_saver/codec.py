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
METADATA_FIELD = "m:"
READ_FIELDS = ("checkpoint", "type", "parent", "v", "blobs", "meta")
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


def _canonical(value: Any) -> Any:
    """Integral floats compare equal to ints in Python, so they must store the same.
    NaN and infinities have no JSON form (orjson would write null): refused."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value!r} has no JSON form")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def dump_json(value: Any) -> bytes:
    """Canonical JSON (sorted keys) so equal values give equal bytes, for exact filters."""
    return orjson.dumps(_canonical(value), option=_JSON_OPTS, default=_reject)


def dump_metadata(metadata: Mapping[str, Any]) -> dict[str, bytes]:
    """One hash field per top-level key: lets scripts filter by byte equality.

    Raises ValueError naming the key whose value is not JSON-serialisable.
    """
    fields: dict[str, bytes] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be strings, got {key!r}")
        try:
            key.encode("utf-8")
            fields[METADATA_FIELD + key] = dump_json(value)
        except UnicodeEncodeError:
            raise ValueError(f"metadata key {key!r:.80} is not valid Unicode text") from None
        except RecursionError:
            raise ValueError(f"metadata[{key!r:.80}] is nested too deeply") from None
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise ValueError(f"metadata[{key!r:.80}] is not JSON-serialisable: {exc}") from None
    return fields


def joined_metadata(fields: Mapping[str, bytes]) -> bytes:
    """The per-key fields of :func:`dump_metadata` as one JSON object: what readers
    load (one field and one parse, where the per-key fields serve filters)."""
    n = len(METADATA_FIELD)
    return b"{" + b",".join(orjson.dumps(k[n:]) + b":" + v for k, v in fields.items()) + b"}"


def load_metadata(joined: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(joined)
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

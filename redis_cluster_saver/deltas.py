"""List values that grow by appending, stored as deltas against an earlier version.

A message channel grows by one or two items per step and LangGraph hands the saver
the whole list each time: stored whole, a thread of n steps holds O(n²) bytes and
every ``list()`` ships n copies of the history. A new version whose serialized
items start with the bytes of the version this process wrote last for the same
(thread, namespace, channel) is stored as the appended items only, naming its base.

Two frames live in a namespace's blob hash (field ``channel:version``):

- full: ``codec.pack((type, data))``, whose first byte is 0 (a 4-byte length);
- delta: ``b"+" <appended item count> b"\\n" <base field> b"\\n" <appended items>``.

Only the serializer's plain ``msgpack`` type qualifies (an encrypting serializer's
bytes are never compared or split), and only top-level arrays: msgpack items are
self-delimiting, so a byte prefix of whole items is a prefix of the list, and a
mutated item changes its bytes and forces a full frame. A chain ends at a full
frame within ``MAX_DEPTH`` steps, and its deltas never add up to more than half of
that frame, so reading a value costs at most 1.5 times its size. Field names are
escaped (no newline), so a base name never contains the separator.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from . import codec
from .errors import SaverError

MARK = b"+"
MAX_DEPTH = 16
"""Deltas between a value and its full frame, at most."""
MAX_WALK = 64
"""A reader refuses a longer chain (no writer makes one: it would be a cycle)."""
CACHE_BYTES = 32 * 1024 * 1024
"""Serialized bytes remembered per process, least recently written threads first out."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def array_header(data: bytes) -> tuple[int, int] | None:
    """(item count, header length) of a msgpack array, or None for anything else."""
    if not data:
        return None
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and len(data) >= 3:
        return _U16.unpack_from(data, 1)[0], 3
    if first == 0xDD and len(data) >= 5:
        return _U32.unpack_from(data, 1)[0], 5
    return None


def encode_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 0x10000:
        return b"\xdc" + _U16.pack(count)
    return b"\xdd" + _U32.pack(count)


def base_of(frame: bytes) -> bytes | None:
    """The base field a delta frame names (None for a full frame)."""
    if frame[:1] != MARK:
        return None
    a = frame.index(b"\n")
    return frame[a + 1 : frame.index(b"\n", a + 1)]


class BaseGone(SaverError):
    """A delta's base is missing from the reply: the reader names the thread (reads.py)."""


class Resolver:
    """Rebuilds the values of one reply from its frames and the delta bases it
    carries (``bases``: by (namespace, field)). Rebuilt values are remembered, so
    checkpoints read oldest first walk a chain they share only once."""

    def __init__(self, bases: Mapping[tuple[bytes, bytes], bytes]) -> None:
        self.bases = bases
        self.built: dict[tuple[bytes, bytes], tuple[int, bytes]] = {}

    def value(self, ns: bytes, field: bytes, frame: bytes) -> tuple[str, bytes]:
        """The (type, data) a stored frame stands for. A missing base is an error,
        never a silently shorter list."""
        if frame[:1] != MARK:
            type_, data = codec.unpack(frame)
            return type_.decode(), data
        count, items = self._items(ns, field, frame)
        return "msgpack", encode_header(count) + items

    def _items(self, ns: bytes, field: bytes, frame: bytes) -> tuple[int, bytes]:
        parts: list[bytes] = []
        added = 0
        at = field
        for _ in range(MAX_WALK):
            built = self.built.get((ns, at))
            if built is not None:
                count, items = built
                break
            if frame[:1] != MARK:
                type_, data = codec.unpack(frame)
                head = array_header(data)
                if type_ != b"msgpack" or head is None:
                    raise SaverError(f"stored value {_name(field)} has a base that is not a list")
                count, size = head
                items = data[size:]
                break
            a = frame.index(b"\n")
            b = frame.index(b"\n", a + 1)
            added += int(frame[1:a])
            parts.append(frame[b + 1 :])
            base = frame[a + 1 : b]
            found = self.bases.get((ns, base))
            if found is None:
                raise BaseGone(
                    f"needs the value {_name(at)}, which is incomplete: its delta base "
                    f"{_name(base)} is gone"
                )
            at, frame = base, found
        else:
            raise SaverError(f"stored value {_name(field)}: delta chain too long")
        parts.append(items)
        parts.reverse()
        result = (count + added, b"".join(parts))
        self.built[(ns, field)] = result
        return result


def _name(field: bytes) -> str:
    return repr(field.decode(errors="replace"))


@dataclass(frozen=True, slots=True)
class Written:
    """What this process last wrote for one (namespace, channel) of a thread."""

    field: str
    data: bytes
    header: int
    count: int
    chain: frozenset[str]
    """Fields the value depends on, its own included (a new delta must not be one)."""
    snapshot: int
    """Size of the full frame at the chain's root."""
    spent: int
    """Bytes of the deltas since that full frame."""

    @classmethod
    def root(cls, field: str, data: bytes, header: int, count: int) -> tuple[bytes, Written]:
        """A list value as a full frame, and the chain that starts at it."""
        frame = codec.pack(("msgpack", data))
        return frame, cls(field, data, header, count, frozenset((field,)), len(frame), 0)

    def whole(self) -> tuple[bytes, Written]:
        """This value as a full frame, and what writing it makes the new root."""
        return Written.root(self.field, self.data, self.header, self.count)


@dataclass(frozen=True, slots=True)
class Encoded:
    frame: bytes
    written: Written | None
    base: str | None


class ListBases:
    """Per-process memory of the last list written per (thread, namespace, channel).

    A miss (another process wrote the last step, or eviction) only costs a full
    frame; the write checks that the base still exists, so a stale entry is safe.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._threads: OrderedDict[str, dict[tuple[str, str], Written]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def encode(
        self, thread_id: str, ns: str, channel: str, field: str, type_: str, data: bytes
    ) -> Encoded:
        """How to store ``data``: a delta against what this process wrote last for the
        same (thread, namespace, channel) where that is allowed, else a full frame
        (built only then: the frame copies the whole value)."""
        head = array_header(data) if type_ == "msgpack" else None
        if head is None:
            return Encoded(codec.pack((type_, data)), None, None)
        count, header = head
        with self._lock:
            prev = self._threads.get(thread_id, {}).get((ns, channel))
        if (
            prev is not None
            and len(prev.chain) <= MAX_DEPTH
            and field not in prev.chain
            and count >= prev.count
            and data.startswith(memoryview(prev.data)[prev.header :], header)  # no copies
        ):
            known = len(prev.data) - prev.header
            frame = b"".join(
                (MARK, str(count - prev.count).encode(), b"\n", prev.field.encode(), b"\n",
                 data[header + known :])
            )  # fmt: skip
            spent = prev.spent + len(frame)
            if spent <= prev.snapshot // 2:
                chain = prev.chain | {field}
                written = Written(field, data, header, count, chain, prev.snapshot, spent)
                return Encoded(frame, written, prev.field)
        return Encoded(*Written.root(field, data, header, count), None)

    def remember(self, thread_id: str, ns: str, channel: str, written: Written) -> None:
        with self._lock:
            entries = self._threads.setdefault(thread_id, {})
            old = entries.get((ns, channel))
            self._bytes += len(written.data) - (len(old.data) if old else 0)
            entries[(ns, channel)] = written
            self._threads.move_to_end(thread_id)
            while self._bytes > self.max_bytes and len(self._threads) > 1:
                _, gone = self._threads.popitem(last=False)
                self._bytes -= sum(len(w.data) for w in gone.values())

    def forget_channel(self, thread_id: str, ns: str, channel: str) -> None:
        with self._lock:
            gone = self._threads.get(thread_id, {}).pop((ns, channel), None)
            if gone:
                self._bytes -= len(gone.data)

    def forget(self, thread_id: str) -> None:
        with self._lock:
            gone = self._threads.pop(thread_id, None)
            if gone:
                self._bytes -= sum(len(w.data) for w in gone.values())

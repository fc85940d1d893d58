"""The key layout: every Redis key the saver touches is named here and nowhere else.

All keys of one thread share the hash tag ``{t<escaped thread id>}`` so they live on
one cluster slot (and one proxy shard), which is what makes MULTI/EXEC and
same-slot Lua possible on every topology. Every user-supplied part is escaped with
:func:`escape`, which is injective and leaves no ``{``, ``}``, ``:`` or newline in
its output; the leading ``t`` keeps the tag non-empty for the empty thread id.

Lua scripts rebuild per-checkpoint key names server-side (to read "latest" in one
round trip); :data:`LUA_LAYOUT` is generated from the same constants so both sides
can never disagree.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass

ESCAPED = "%{}:\n"
_TABLE = {ord(c): f"%{ord(c):02X}" for c in ESCAPED}
_NEEDS_ESCAPE = re.compile(f"[{re.escape(ESCAPED)}]").search

CHECKPOINT = "cp:"
WRITES = "w:"
REGISTRY = "r:"
BLOBS = "b:"
NAMESPACES = "ns:"
WRITE_KEYS = "wk:"
DIRECTORY_BUCKETS = 16
STORE_ITEM = "si:"
STORE_INDEX = "sx:"
STORE_DIRECTORY = "sdir:"
STORE_VECTORS = "sv:"


def escape(part: str) -> str:
    """Injective escape for a user-supplied key part (percent-encoding of a few bytes).
    Most parts need none, which a search tells faster than ``translate`` does."""
    return part if _NEEDS_ESCAPE(part) is None else part.translate(_TABLE)


def unescape(part: str) -> str:
    """Inverse of :func:`escape`."""
    if "%" not in part:
        return part
    out: list[str] = []
    i = 0
    while i < len(part):
        c = part[i]
        if c == "%":
            out.append(chr(int(part[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def thread_tag(thread_id: str) -> str:
    """The hash-tag text for a thread: never empty, brace-free, injective."""
    return "t" + escape(thread_id)


def encode_version(version: str | int | float) -> str:
    """Channel versions keep their type in the key so ``1`` and ``"1"`` never collide."""
    if isinstance(version, str):
        return "s" + escape(version)
    if isinstance(version, bool):
        raise TypeError(f"channel version must be str, int or float, not bool ({version!r})")
    if isinstance(version, int):
        return f"i{version}"
    if isinstance(version, float):
        return f"f{version!r}"
    raise TypeError(f"channel version must be str, int or float, not {type(version).__name__}")


@functools.lru_cache(maxsize=4096, typed=True)
def blob_field(channel: str, version: str | int | float) -> str:
    """Field of a channel value in the namespace's blob hash: one per (channel, version).
    Cached (``typed``: ``1``, ``1.0`` and ``True`` stay apart): a put names every
    channel's field, most of them the same as the last put's."""
    return f"{escape(channel)}:{encode_version(version)}"


def write_field(task_id: str, idx: int) -> str:
    """Field of one pending write in a checkpoint's writes hash: (task id, index)."""
    return f"{escape(task_id)}:{idx}"


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ValueError("key prefix must be a non-empty string")
    bad = set(prefix) & set("{}\n")
    if bad:
        raise ValueError(f"key prefix must not contain {''.join(sorted(bad))!r}: {prefix!r}")
    return prefix


@dataclass(frozen=True, slots=True)
class ThreadKeys:
    """The keys of one thread, ``<prefix>:<kind>:{<tag>}...``.

    The kind comes before the hash tag so each kind has a key prefix of its own
    (a search index covers ``<prefix>:cp:{`` and nothing else). ``handle`` is the
    prefix and the braced tag joined by a newline (neither can contain one): the
    one string scripts need to derive every key of the thread.
    """

    handle: str

    def _key(self, kind: str, rest: str = "") -> str:
        prefix, tag = self.handle.split("\n", 1)
        return f"{prefix}:{kind}{tag}{rest}"

    @property
    def namespaces(self) -> str:
        """Set of the thread's raw namespace names."""
        return self._key(NAMESPACES)

    @property
    def write_keys(self) -> str:
        """Set of the thread's writes-hash keys, so deleting a thread also finds writes
        stored for a checkpoint that was never put."""
        return self._key(WRITE_KEYS)

    def registry(self, ns: str) -> str:
        """Sorted set (all scores 0, ordered by id) of the namespace's checkpoint ids."""
        return self._key(REGISTRY, ":" + escape(ns))

    def blobs(self, ns: str) -> str:
        """Hash of the namespace's channel values, one field per (channel, version)."""
        return self._key(BLOBS, ":" + escape(ns))

    def checkpoint(self, ns: str, checkpoint_id: str) -> str:
        return self._key(CHECKPOINT, f":{escape(ns)}:{escape(checkpoint_id)}")

    def writes(self, ns: str, checkpoint_id: str) -> str:
        return self._key(WRITES, f":{escape(ns)}:{escape(checkpoint_id)}")


def store_tag(label: str) -> str:
    """The hash-tag text of a store namespace's first label: a user's memories share
    a slot, different users' spread over the cluster."""
    return "s" + escape(label)


def encode_namespace(namespace: tuple[str, ...]) -> str:
    """A namespace as one key part: its labels escaped (no ``:`` left in them), joined
    by ``:``. Injective for the non-empty labels LangGraph allows."""
    return ":".join(escape(label) for label in namespace)


def decode_namespace(text: str) -> tuple[str, ...]:
    return tuple(unescape(label) for label in text.split(":"))


@dataclass(frozen=True, slots=True)
class StoreKeys:
    """The store keys of one first label (all on one slot), ``<prefix>:<kind>{<tag>}...``."""

    prefix: str
    tag: str

    def _key(self, kind: str, rest: str = "") -> str:
        return f"{self.prefix}:{kind}{{{self.tag}}}{rest}"

    def item(self, namespace: tuple[str, ...], key: str) -> str:
        """Hash of one item: its value, timestamps, ttl and vectors."""
        return self._key(STORE_ITEM, f":{encode_namespace(namespace)}:{escape(key)}")

    def vectors(self, namespace: tuple[str, ...], key: str) -> str:
        """JSON document of one item's vectors, for the Search module's vector index
        (the item's key with another kind)."""
        return self._key(STORE_VECTORS, f":{encode_namespace(namespace)}:{escape(key)}")

    @property
    def index(self) -> str:
        """Sorted set of the label's items (``<namespace>:<key>``, see ``store_entry``),
        each scored by when it expires."""
        return self._key(STORE_INDEX)


def store_entry(namespace: tuple[str, ...], key: str) -> str:
    """An item's member in its label's index: the namespace, then the key (escaped,
    so the last ``:`` parts them)."""
    return f"{encode_namespace(namespace)}:{escape(key)}"


def parse_store_entry(entry: str) -> tuple[tuple[str, ...], str]:
    namespace, _, key = entry.rpartition(":")
    return decode_namespace(namespace), unescape(key)


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Names every key under one prefix, so several applications can share a database."""

    prefix: str = "rcs"

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def thread(self, thread_id: str) -> ThreadKeys:
        return ThreadKeys(f"{self.prefix}\n{{{thread_tag(thread_id)}}}")

    @property
    def checkpoint_prefix(self) -> str:
        """What every checkpoint hash's key starts with (for a search index)."""
        return f"{self.prefix}:{CHECKPOINT}{{"

    def directory(self, thread_id: str) -> str:
        """Bucket of the thread directory that lists this thread.

        The directory lets cross-thread operations enumerate threads without KEYS or
        SCAN (which strict proxies refuse); bucketing spreads it over slots so it is
        no hot key.
        """
        bucket = zlib.crc32(thread_id.encode("utf-8", "surrogatepass")) % DIRECTORY_BUCKETS
        return self.directory_bucket(bucket)

    def directory_bucket(self, bucket: int) -> str:
        return f"{self.prefix}:dir:{{d{bucket:02d}}}"

    def all_directory_buckets(self) -> list[str]:
        return [self.directory_bucket(b) for b in range(DIRECTORY_BUCKETS)]

    def store(self, namespace: tuple[str, ...]) -> StoreKeys:
        """The store keys of a namespace: those of its first label."""
        return StoreKeys(self.prefix, store_tag(namespace[0]))

    def store_directory(self, label: str) -> str:
        """Bucket of the store directory that lists a first label (as the thread
        directory lists threads: no SCAN, no hot key)."""
        bucket = zlib.crc32(label.encode("utf-8", "surrogatepass")) % DIRECTORY_BUCKETS
        return f"{self.prefix}:{STORE_DIRECTORY}{{d{bucket:02d}}}"

    def all_store_directory_buckets(self) -> list[str]:
        return [f"{self.prefix}:{STORE_DIRECTORY}{{d{b:02d}}}" for b in range(DIRECTORY_BUCKETS)]

    @property
    def store_item_prefix(self) -> str:
        """What every store item's key starts with (for a search index)."""
        return f"{self.prefix}:{STORE_ITEM}{{"

    @property
    def store_vectors_prefix(self) -> str:
        """What every item's vector document's key starts with (the vector index's)."""
        return f"{self.prefix}:{STORE_VECTORS}{{"

    def item_of_vectors(self, key: bytes | str) -> str:
        """The item a vector document belongs to."""
        text = key.decode() if isinstance(key, bytes) else key
        head = len(self.store_vectors_prefix) - 1
        return f"{self.prefix}:{STORE_ITEM}{text[head:]}"

    def store_index(self, dims: int, tag: str | None = None) -> str:
        """Name of the store's vector index for ``dims`` dimensions (a new dimension
        is a new index, never a mismatch), one per shard as :meth:`index`."""
        name = f"{self.prefix}:sidx{dims}"
        return name if tag is None else f"{name}:{{{tag}}}"

    def probe_key(self) -> str:
        """The one key the detector writes (and deletes) to test what is allowed."""
        return f"{self.prefix}:{{probe}}:detect"

    def index(self, tag: str | None = None) -> str:
        """Name of the search index (one per shard, each on a slot of its own, where
        search sees one shard: ``tag`` picks the slot)."""
        return f"{self.prefix}:idx" if tag is None else f"{self.prefix}:idx:{{{tag}}}"

    def probe_index(self) -> str:
        """An index name the detector only asks about (it is never created)."""
        return f"{self.prefix}:idx:{{probe}}:detect"

    def checkpoint_parts(self, key: bytes | str) -> tuple[str, str, str]:
        """(thread id, namespace, checkpoint id) from a checkpoint hash's key."""
        text = key.decode() if isinstance(key, bytes) else key
        thread = self.thread_id_of(text)
        ns_e, id_e = text[text.index("}:") + 2 :].split(":")
        return thread, unescape(ns_e), unescape(id_e)

    def thread_id_of(self, key: str) -> str:
        """Recover the thread id from any key of a thread (used by cross-thread tools)."""
        start = key.index("{") + 1
        end = key.index("}", start)
        return unescape(key[start + 1 : end])


# Server-side twins of escape() and ThreadKeys, for scripts; built from the constants
# above. ``B`` is ThreadKeys.handle.
_LUA_CHARS = {c: "\\n" if c == "\n" else c for c in ESCAPED}  # as Lua string literals
_LUA_NEEDS_ESCAPE = "\n      or ".join(
    f"string.find(s, '{c}', 1, true)" for c in _LUA_CHARS.values()
)
_LUA_CLASS = "".join("%%" if c == "%" else c for c in _LUA_CHARS.values())
LUA_LAYOUT = f"""
-- (new strings are the costly thing in a server's Lua: most ids need no escaping,
-- found by plain searches, which are cheaper than a pattern; each handle is split
-- once per call)
local function esc(s)
  if not ({_LUA_NEEDS_ESCAPE}) then
    return s
  end
  return (string.gsub(s, '[{_LUA_CLASS}]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end
local handles = {{}}
local function key(B, kind, rest)
  local h = handles[B]
  if not h then
    local i = string.find(B, '\\n', 1, true)
    h = {{string.sub(B, 1, i - 1) .. ':', string.sub(B, i + 1)}}
    handles[B] = h
  end
  return h[1] .. kind .. h[2] .. rest
end
local function k_ns(B) return key(B, '{NAMESPACES}', '') end
local function k_wk(B) return key(B, '{WRITE_KEYS}', '') end
local function k_reg(B, ne) return key(B, '{REGISTRY}', ':' .. ne) end
local function k_blobs(B, ne) return key(B, '{BLOBS}', ':' .. ne) end
local function k_cp(B, ne, id) return key(B, '{CHECKPOINT}', ':' .. ne .. ':' .. esc(id)) end
local function k_w(B, ne, id) return key(B, '{WRITES}', ':' .. ne .. ':' .. esc(id)) end
"""

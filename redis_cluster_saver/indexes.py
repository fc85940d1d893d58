"""Search indexes on a cluster: one per primary where search sees one shard.

RediSearch without its coordinator (open-source clusters before Redis 8) creates an
index, and answers FT.SEARCH, on the node that owns the index name's slot, over that
node's keys only. So each primary gets an index named with a hash tag on a slot it
owns, queries go to all of them, and their answers are merged. The saver's
checkpoint index and the store's vector index are both kept this way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot
from redis.exceptions import NoPermissionError, ResponseError

from .detector import Capabilities
from .plan import Command, Plan, T, one, pause


def names_for_slots(named: Callable[[str | None], str], slots: Sequence[Any]) -> list[str]:
    """One index name per primary, each hashing to a slot that primary owns, from a
    CLUSTER SLOTS reply ([start, end, [host, port, id], replicas...] per range)."""
    ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for entry in slots:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        ranges.setdefault((host, int(primary[1])), []).append((start, end))
    names = []
    for owned in ranges.values():
        i = 0
        while not any(a <= key_slot(named(f"n{i}").encode()) <= b for a, b in owned):
            i += 1
        names.append(named(f"n{i}"))
    return sorted(names)


def _indexing(info: Any) -> bool:
    """Is the index still reading existing keys (FT.INFO, RESP2 or RESP3)?"""
    from .codec import pairs

    fields = pairs(info)
    value = fields.get(b"indexing", fields.get("indexing", 0))  # type: ignore[call-overload]
    return str(value.decode() if isinstance(value, bytes) else value) not in ("0", "0.0")


@dataclass
class ShardIndexes:
    """The indexes of one kind, created on first use and worked out again when one
    is missing (a new primary, a moved slot, an index dropped by hand)."""

    named: Callable[[str | None], str]
    """The index's name: ``None`` for the only one, a hash tag for one per shard."""
    create: Callable[[str], Command]
    names: list[str] | None = None

    def resolve(self, client_kind: str, caps: Capabilities | None) -> Plan[list[str]]:
        """The index names, creating the indexes on first use."""
        if self.names is None:
            if client_kind == "cluster" and not (caps and caps.search_all_shards):
                (slots,) = yield one(Command.keyless("CLUSTER", "SLOTS"))
                names = names_for_slots(self.named, slots)
            else:
                names = [self.named(None)]
            for name in names:
                yield from self._create(name)
            self.names = names
        return self.names

    def _create(self, name: str) -> Plan[None]:
        try:
            yield one(self.create(name))
        except ResponseError as exc:
            if "already exists" in str(exc).lower():
                return
            if not isinstance(exc, NoPermissionError):
                raise
            # a least-privilege user may be denied FT.CREATE where an administrator
            # made the index beforehand: use it if it is there, else say why not
            try:
                yield one(Command.routed(name, "FT.INFO", name))
            except ResponseError:
                raise exc from None
            return
        while True:  # a new index over existing keys: wait until it has read them
            (info,) = yield one(Command.routed(name, "FT.INFO", name))
            if not _indexing(info):
                return
            yield pause(0.05)

    def rerun(self, make: Callable[[], Plan[T]]) -> Plan[T]:
        """Run an index query; if an index is missing on its node, work out the
        indexes again, create what is missing, and rerun the query from its start."""
        try:
            return (yield from make())
        except ResponseError as exc:
            text = str(exc).lower()
            if "no such index" not in text and "unknown index" not in text:
                raise
        self.names = None
        return (yield from make())

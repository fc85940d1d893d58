"""The store's operations, each written once as a plan of round trips (no I/O here).

The plans compose the saver's shared session (detection, modes, the retry policy,
atomic writes with durable mode's WAIT and per-key mode's publish-last order): the
store is a second client of the same core, not a subclass of the saver's plans.

Layout (keys.py): a namespace's items live on the slot of its first label. An item
is a hash; each first label has an index, a sorted set of its items' (namespace, key)
scored by when each expires (``+inf``: never), so a read skips what expired without
waiting for the server to drop it. A directory, bucketed over slots as the thread
directory is, lists the first labels, so listing across users needs no SCAN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from ..codec import pairs
from ..keys import KeyLayout, parse_store_entry, store_entry
from ..plan import Call, Command, Plan, RoundTrip, one
from ..session import Session, flatten
from .items import (
    Stored,
    check_filter,
    expiry_score,
    item_fields,
    literal_first_label,
    load_item,
    matches,
    namespace_page,
    order,
    search_page,
    ttl_ms,
)

DEFAULT_MAX_CANDIDATES = 10_000
"""At most this many items under a search's namespace prefix are read and scored
(exactly) where no search index serves it; more raise a clear error."""


class SearchTooBroadError(ValueError):
    """A search without an index would read more items than ``max_candidates``."""


def _text(data: Any) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


@dataclass
class StorePlans:
    """The plans of one store: the shared session, the key layout and the options."""

    session: Session
    layout: KeyLayout
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    listed: set[str] = field(default_factory=set)
    """First labels this process has put in the directory (a hint: see put_many)."""

    def batch(
        self,
        ops: Sequence[Op],
        vectors: Mapping[int, Mapping[str, list[float]]],
        queries: Mapping[int, list[float]],
        now_ms: int,
    ) -> Plan[list[Result]]:
        """Every op of a batch, reads first and then the puts, as InMemoryStore
        applies them (a read in a batch sees the store as it was before the batch;
        of several puts of one item the last wins)."""
        results: list[Result] = []
        puts: dict[tuple[tuple[str, ...], str], int] = {}
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                check_filter(op.filter)
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), op.key)] = i
            elif not isinstance(op, (GetOp, ListNamespacesOp)):
                raise ValueError(f"unknown store operation: {type(op).__name__}")
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        found = (yield from self.get_many([op for _, op in gets], now_ms)) if gets else []
        by_index = {i: item for (i, _), item in zip(gets, found, strict=True)}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                results.append(by_index[i])
            elif isinstance(op, SearchOp):
                results.append((yield from self.search(op, queries.get(i), now_ms)))
            elif isinstance(op, ListNamespacesOp):
                results.append((yield from self.list_namespaces(op, now_ms)))
            else:
                results.append(None)
        by_label: dict[str, list[tuple[PutOp, Mapping[str, list[float]]]]] = {}
        for i in puts.values():
            put = ops[i]
            assert isinstance(put, PutOp)
            by_label.setdefault(put.namespace[0], []).append((put, vectors.get(i, {})))
        for label, group in by_label.items():
            yield from self.put_many(label, group, now_ms)
        return results

    # ---------------------------------------------------------------- one item

    def get_many(self, ops: Sequence[GetOp], now_ms: int) -> Plan[list[Item | None]]:
        """Every get of a batch in one pipelined round trip (on a cluster, one per node)."""
        raws = yield RoundTrip(
            tuple(
                Command.of(
                    "HGETALL",
                    self.layout.store(tuple(op.namespace)).item(tuple(op.namespace), op.key),
                )
                for op in ops
            )
        )
        stored = [load_item(pairs(raw)) for raw in raws]
        refresh = [
            s for op, s in zip(ops, stored, strict=True) if s and op.refresh_ttl and s.ttl_ms
        ]
        if refresh:
            yield from self._refresh(refresh, now_ms)
        return [s.item if s is not None else None for s in stored]

    def put_many(
        self, label: str, puts: Sequence[tuple[PutOp, Mapping[str, list[float]]]], now_ms: int
    ) -> Plan[None]:
        """A batch's puts (and deletes) under one first label as one atomic write on its
        slot: the items, then their entries in the label's index (published last)."""
        index = self.layout.store((label,)).index
        calls: list[Call] = []
        for op, vectors in puts:
            calls += self._put_calls(op, vectors, now_ms)
        listing = Command.of("SADD", self.layout.store_directory(label), label)
        first = label not in self.listed  # once per label and process
        if first and self.session.single_node:  # one slot: it rides in the write itself
            calls.insert(0, listing)
        elif first:  # another slot: listed first (readers skip a label with nothing)
            yield one(listing)
        self.listed.add(label)
        calls.insert(0, Command.of("EXISTS", index))
        replies = yield from self.session._atomic(None, calls)
        if not first and not int(replies[0]):
            # the label's index was gone (every item deleted or expired, or the server
            # lost its data): the directory entry may have gone too, so it goes again
            yield one(listing)

    def _put_calls(self, op: PutOp, vectors: Mapping[str, list[float]], now_ms: int) -> list[Call]:
        namespace = tuple(op.namespace)
        keys = self.layout.store(namespace)
        item, entry = keys.item(namespace, op.key), store_entry(namespace, op.key)
        if op.value is None:
            return [Command.of("ZREM", keys.index, entry), Command.of("DEL", item)]
        ttl = op.ttl
        fields = item_fields(namespace, op.key, op.value, now_ms, ttl, vectors)
        calls: list[Call] = [Command.of("DEL", item), Command(("HSET", item, *flatten(fields)))]
        if ttl is not None:  # and the entries that expired since go from the index
            calls += [
                Command.of("PEXPIRE", item, ttl_ms(ttl)),
                Command.of("ZREMRANGEBYSCORE", keys.index, "-inf", now_ms),
            ]
        calls.append(Command.publishing("ZADD", keys.index, expiry_score(now_ms, ttl), entry))
        return calls

    def _refresh(self, stored: Sequence[Stored], now_ms: int) -> Plan[None]:
        """Each item's ttl starts again (the item, and its score in the index): one
        atomic write per first label."""
        by_label: dict[str, list[Call]] = {}
        for s in stored:
            if not s.ttl_ms:
                continue
            namespace, key = s.item.namespace, s.item.key
            keys = self.layout.store(namespace)
            by_label.setdefault(namespace[0], []).extend(
                (
                    Command.of("PEXPIRE", keys.item(namespace, key), s.ttl_ms),
                    Command.of(
                        "ZADD",
                        keys.index,
                        "XX",
                        "GT",
                        now_ms + s.ttl_ms,
                        store_entry(namespace, key),
                    ),
                )
            )
        for calls in by_label.values():
            yield from self.session._atomic(None, calls)

    # ---------------------------------------------------------------- many items

    def search(
        self, op: SearchOp, query: list[float] | None, now_ms: int
    ) -> Plan[list[SearchItem]]:
        """Two round trips: the entries of the labels under the prefix, then the items."""
        prefix = tuple(op.namespace_prefix)
        label = literal_first_label(prefix)
        labels = [label] if label is not None else (yield from self._labels())
        entries = yield from self._entries(labels, now_ms)
        wanted = [(ns, key) for ns, key in entries if ns[: len(prefix)] == prefix]
        candidates = yield from self._items(wanted)
        matching = [s for s in candidates if matches(s.item.value, op.filter)]
        page = search_page(matching, query, op.offset, op.limit)
        if op.refresh_ttl:
            hits = {(hit.namespace, hit.key) for hit in page}
            refresh = [s for s in matching if (s.item.namespace, s.item.key) in hits]
            yield from self._refresh(refresh, now_ms)
        return page

    def list_namespaces(self, op: ListNamespacesOp, now_ms: int) -> Plan[list[tuple[str, ...]]]:
        """One round trip (two without a first label to start from): the namespaces
        of the entries not yet expired."""
        label = None
        for condition in op.match_conditions or ():
            if condition.match_type == "prefix":
                label = label or literal_first_label(tuple(condition.path))
        labels = [label] if label is not None else (yield from self._labels())
        entries = yield from self._entries(labels, now_ms)
        namespaces = {ns for ns, _ in entries}
        return namespace_page(namespaces, op.match_conditions, op.max_depth, op.offset, op.limit)

    def _labels(self) -> Plan[list[str]]:
        """Every first label the directory lists."""
        buckets = self.layout.all_store_directory_buckets()
        replies = yield RoundTrip(tuple(Command.of("SMEMBERS", b) for b in buckets))
        return sorted({_text(m) for members in replies for m in members})

    def _entries(
        self, labels: Sequence[str], now_ms: int
    ) -> Plan[list[tuple[tuple[str, ...], str]]]:
        """(namespace, key) of every item under these labels not yet expired."""
        if not labels:
            return []
        replies = yield RoundTrip(
            tuple(
                Command.of("ZRANGEBYSCORE", self.layout.store((label,)).index, f"({now_ms}", "+inf")
                for label in labels
            )
        )
        return [parse_store_entry(_text(m)) for members in replies for m in members]

    def _items(self, wanted: Sequence[tuple[tuple[str, ...], str]]) -> Plan[list[Stored]]:
        """These items, in the store's order (one deleted or expired meanwhile: left out)."""
        if len(wanted) > self.max_candidates:
            raise SearchTooBroadError(
                f"this search would read {len(wanted)} items, over max_candidates="
                f"{self.max_candidates}: narrow its namespace prefix, or raise the bound"
            )
        if not wanted:
            return []
        raws = yield RoundTrip(
            tuple(Command.of("HGETALL", self.layout.store(ns).item(ns, key)) for ns, key in wanted)
        )
        loaded = [load_item(pairs(raw)) for raw in raws]
        return order(s for s in loaded if s is not None)

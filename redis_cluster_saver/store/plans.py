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
from functools import partial
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
from ..indexes import ShardIndexes
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
from .vectors import create_command, document, knn_command, knn_hits, usable

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
    dims: int | None = None
    """The index's dimensions (None: no index, nothing embedded)."""
    use_search: bool | None = None
    """Use the Search module's vector index: None where it runs, False never, True
    (or an error at setup where it does not run)."""
    algorithm: str = "FLAT"
    listed: set[str] = field(default_factory=set)
    """First labels this process has put in the directory (a hint: see put_many)."""
    vector_indexes: ShardIndexes | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.dims is not None and self.use_search is not False:
            dims, algorithm = self.dims, self.algorithm
            self.vector_indexes = ShardIndexes(
                partial(self.layout.store_index, dims),
                partial(create_command, self.layout, dims, algorithm),
            )

    def setup(self) -> Plan[None]:
        yield from self.session.setup()
        if self._vectors_on():
            assert self.vector_indexes is not None
            caps, kind = self.session.capabilities, self.session.client_kind
            yield from self.vector_indexes.resolve(kind, caps)

    def _vectors_on(self) -> bool:
        """Are vectors kept in (and searched through) the Search module's index?"""
        caps = self.session.capabilities
        if self.vector_indexes is None or caps is None:
            return False
        if caps.search and caps.json:
            return True
        if self.use_search:
            raise ValueError(
                "search=True, but the server has no usable Search and JSON modules "
                "(the store's vector index needs both)"
            )
        return False

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
        # every write's commands before anything is sent: a bad value under one first
        # label leaves the others unwritten too
        writes: dict[str, list[Call]] = {}
        for i in puts.values():
            put = ops[i]
            assert isinstance(put, PutOp)
            calls = self._put_calls(put, vectors.get(i, {}), now_ms)
            writes.setdefault(put.namespace[0], []).extend(calls)
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
        for label, calls in writes.items():
            yield from self.put_many(label, calls)
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

    def put_many(self, label: str, calls: list[Call]) -> Plan[None]:
        """A batch's puts (and deletes) under one first label (``_put_calls``) as one
        atomic write on its slot: the items, then their entries in the label's index
        (published last)."""
        index = self.layout.store((label,)).index
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
        docs = keys.vectors(namespace, op.key) if self._vectors_on() else None
        if op.value is None:
            gone: list[Call] = [Command.of("ZREM", keys.index, entry), Command.of("DEL", item)]
            return gone + ([Command.of("DEL", docs)] if docs else [])
        ttl = op.ttl
        fields = item_fields(namespace, op.key, op.value, now_ms, ttl, vectors)
        calls: list[Call] = [Command.of("DEL", item), Command(("HSET", item, *flatten(fields)))]
        if docs and vectors:
            calls.append(Command.of("JSON.SET", docs, "$", document(namespace, vectors)))
        elif docs:
            calls.append(Command.of("DEL", docs))
        if ttl is not None:  # and the entries that expired since go from the index
            calls += [Command.of("PEXPIRE", item, ttl_ms(ttl))]
            if docs and vectors:
                calls.append(Command.of("PEXPIRE", docs, ttl_ms(ttl)))
            calls.append(Command.of("ZREMRANGEBYSCORE", keys.index, "-inf", now_ms))
        calls.append(Command.publishing("ZADD", keys.index, expiry_score(now_ms, ttl), entry))
        return calls

    def _refresh(self, stored: Sequence[Stored], now_ms: int) -> Plan[None]:
        """Each item's ttl starts again (the item, and its score in the index): one
        atomic write per first label."""
        by_label: dict[str, list[Call]] = {}
        docs = self._vectors_on()
        for s in stored:
            if not s.ttl_ms:
                continue
            namespace, key = s.item.namespace, s.item.key
            keys = self.layout.store(namespace)
            calls = by_label.setdefault(namespace[0], [])
            if docs and s.vectors:
                calls.append(Command.of("PEXPIRE", keys.vectors(namespace, key), s.ttl_ms))
            calls.extend(
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
        """Two round trips: the entries of the labels under the prefix, then the items
        (or, with a query where the vector index runs, its nearest, then their items)."""
        if query is not None and usable(query) and self._vectors_on():
            assert self.vector_indexes is not None
            rerun = self.vector_indexes.rerun
            found = yield from rerun(lambda: self._knn(op, query))
            if found is not None:
                page, hit = found
                if op.refresh_ttl:
                    yield from self._refresh(hit, now_ms)
                return page
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

    def _knn(
        self, op: SearchOp, query: list[float]
    ) -> Plan[tuple[list[SearchItem], list[Stored]] | None]:
        """The page from the vector index: the nearest documents of every shard (one
        round trip), merged, then their items (one more), filtered and scored exactly.
        None when fewer items with vectors match than the page asks: items without
        vectors then fill it, which only the exact path knows.

        Exact: an item not among a shard's ``k`` nearest is no nearer than that
        shard's ``k``-th. So once ``offset + limit`` matching items are no farther
        than the nearest of those bounds, no unseen item can enter the page (but one
        of equal score, for another in a tie); until then ``k`` grows (to
        ``max_candidates`` at most)."""
        assert self.vector_indexes is not None
        caps, kind = self.session.capabilities, self.session.client_kind
        names = yield from self.vector_indexes.resolve(kind, caps)
        prefix, need = tuple(op.namespace_prefix), op.offset + op.limit
        # without a filter every shard's first ``need`` are enough, and only the
        # nearest ``need`` of all are read; a filter may pass over some
        k = min(need if op.filter is None else max(2 * need, 10), self.max_candidates)
        gone: set[str] = set()  # expired since the index saw them (or deleted)
        while True:
            replies = yield RoundTrip(
                tuple(knn_command(n, prefix, query, k, self.algorithm) for n in names)
            )
            shards = [knn_hits(r) for r in replies]
            bound = min((hits[-1][0] for hits in shards if len(hits) >= k), default=None)
            nearest: dict[str, float] = {}  # each item at its nearest vector
            for distance, doc in sorted(h for hits in shards for h in hits):
                if bound is not None and distance > bound:
                    break  # unseen items may be nearer than these
                nearest.setdefault(self.layout.item_of_vectors(doc), distance)
            wanted = [key for key in nearest if key not in gone]
            wanted = wanted[: need if op.filter is None else None]
            raws = yield from self._raw(wanted)
            gone.update(key for key, s in zip(wanted, raws, strict=True) if s is None)
            matching = [
                s
                for s in raws
                if s is not None
                and s.vectors
                and s.item.namespace[: len(prefix)] == prefix
                and matches(s.item.value, op.filter)
            ]
            if bound is None or len(matching) >= need:  # no unseen item is nearer
                break
            if k >= self.max_candidates:
                raise SearchTooBroadError(
                    f"this search would score more than max_candidates={self.max_candidates} "
                    "vectors to fill its page (a filter few items match?): narrow its "
                    "namespace prefix, or raise the bound"
                )
            k = min(k * 4, self.max_candidates)
        if len(matching) < need:
            return None
        page = search_page(order(matching), query, op.offset, op.limit)
        hits = {(hit.namespace, hit.key) for hit in page}
        return page, [s for s in matching if (s.item.namespace, s.item.key) in hits]

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
        keys = [self.layout.store(ns).item(ns, key) for ns, key in wanted]
        return order((yield from self._load(keys)))

    def _load(self, keys: Sequence[str]) -> Plan[list[Stored]]:
        """These items (one deleted or expired meanwhile: left out), in one round trip."""
        return [s for s in (yield from self._raw(keys)) if s is not None]

    def _raw(self, keys: Sequence[str]) -> Plan[list[Stored | None]]:
        """These items, None for one deleted or expired, in one round trip."""
        if not keys:
            return []
        raws = yield RoundTrip(tuple(Command.of("HGETALL", key) for key in keys))
        return [load_item(pairs(raw)) for raw in raws]

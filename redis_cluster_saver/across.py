"""Across threads: list(None, ...) and the threads of runs, through the search index
(one, or one per shard, fanned out) or the thread directory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
)

from . import codec, search, validation
from .errors import ThreadDamagedError
from .plan import (
    Command,
    Plan,
    RoundTrip,
    T,
)
from .reads import LISTED_GONE, Reads, entry_resolver, matches
from .replies import Entry, Listed, Missing

logger = logging.getLogger("redis_cluster_saver")


def _skip(skipped: set[str], thread_id: str, why: str) -> None:
    """Leave a damaged thread out of a cross-thread call, with one warning naming it."""
    if thread_id in skipped:
        return
    skipped.add(thread_id)
    logger.warning(
        "redis-cluster-saver: thread %r is damaged and left out (%s); its keys were "
        "evicted or deleted by hand: delete or restore it",
        thread_id,
        why,
    )


class CrossThread(Reads):
    """Listing, by thread or across threads."""

    def list_checkpoints(
        self,
        config: RunnableConfig | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Plan[list[CheckpointTuple]]:
        """Checkpoints newest first: of one thread (one or all namespaces), or of all threads."""
        n = validation.limit(limit)
        if n is not None and n <= 0:
            return []
        before_id = validation.checkpoint_id(before) or ""
        filter_args = codec.filter_args(filter)
        if config is None and self._indexed():
            return (yield from self._with_indexes(lambda: self._indexed_list(filter, before_id, n)))
        if config is None:
            return (yield from self._directory_list(filter, filter_args, before_id, n))
        thread_id = validation.thread_id(config)
        namespaces: list[str] = []
        if validation.configurable(config).get("checkpoint_ns") is not None:
            namespaces = [validation.namespace(config)]
        wanted = validation.checkpoint_id(config) or ""
        call = self._read_call(
            self.layout.thread(thread_id),
            namespaces=namespaces,
            want=wanted,
            limit=0 if wanted else n or 0,
            before=before_id,
            filter_args=filter_args,
        )
        (answer,) = yield from self._scripts([call])
        entries = yield from self._entries(thread_id, answer)
        values_of = entry_resolver(entries)
        entries = sorted(entries, key=lambda e: (e.id, e.ns))
        # oldest first: a delta is rebuilt on its already rebuilt base
        tuples = [self._tuple(thread_id, entry, values_of) for entry in entries][::-1]
        # the 'id' read ignores filters; the others filtered exactly already, and
        # the check (on tuples already loaded) only guards that
        return [t for t in tuples if matches(t, filter, before_id)][:n]

    # ---- across threads: the search index -------------------------------------

    def _indexed(self) -> bool:
        if self.use_search is False:
            return False
        return bool(self.capabilities and self.capabilities.search)

    def _indexes(self) -> Plan[list[str]]:
        return (yield from self.checkpoint_indexes.resolve(self.client_kind, self.capabilities))

    def _search(
        self, where: Any, offsets: dict[str, int], count: int
    ) -> Plan[dict[str, list[bytes]]]:
        """One page from each index still in ``offsets``, in one round trip."""
        names = list(offsets)
        calls = tuple(search.search_command(n, where, offsets[n], count) for n in names)
        replies = yield RoundTrip(calls)
        return {n: search.result_keys(r) for n, r in zip(names, replies, strict=True)}

    def _with_indexes(self, make: Callable[[], Plan[T]]) -> Plan[T]:
        return (yield from self.checkpoint_indexes.rerun(make))

    def _round(
        self,
        where: Any,
        offsets: dict[str, int],
        last: dict[str, tuple[str, str, str]],
        count: int = 0,
    ) -> Plan[list[tuple[str, str, str]]]:
        """The next page of every open index as (checkpoint id, thread, namespace);
        an index is closed (dropped from ``offsets``) by a short page."""
        count = count or search.PAGE
        pages = yield from self._search(where, offsets, count)
        found = []
        for name, keys in pages.items():
            for key in keys:
                thread, ns, cid = self.layout.checkpoint_parts(key)
                found.append((cid, thread, ns))
                last[name] = (cid, thread, ns)
            offsets[name] += len(keys)
            if len(keys) < count:
                del offsets[name]
        return found

    def _indexed_list(
        self, filter: Mapping[str, Any] | None, before_id: str, limit: int | None
    ) -> Plan[list[CheckpointTuple]]:
        where = search.expression(filter)
        names = yield from self._indexes()
        offsets = dict.fromkeys(names, 0)
        last: dict[str, tuple[str, str, str]] = {}
        pool: list[tuple[str, str, str]] = []
        found: list[CheckpointTuple] = []
        skipped: set[str] = set()  # damaged threads, left out
        # pages as long as the limit (when the index answers the whole filter, one
        # page is all it takes), loaded in slices of what is still missing
        count = max(10, min(search.PAGE, limit or search.PAGE))
        while True:
            if offsets:
                pool += yield from self._round(where, offsets, last, count)
            # unread pages hold nothing after the newest last-read entry of an index
            # still open: everything above it is in its final order
            bound = max((last.get(n, ("", "", "")) for n in offsets), default=None)
            ready = sorted((c for c in pool if bound is None or c > bound), reverse=True)
            pool = [c for c in pool if bound is not None and c <= bound]
            while ready:
                step = max(10, limit - len(found)) if limit is not None else len(ready)
                batch, ready = ready[:step], ready[step:]
                for tup in (yield from self._load(batch, skipped)):
                    if matches(tup, filter, before_id):
                        found.append(tup)
                        if limit is not None and len(found) >= limit:
                            return found
            if not offsets and not pool:
                return found

    def _load(
        self, wanted: Sequence[tuple[str, str, str]], skipped: set[str]
    ) -> Plan[list[CheckpointTuple]]:
        """Checkpoints by (id, thread, namespace), in the order given; gone ones
        skipped, and every checkpoint of a damaged thread (once found, it joins
        ``skipped``, with one warning naming it)."""
        wanted = [w for w in wanted if w[1] not in skipped]
        if not wanted:
            return []
        calls = [
            self._read_call(self.layout.thread(t), namespaces=[ns], want=cid)
            for cid, t, ns in wanted
        ]
        replies = yield from self._scripts(calls)
        gone = [
            (t, e) for (_, t, _), es in zip(wanted, replies) for e in es if isinstance(e, Missing)
        ]
        for t, m in (yield from self._damaged(gone)):
            _skip(skipped, t, f"checkpoint {m.id.decode()!r} {LISTED_GONE}")
        loaded = []
        for (_, t, _), answer in zip(wanted, replies, strict=True):
            entries = [e for e in answer if isinstance(e, Entry)]
            if not entries or t in skipped:
                continue
            try:
                loaded.append(self._tuple(t, entries[0], entry_resolver(entries)))
            except ThreadDamagedError as exc:
                _skip(skipped, t, str(exc))
        return [tup for tup in loaded if tup.config["configurable"]["thread_id"] not in skipped]

    def _indexed_threads(self, run_ids: Sequence[str]) -> Plan[list[str]]:
        where = search.expression(None, run_ids)
        names = yield from self._indexes()
        offsets = dict.fromkeys(names, 0)
        threads: set[str] = set()
        while offsets:
            threads.update(t for _, t, _ in (yield from self._round(where, offsets, {})))
        return sorted(threads)

    def _directory_list(
        self,
        filter: Mapping[str, Any] | None,
        filter_args: Sequence[bytes],
        before_id: str,
        limit: int | None,
    ) -> Plan[list[CheckpointTuple]]:
        """Without an index: every thread's matching ids (scripts filter exactly),
        merged newest first, then only the winners loaded."""
        thread_ids = yield from self.thread_ids()
        calls = [
            self._read_call(
                self.layout.thread(tid),
                namespaces=[],
                limit=limit or 0,
                before=before_id,
                filter_args=filter_args,
                ids_only=True,
            )
            for tid in thread_ids
        ]
        replies = yield from self._scripts(calls)
        skipped: set[str] = set()
        gone = [
            (tid, e)
            for tid, listed in zip(thread_ids, replies, strict=True)
            for e in listed
            if isinstance(e, Missing)
        ]
        for tid, m in (yield from self._damaged(gone)):
            _skip(skipped, tid, f"checkpoint {m.id.decode()!r} {LISTED_GONE}")
        found = sorted(
            (
                (e.id.decode(), tid, e.ns.decode())
                for tid, listed in zip(thread_ids, replies, strict=True)
                if tid not in skipped
                for e in listed
                if isinstance(e, Listed)
            ),
            reverse=True,
        )
        loaded = yield from self._load(found[:limit], skipped)
        return [t for t in loaded if matches(t, filter, before_id)]

    def list_threads(self, *, limit: int | None = None, offset: int = 0) -> Plan[list[str]]:
        """Thread ids, in id order, from ``offset``, at most ``limit`` (one round trip
        to the thread directory)."""
        for name, value in (("limit", limit), ("offset", offset)):
            if value is None and name == "limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        ids = yield from self.thread_ids()
        return ids[offset:] if limit is None else ids[offset : offset + limit]

    def thread_ids(self) -> Plan[list[str]]:
        """Every thread in the directory (bucketed sets, no KEYS or SCAN)."""
        buckets = self.layout.all_directory_buckets()
        replies = yield RoundTrip(tuple(Command.of("SMEMBERS", b) for b in buckets))
        return sorted({m.decode() for members in replies for m in members})

"""Reads of one thread: get_tuple, its list, and DeltaChannel history; replies
decoded into LangGraph's tuples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    writes_sort_key,
)
from langgraph.checkpoint.serde.types import TASKS

from . import codec, deltas, scripts, validation
from .errors import ThreadDamagedError
from .keys import ThreadKeys, unescape
from .plan import (
    Arg,
    Command,
    Plan,
    RoundTrip,
    ScriptCall,
    pause,
)
from .replies import Entry, Missing
from .session import Session, config_of
from .versions import next_version

Frames = dict[tuple[bytes, bytes], bytes]
"""Delta bases carried by a reply, by (namespace, field)."""


def resolver(pairs_by_ns: Iterable[tuple[bytes, Sequence[bytes]]]) -> deltas.Resolver:
    frames: Frames = {}
    for ns, flat in pairs_by_ns:
        it = iter(flat)
        for f, v in zip(it, it, strict=True):
            frames[(ns, f)] = v
    return deltas.Resolver(frames)


def entry_resolver(entries: Sequence[Entry]) -> deltas.Resolver:
    return resolver((e.ns, e.bases) for e in entries)


RECHECKS = (0.0, 0.1, 0.4)
"""Pauses before each look again at a listed checkpoint found without its hash. A
deletion in plain commands (per-key mode, in any process) drops the hash a round
trip before the registry entry: the entry going is a deletion, staying is damage."""

LISTED_GONE = "is listed but its data is gone"


def matches(t: CheckpointTuple, filter: Mapping[str, Any] | None, before_id: str) -> bool:
    """InMemorySaver's rule, on a loaded checkpoint: Python's ``==`` per filter item
    (a missing key is None), the filter's value on the left as there."""
    cid = t.config["configurable"]["checkpoint_id"]
    if before_id and cid >= before_id:
        return False
    md: Mapping[str, Any] = t.metadata
    return all(v == md.get(k) for k, v in (filter or {}).items())


class Reads(Session):
    """The read plans of one thread."""

    def _read_call(
        self,
        keys: ThreadKeys,
        *,
        namespaces: Sequence[str],
        want: str = "",
        limit: int = 0,
        before: str = "",
        filter_args: Sequence[bytes] = (),
        ids_only: bool = False,
    ) -> ScriptCall:
        ttl = self.ttl.ms if self.ttl.refresh_on_read else 0
        mode = "id" if want else ("ids" if ids_only else "list")
        args: list[Arg] = [keys.handle, mode, ttl, limit, before, want]
        args += [len(namespaces), *namespaces, *filter_args]
        return ScriptCall(scripts.READ, (keys.namespaces,), tuple(args))

    def _pending_rows(self, flat: Any) -> list[tuple[str, str, str, bytes, int, str]]:
        """Decoded pending writes, in ``writes_sort_key`` order."""
        rows = [codec.load_write(frame) for frame in codec.pairs(flat).values()]
        rows.sort(key=lambda r: writes_sort_key(r[5], r[0], r[4]))
        return rows

    def _pending(self, flat: Any) -> list[PendingWrite]:
        return [
            (task_id, channel, self.serde.loads_typed((type_, data)))
            for task_id, channel, type_, data, _, _ in self._pending_rows(flat)
        ]

    def _damaged(self, gone: Sequence[tuple[str, Missing]]) -> Plan[list[tuple[str, Missing]]]:
        """Those of ``gone`` (thread, checkpoint) that stay listed without their hash
        (checked again after each of RECHECKS): the others were being deleted."""
        for wait in RECHECKS:
            if not gone:
                break
            if wait:
                yield pause(wait)
            calls: list[Command] = []
            for thread_id, m in gone:
                keys, ns, cid = self.layout.thread(thread_id), m.ns.decode(), m.id.decode()
                calls += [
                    Command.of("ZREVRANGEBYLEX", keys.registry(ns), f"[{cid}", f"[{cid}"),
                    Command.of("EXISTS", keys.checkpoint(ns, cid)),
                ]
            replies = yield RoundTrip(tuple(calls))
            gone = [
                g
                for g, listed, there in zip(gone, replies[::2], replies[1::2], strict=True)
                if listed and not int(there)
            ]
        return list(gone)

    def _entries(self, thread_id: str, answer: Sequence[Entry | Missing]) -> Plan[list[Entry]]:
        """A read's entries; a checkpoint it found listed without its hash raises
        ThreadDamagedError unless a deletion took it meanwhile."""
        gone = [(thread_id, e) for e in answer if isinstance(e, Missing)]
        if gone:
            for _, m in (yield from self._damaged(gone))[:1]:
                raise ThreadDamagedError(thread_id, m.ns.decode(), m.id.decode(), LISTED_GONE)
        return [e for e in answer if isinstance(e, Entry)]

    def _tuple(self, thread_id: str, entry: Entry, values_of: deltas.Resolver) -> CheckpointTuple:
        """The tuple of a read entry; a value its checkpoint stored that is gone (or a
        delta's base) raises ThreadDamagedError, never a state without it."""
        ns, cid = entry.ns.decode(), entry.id.decode()
        fields = entry.fields
        body = self.serde.loads_typed((fields.type.decode(), fields.checkpoint))
        channel_values: dict[str, Any] = {}
        names = fields.blobs.split(b"\n") if fields.blobs else []
        held = fields.held or b""
        for i, (name, frame) in enumerate(zip(names, entry.values, strict=True)):
            if frame is None:
                if held[i : i + 1] in (b"1", b"2"):  # stored by it, or there when it was
                    lost = f"needs the value {name.decode(errors='replace')!r}, which is gone"
                    raise ThreadDamagedError(thread_id, ns, cid, lost)
                continue
            channel = unescape(name[: name.index(b":")].decode())
            try:
                typed = values_of.value(entry.ns, name, frame)
            except deltas.BaseGone as exc:
                raise ThreadDamagedError(thread_id, ns, cid, str(exc)) from None
            channel_values[channel] = self.serde.loads_typed(typed)
        checkpoint = cast(Checkpoint, {**body, "channel_values": channel_values})
        parent = fields.parent.decode()
        if entry.parent_writes:
            self._migrate_pending_sends(checkpoint, entry.parent_writes)
        return CheckpointTuple(
            config=config_of(thread_id, ns, cid),
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, codec.load_metadata(fields.meta)),
            parent_config=config_of(thread_id, ns, parent) if parent else None,
            pending_writes=self._pending(entry.writes),
        )

    def _migrate_pending_sends(self, checkpoint: Checkpoint, parent_writes: Any) -> None:
        """Checkpoints before format v4 kept Send packets as the parent's TASKS writes."""
        sends = [
            self.serde.loads_typed((type_, data))
            for _, channel, type_, data, _, _ in self._pending_rows(parent_writes)
            if channel == TASKS
        ]
        if not sends:
            return
        checkpoint["channel_values"][TASKS] = sends
        versions = checkpoint["channel_versions"]
        versions[TASKS] = max(versions.values()) if versions else next_version(None)

    def get_tuple(self, config: RunnableConfig) -> Plan[CheckpointTuple | None]:
        """The checkpoint of ``config`` (without an id: its namespace's latest); one round trip."""
        thread_id = validation.thread_id(config)
        ns = validation.namespace(config)
        cid = validation.checkpoint_id(config) or ""
        keys = self.layout.thread(thread_id)
        (answer,) = yield from self._scripts(
            [self._read_call(keys, namespaces=[ns], want=cid, limit=1)]
        )
        entries = yield from self._entries(thread_id, answer)
        return self._tuple(thread_id, entries[0], entry_resolver(entries)) if entries else None

    def delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Plan[Mapping[str, DeltaChannelHistory]]:
        """Writes and seed of delta channels along the parent chain, in one round trip."""
        if not channels:
            return {}
        thread_id = validation.thread_id(config)
        ns = validation.namespace(config)
        cid = validation.checkpoint_id(config) or ""
        for c in channels:
            validation.text(c, "channel name")
        keys = self.layout.thread(thread_id)
        (ancestors,) = yield from self._scripts(
            [ScriptCall(scripts.HISTORY, (keys.namespaces,), (keys.handle, ns, cid, *channels))]
        )
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        ns_raw = ns.encode()
        values_of = resolver((ns_raw, a.bases) for a in ancestors)
        for ancestor in ancestors:
            for task_id, channel, type_, data, _, _ in reversed(
                self._pending_rows(ancestor.writes)
            ):
                if channel in remaining:
                    value = self.serde.loads_typed((type_, data))
                    collected[channel].append((task_id, channel, value))
            for ch_raw, frame in codec.pairs(ancestor.seeds).items():
                channel = ch_raw.decode()
                # a field name never holds a newline: this name is no base's
                try:
                    typed = values_of.value(ns_raw, b"\n" + ch_raw, frame)
                except deltas.BaseGone as exc:
                    raise ThreadDamagedError(
                        thread_id, ns, ancestor.id.decode(), str(exc)
                    ) from None
                seeds[channel] = self.serde.loads_typed(typed)
                remaining.discard(channel)
        result: dict[str, DeltaChannelHistory] = {}
        for c in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[c]))}
            if c in seeds:
                entry["seed"] = seeds[c]
            result[c] = entry
        return result

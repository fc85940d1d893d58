"""Writes: put (validate, encode, commands) and put_writes, each one atomic round
trip, and the thread directory entry that lists a thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import codec, deltas, perkey, scripts, search, validation
from .errors import ParentMissingError
from .keys import ThreadKeys, blob_field, write_field
from .plan import (
    Arg,
    Call,
    Command,
    Plan,
    Require,
    ScriptCall,
    WriteMode,
    one,
    refused,
)
from .session import Session, config_of, flatten


def _dump_typed(serde: SerializerProtocol, value: Any, what: str) -> tuple[str, bytes]:
    """The serializer's output; its own exception as raised (as on LangGraph's
    savers: graphs and tests catch it by type), with a note naming ``what``."""
    try:
        return serde.dumps_typed(value)
    except Exception as exc:
        note = f"{what} could not be serialized"
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: the attribute PEP 678 reads
            exc.__notes__ = [*getattr(exc, "__notes__", []), note]
        raise


def _dumps(serde: SerializerProtocol, value: Any, what: str) -> bytes:
    return codec.pack(_dump_typed(serde, value, what))


def _timestamp_ms(ts: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(ts)).timestamp() * 1000)
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class _Put:
    """A put's input, checked."""

    thread_id: str
    ns: str
    parent_id: str | None
    cid: str
    body: dict[str, Any]
    """The checkpoint without its channel values."""
    values: Mapping[str, Any]
    metadata: CheckpointMetadata
    new_versions: ChannelVersions


def _validated(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> _Put:
    thread_id = validation.thread_id(config)
    ns = validation.namespace(config)
    parent_id = validation.checkpoint_id(config)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a mapping, not {type(checkpoint).__name__}")
    cid = validation.text(checkpoint.get("id"), "checkpoint['id']")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, not {type(metadata).__name__}")
    body: dict[str, Any] = dict(checkpoint)
    for channel, version in {**body.get("channel_versions", {}), **new_versions}.items():
        validation.text(channel, "channel name")
        if isinstance(version, str):
            validation.text(version, f"version of channel {channel!r:.80}")
    values = body.pop("channel_values", None) or {}
    md = get_serializable_checkpoint_metadata(config, metadata)
    return _Put(thread_id, ns, parent_id, cid, body, values, md, new_versions)


@dataclass
class _Values:
    """A put's channel values: frames by blob field, and the lists among them with
    what this process wrote (field: channel, written, delta base or None)."""

    frames: dict[str, bytes] = field(default_factory=dict)
    lists: dict[str, tuple[str, deltas.Written, str | None]] = field(default_factory=dict)
    inherited: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """Values stored by an earlier put that the checkpoint names (see put)."""

    def bases(self) -> tuple[str, ...]:
        return tuple(sorted({base for _, _, base in self.lists.values() if base is not None}))

    def required(self) -> tuple[str, ...]:
        """The fields the write needs the server to hold: delta bases, inherited values."""
        return tuple(sorted({*self.bases(), *self.inherited}))

    def store_inherited(self, gone: set[str], serde: SerializerProtocol) -> None:
        """The inherited values that are gone become this put's own."""
        for f in gone & set(self.inherited):
            channel, value = self.inherited.pop(f)
            self.frames[f] = _dumps(serde, value, f"channel {channel!r}")

    def store_whole(self, gone: set[str]) -> None:
        """The deltas on these bases become whole values."""
        for f, (channel, written, base) in list(self.lists.items()):
            if base in gone:
                self.frames[f], whole = written.whole()
                self.lists[f] = (channel, whole, None)


def _preconditions(calls: Sequence[Call]) -> int:
    """How many calls at the head of a trip are preconditions."""
    n = 0
    while n < len(calls) and isinstance(calls[n], Require):
        n += 1
    return n


PARENT_FIELD = "checkpoint"
"""The field every stored checkpoint's hash holds: a durable put requires its
parent's (a blob field always holds a ':', so the two never meet in a refusal)."""


class Writes(Session):
    """The write plans."""

    def _publish(self, thread_id: str, keys: ThreadKeys, calls: list[Call]) -> Plan[list[Any]]:
        """Send a thread's write as one atomic trip, listing the thread in the directory;
        the replies are those of ``calls``.

        On one node the directory entry joins the transaction. On a cluster or proxy
        it lives in another slot. It goes first, once per thread and process (a
        crash between the two leaves only a directory entry with no data, which
        readers skip), and again after any write that finds the thread absent:
        another process may have deleted the thread, and its entry, since this
        process listed it (see :meth:`_unlist`).
        """
        entry = Command.of("SADD", self.layout.directory(thread_id), thread_id)
        if self.single_node:
            return (yield from self._atomic(keys, [*calls, entry]))[: len(calls)]
        if thread_id not in self.known_threads:
            yield one(entry)
            self.known_threads.add(thread_id)
        head = _preconditions(calls)  # preconditions stay first
        sent = [*calls[:head], Command.of("EXISTS", keys.namespaces), *calls[head:]]
        replies = yield from self._atomic(keys, sent)
        if refused(sent, replies):
            return replies[:1]
        if not replies.pop(head):  # EXISTS: 0, the thread was absent
            yield one(entry)
        return replies

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Plan[RunnableConfig]:
        """Store a checkpoint and the channel values that changed, atomically, in one
        round trip (validated, then encoded, then sent: nothing goes before all input
        is checked)."""
        put = _validated(config, checkpoint, metadata, new_versions)
        values = self._encoded_values(put)
        fields = self._checkpoint_fields(put)
        values.inherited = self._inherited(put, values) if self.mode.scripts else {}
        # which of its values must be there when read: stored by this put ("1"), or
        # inherited and there when it was written ("2"); "0" unknown (not checked)
        fields["held"] = "".join(
            "1" if f in values.frames else "2" if f in values.inherited else "0"
            for f in str(fields["blobs"]).split("\n")
            if f
        )
        thread_id, ns, cid, parent = put.thread_id, put.ns, put.cid, put.parent_id
        # what the write loop does not need is not kept alive across its round trips
        # (the garbage collector scans whatever an operation in flight holds)
        del put, config, checkpoint, metadata, new_versions
        yield from self._store(thread_id, ns, cid, values, fields, parent)
        return config_of(thread_id, ns, cid)

    @staticmethod
    def _inherited(put: _Put, values: _Values) -> dict[str, tuple[str, Any]]:
        """The values the checkpoint names but an earlier put stored (its channels
        that did not change), by blob field: the write requires them still there.
        Gone (a failover lost the put that stored them, a delete took them), they
        are stored from the checkpoint itself, so no checkpoint is ever written
        naming a value the server does not hold."""
        inherited: dict[str, tuple[str, Any]] = {}
        for channel, version in put.body.get("channel_versions", {}).items():
            if channel in put.values:
                f = blob_field(channel, version)
                if f not in values.frames:
                    inherited[f] = (channel, put.values[channel])
        return inherited

    def _encoded_values(self, put: _Put) -> _Values:
        """The changed channels' frames by blob field; growing lists as deltas where
        this process remembers the last version (see deltas.py)."""
        values = _Values()
        compact = self.list_deltas and self.mode.scripts  # a delta's precondition is a script
        for channel, version in put.new_versions.items():  # names checked
            if channel not in put.values:
                continue
            f = blob_field(channel, version)
            what = f"channel {channel!r}"
            if not compact:
                values.frames[f] = _dumps(self.serde, put.values[channel], what)
                continue
            type_, data = _dump_typed(self.serde, put.values[channel], what)
            encoded = self.lists.encode(put.thread_id, put.ns, channel, f, type_, data)
            values.frames[f] = encoded.frame
            if encoded.written is not None:
                values.lists[f] = (channel, encoded.written, encoded.base)
        return values

    def _checkpoint_fields(self, put: _Put) -> dict[str, Arg]:
        """The checkpoint hash: body, parent, the blob fields it uses, metadata (whole
        and per key), and what the search index reads."""
        type_, data = _dump_typed(self.serde, put.body, "checkpoint")
        md = put.metadata
        fields: dict[str, Arg] = {
            "checkpoint": data,
            "type": type_,
            "parent": put.parent_id or "",
            "v": int(put.body.get("v", 1)),
            "blobs": "\n".join(blob_field(c, v) for c, v in put.body["channel_versions"].items()),
            "thread_id": put.thread_id,
            "checkpoint_ns": put.ns,
            "checkpoint_id": put.cid,
            "sort_key": search.sort_key(put.cid, put.thread_id, put.ns),
            "ts": _timestamp_ms(put.body.get("ts")),
        }
        fields["meta"], per_key = codec.dump_metadata(md)
        fields.update(per_key)
        for name in ("source", "run_id"):
            if isinstance(md.get(name), str):
                fields[name] = cast(str, md.get(name))
        step = search.number(md.get("step"))  # the index's copy of step
        if step is not None:
            fields["step"] = step
        return fields

    def _store(
        self,
        thread_id: str,
        ns: str,
        cid: str,
        values: _Values,
        fields: dict[str, Arg],
        parent: str | None,
    ) -> Plan[None]:
        """One atomic trip: values, then the checkpoint, published last. A delta goes
        only where its base still exists, else nothing is applied and it goes whole.
        A durable put goes only where its parent is stored (see ParentMissingError)."""
        keys = self.layout.thread(thread_id)
        lineage: list[Call] = []
        if self.durability is not None and parent and self.mode.scripts:
            lineage = [Require(keys.checkpoint(ns, parent), (PARENT_FIELD,))]
        cp_key = validation.key_size(
            keys.checkpoint(ns, cid), "thread_id, checkpoint_ns and checkpoint['id']"
        )
        checkpoint_calls = [
            Command.of("DEL", cp_key),
            Command(("HSET", cp_key, *flatten(fields))),
            Command.of("SADD", keys.namespaces, ns),
            Command.publishing("ZADD", keys.registry(ns), 0, cid),  # published last
        ]
        del fields
        retain = self._retain_call(keys, ns)
        retained = [retain] if retain is not None and self.mode.scripts else []
        while True:
            # a (channel, version) names one value: the first stored stays, so no
            # later write changes what a stored checkpoint (or a delta on it) reads
            calls: list[Call] = [
                Command.of("HSETNX", keys.blobs(ns), f, frame) for f, frame in values.frames.items()
            ]
            required = values.required()
            if required:  # a delta's base, an inherited value: written only where there
                calls.insert(0, Require(keys.blobs(ns), required))
            calls[:0] = lineage
            replies = yield from self._publish(
                thread_id, keys, [*calls, *checkpoint_calls, *retained]
            )
            gone = set(refused(calls, replies))
            if not gone:
                break
            if PARENT_FIELD in gone:  # nothing was applied
                raise ParentMissingError(thread_id, ns, cid, str(parent))
            # another process deleted or pruned them (or a failover lost them) since
            # they were written: nothing was applied; store them, whole, with this put
            values.store_whole(gone)
            values.store_inherited(gone, self.serde)
        if retain is not None and not retained:  # no script to prune inside the write
            yield from perkey.retain(retain)
        stored = dict(zip(values.frames, replies[_preconditions(calls) :], strict=False))
        for f, (channel, written, _) in values.lists.items():
            if stored.get(f):  # HSETNX: 1, or True through redis-py's reply callback
                self.lists.remember(thread_id, ns, channel, written)
            else:  # the field held a value already: this process's bytes may not be it
                self.lists.forget_channel(thread_id, ns, channel)

    def _retain_call(self, keys: ThreadKeys, ns: str) -> ScriptCall | None:
        """Retention on write: the namespace pruned to ``keep_last`` (see prune)."""
        if self.retention is None:
            return None
        return ScriptCall(
            scripts.RETAIN, (keys.namespaces,), (keys.handle, ns, self.retention.keep_last)
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> Plan[None]:
        """Store a task's pending writes; ordinary writes never overwrite, special ones do."""
        thread_id = validation.thread_id(config)
        ns = validation.namespace(config)
        cid = validation.checkpoint_id(config)
        if cid is None:
            raise ValueError("put_writes needs config['configurable']['checkpoint_id']")
        validation.text(task_id, "task_id")
        validation.text(task_path, "task_path")
        keys = self.layout.thread(thread_id)
        key = validation.key_size(
            keys.writes(ns, cid), "thread_id, checkpoint_ns and checkpoint_id"
        )
        overwrite: dict[str, bytes] = {}  # special channels keep one slot and overwrite it
        ordinary: dict[str, bytes] = {}  # never overwritten: a retried task keeps its first result
        for idx, (channel, value) in enumerate(writes):
            validation.text(channel, "write channel")
            i = WRITES_IDX_MAP.get(channel, idx)
            type_, data = _dump_typed(self.serde, value, f"write to {channel!r}")
            frame = codec.dump_write(task_id, channel, type_, data, task_path, i)
            (overwrite if i < 0 else ordinary)[write_field(task_id, i)] = frame
        if not overwrite and not ordinary:
            return
        if self.write_mode is WriteMode.PER_KEY:
            # no transaction to hold them: one HSET carries the task's writes, all or
            # none, with the ordinary ones already stored left out
            if ordinary:
                (present,) = yield one(Command(("HMGET", key, *ordinary)))
                ordinary = {f: v for (f, v), got in zip(ordinary.items(), present) if got is None}
            calls: list[Call] = []
            if ordinary or overwrite:
                calls = [Command(("HSET", key, *flatten({**ordinary, **overwrite})))]
        else:
            calls = [Command.of("HSETNX", key, f, v) for f, v in ordinary.items()]
            if overwrite:
                calls.append(Command(("HSET", key, *flatten(overwrite))))
        if calls:  # listed first: a cleanup must find every writes hash there is
            yield from self._atomic(keys, [Command.of("SADD", keys.write_keys, key), *calls])

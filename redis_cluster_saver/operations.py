"""Every saver operation, written once as a plan of round trips (no I/O here).

The sync and async savers drive these generators with their shells. A plan
validates and encodes all input before its first round trip, so bad input raises
with nothing written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS
from redis.exceptions import (
    AskError,
    ClusterError,
    ConnectionError,
    NoPermissionError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from . import codec, deltas, perkey, scripts, search, validation
from .commands import (
    Arg,
    Call,
    Command,
    Execution,
    Mode,
    Plan,
    Require,
    RoundTrip,
    ScriptCall,
    T,
    one,
    pause,
    refused,
)
from .detector import Capabilities, ModeLog, detect, is_refusal, probe_modes
from .errors import DurabilityError, pool_exhausted
from .keys import KeyLayout, ThreadKeys, blob_field, unescape, write_field

P = ParamSpec("P")
PRUNE_STRATEGIES = ("keep_latest", "delete")
IN_MOTION = (
    ConnectionError,
    TryAgainError,
    AskError,
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
)
"""Errors of a topology changing under the operation: retried, not reported (but a
full connection pool, also a ConnectionError to redis-py, is not one: see
:func:`~.errors.pool_exhausted`)."""
SCRIPT_IN_MOTION = ("non local key", "cluster is down")
"""What a server says when a script meets a key of a slot that is being moved (a
key its declared keys did not name: read scripts find checkpoint ids at run time)
or a cluster without a quorum: the same as TRYAGAIN or CLUSTERDOWN."""


def slot_in_motion(exc: BaseException) -> bool:
    """A slot moving or a cluster re-forming under the call; not a lost connection."""
    if isinstance(exc, ConnectionError):
        return False
    if isinstance(exc, IN_MOTION):
        return True
    text = str(exc).lower()
    return isinstance(exc, ResponseError) and any(words in text for words in SCRIPT_IN_MOTION)


@dataclass(frozen=True, slots=True)
class TTL:
    """Expiry of a thread's keys, applied to all of them together."""

    minutes: float | None = None
    refresh_on_read: bool = False

    @property
    def ms(self) -> int:
        return 0 if not self.minutes else max(1, int(self.minutes * 60_000))

    @classmethod
    def parse(cls, ttl: Mapping[str, Any] | None) -> TTL:
        if ttl is None:
            return cls()
        if not isinstance(ttl, Mapping):
            raise TypeError("ttl must be a mapping like {'default_ttl': minutes}")
        unknown = set(ttl) - {"default_ttl", "refresh_on_read"}
        if unknown:
            raise ValueError(f"unknown ttl option(s): {', '.join(sorted(unknown))}")
        minutes = ttl.get("default_ttl")
        if minutes is not None and (
            isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0
        ):
            raise ValueError(f"ttl['default_ttl'] must be a positive number, not {minutes!r}")
        return cls(minutes, bool(ttl.get("refresh_on_read", False)))


@dataclass(frozen=True, slots=True)
class Durability:
    """Durable mode: each write waits for this many replica acknowledgements."""

    replicas: int
    timeout_ms: int

    @classmethod
    def parse(cls, durability: Mapping[str, Any] | None) -> Durability | None:
        if durability is None:
            return None
        if not isinstance(durability, Mapping):
            raise TypeError("durability must be a mapping like {'replicas': 1, 'timeout_ms': 500}")
        unknown = set(durability) - {"replicas", "timeout_ms"}
        if unknown:
            raise ValueError(f"unknown durability option(s): {', '.join(sorted(unknown))}")
        replicas, timeout = durability.get("replicas", 1), durability.get("timeout_ms", 500)
        for name, value, low in (("replicas", replicas, 1), ("timeout_ms", timeout, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"durability[{name!r}] must be an int >= {low}, not {value!r}")
        return cls(replicas, timeout)


def next_version(current: str | int | float | None) -> str:
    """Same shape as InMemorySaver's: a zero-padded counter plus a random tiebreak."""
    if current is None:
        current_v = 0
    elif isinstance(current, (int, float)):
        current_v = int(current)
    else:
        current_v = int(current.split(".")[0])
    return f"{current_v + 1:032}.{random.random():016}"


def _dump_typed(serde: SerializerProtocol, value: Any, what: str) -> tuple[str, bytes]:
    try:
        return serde.dumps_typed(value)
    except Exception as exc:  # the serializer's own error types vary
        raise TypeError(f"{what} could not be serialized: {type(exc).__name__}: {exc}") from exc


def _dumps(serde: SerializerProtocol, value: Any, what: str) -> bytes:
    return codec.pack(_dump_typed(serde, value, what))


Frames = dict[tuple[bytes, bytes], bytes]
"""Delta bases carried by a reply, by (namespace, field)."""


def _resolver(pairs_by_ns: Iterable[tuple[bytes, Sequence[bytes]]]) -> deltas.Resolver:
    frames: Frames = {}
    for ns, flat in pairs_by_ns:
        it = iter(flat)
        for f, v in zip(it, it, strict=True):
            frames[(ns, f)] = v
    return deltas.Resolver(frames)


def _entry_resolver(entries: Sequence[Sequence[Any]]) -> deltas.Resolver:
    return _resolver((e[0], e[6]) for e in entries)


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _timestamp_ms(ts: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(ts)).timestamp() * 1000)
    except ValueError:
        return 0


@dataclass
class Operations:
    """The plans of one saver: its key layout, serializer and options."""

    layout: KeyLayout
    serde: SerializerProtocol
    ttl: TTL = field(default_factory=TTL)
    single_node: bool = True
    """True when any keys may share a MULTI (standalone, Sentinel): the thread
    directory entry then rides in the same round trip as the write."""
    known_threads: set[str] = field(default_factory=set)
    mode: Mode = field(default_factory=Mode)
    transactions: bool | None = None
    """Forced by the user: False never sends MULTI (None: as detected)."""
    scripts: bool | None = None
    """Forced by the user: False never sends scripts (None: as detected)."""
    client_kind: str = "single"
    capabilities: Capabilities | None = None
    failover_wait: float = 15.0
    """Seconds an operation waits for the server to come back (e.g. a Sentinel or
    cluster failover) before its connection error reaches the caller."""
    log: ModeLog = field(default_factory=ModeLog)
    search_names: list[str] | None = None
    """The search index of each shard (one name unless search sees one shard)."""
    use_search: bool | None = None
    """Forced by the user: False never creates or queries an index."""
    durability: Durability | None = None
    list_deltas: bool = True
    """Store a list that grew by appending as the appended items (see deltas.py)."""
    lists: deltas.ListBases = field(default_factory=deltas.ListBases)

    @property
    def execution(self) -> Execution:
        return self.mode.execution

    # ---- detection and run-time fallback ---------------------------------------

    def adopt(self, caps: Capabilities) -> None:
        self.capabilities = caps
        if caps.topology == "cluster-node":
            raise ValueError(
                "this server is a Redis Cluster node but the client is not a cluster "
                "client: pass a redis.cluster.RedisCluster client or a URL"
            )
        if self.use_search and not caps.search:
            raise ValueError("search=True, but the server has no usable Search module")
        if self.durability and (caps.replicas or 0) < self.durability.replicas:
            raise ValueError(
                f"durability asks for {self.durability.replicas} replica(s), but the server "
                f"has {caps.replicas if caps.replicas is not None else 'an unknown number of'}"
                " (or refuses WAIT): durable mode cannot be honoured here"
            )
        self.single_node = caps.topology in ("standalone", "sentinel")
        self.mode.execution = caps.execution(self.transactions, self.scripts)
        if self.mode.execution is not Execution.TRANSACTION:
            forced = self.transactions is False or self.scripts is False
            reason = (
                "forced by options"
                if forced
                else (
                    f"the server refuses {'MULTI' if not caps.transactions else 'scripts'}"
                    f" ({caps.topology})"
                )
            )
            self.log.fallback(self.mode.execution, reason)

    def setup(self) -> Plan[Capabilities]:
        """Probe the server once (again on every call: setup is idempotent)."""
        self.adopt((yield from detect(self.layout, self.client_kind)))
        assert self.capabilities is not None
        return self.capabilities

    def guarded(self, make: Callable[P, Plan[T]], *args: P.args, **kwargs: P.kwargs) -> Plan[T]:
        """Run an operation (detecting first if needed), through what a live system
        throws at it. On a refusal, re-probe and switch mode if the server now
        refuses what the mode needs. On a lost connection (a failover) or a cluster
        in motion (TRYAGAIN, MOVED, ASK, CLUSTERDOWN during resharding or failover),
        retry until ``failover_wait`` runs out. Every operation is idempotent, so a
        retry after an unanswered attempt is safe. Timeouts are not retried: a
        stalled server gets a clear error, not a longer wait; nor is a full
        connection pool (redis-py's MaxConnectionsError is a ConnectionError, but
        the client's own limit, not a lost connection)."""
        if self.capabilities is None:
            yield from self.setup()
        deadline = time.monotonic() + self.failover_wait
        while True:
            try:
                return (yield from make(*args, **kwargs))
            except Exception as exc:
                if (
                    isinstance(exc, TimeoutError)
                    or pool_exhausted(exc)
                    or not (isinstance(exc, IN_MOTION) or slot_in_motion(exc) or is_refusal(exc))
                ):
                    raise
                error = exc
            if slot_in_motion(error):
                if time.monotonic() >= deadline:
                    raise error
                yield pause(0.1)
                continue
            multi, lua = yield from self._reachable(error, deadline)
            execution = Capabilities(transactions=multi, scripts=lua).execution(
                self.transactions, self.scripts
            )
            if execution is not self.mode.execution:
                self.log.fallback(execution, f"the server refused a request mid-flight ({error})")
                self.mode.execution = execution
            elif not isinstance(error, ConnectionError) or time.monotonic() >= deadline:
                raise error
            else:
                yield pause(0.25)

    def _reachable(self, first: BaseException, deadline: float) -> Plan[tuple[bool, bool]]:
        """The mode probes, retried while the server is unreachable (a failover).

        A cluster node does not start refusing MULTI during a failover, so there
        the MULTI probe is not repeated (redis-py's asyncio cluster transaction,
        which it would need, breaks under concurrent failover handling)."""
        known = self.capabilities.transactions if self.capabilities else None
        known = known if self.client_kind == "cluster" else None
        while True:
            try:
                return (yield from probe_modes(self.layout, self.client_kind, known))
            except (*IN_MOTION, TimeoutError) as exc:
                if pool_exhausted(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise first from None
                yield pause(0.25)

    # ---- helpers ---------------------------------------------------------------

    def _touch_call(self, keys: ThreadKeys) -> ScriptCall:
        return ScriptCall(scripts.TOUCH, (keys.namespaces,), (keys.handle, self.ttl.ms))

    def _write(self, keys: ThreadKeys, calls: list[Call]) -> Plan[list[Any]]:
        """One atomic trip; with a TTL the renewal of the whole thread rides in it
        (where scripts are refused it follows as its own steps). In durable mode the
        trip ends with WAIT, and too few acknowledgements raise."""
        renew = bool(self.ttl.ms)
        if renew and self.execution is not Execution.PER_KEY:
            calls, renew = [*calls, self._touch_call(keys)], False
        d = self.durability
        wait = (d.replicas, d.timeout_ms) if d else None
        replies = yield RoundTrip(tuple(calls), atomic=True, wait=wait)
        if renew:
            yield from perkey.touch(self._touch_call(keys))
        if d is not None and int(replies[-1]) < d.replicas:
            raise DurabilityError(int(replies[-1]), d.replicas, d.timeout_ms)
        return list(replies[: len(calls)])

    def _scripts(self, calls: Sequence[ScriptCall]) -> Plan[list[Any]]:
        """Script calls in one trip, or, where scripts are refused, the same work
        as plain-command plans (same replies, more round trips)."""
        if self.execution is not Execution.PER_KEY:
            return list((yield RoundTrip(tuple(calls))))
        replies = []
        for call in calls:
            replies.append((yield from perkey.PLANS[call.script.name](call)))
        return replies

    def _reads(self, calls: Sequence[ScriptCall]) -> Plan[list[Any]]:
        """Read-script calls in one trip, their replies unpacked."""
        return [codec.reply(r) for r in (yield from self._scripts(calls))]

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
            return (yield from self._write(keys, [*calls, entry]))[: len(calls)]
        if thread_id not in self.known_threads:
            yield one(entry)
            self.known_threads.add(thread_id)
        head = 1 if calls and isinstance(calls[0], Require) else 0  # a precondition stays first
        sent = [*calls[:head], Command.of("EXISTS", keys.namespaces), *calls[head:]]
        replies = yield from self._write(keys, sent)
        if refused(sent, replies):
            return replies[:1]
        if not replies.pop(head):  # EXISTS: 0, the thread was absent
            yield one(entry)
        return replies

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

    def _writes(self, flat: Any) -> list[tuple[str, str, str, bytes, int, str]]:
        """Decoded pending writes, in ``writes_sort_key`` order."""
        rows = [codec.load_write(frame) for frame in codec.pairs(flat).values()]
        rows.sort(key=lambda r: writes_sort_key(r[5], r[0], r[4]))
        return rows

    def _pending(self, flat: Any) -> list[PendingWrite]:
        return [
            (task_id, channel, self.serde.loads_typed((type_, data)))
            for task_id, channel, type_, data, _, _ in self._writes(flat)
        ]

    def _tuple(
        self, thread_id: str, entry: Sequence[Any], values_of: deltas.Resolver
    ) -> CheckpointTuple:
        ns_raw, id_raw, cp, w_flat, values, parent_writes, _ = entry
        ns, cid = ns_raw.decode(), id_raw.decode()
        data, type_, parent_raw, _, blobs, meta = cp  # codec.READ_FIELDS
        body = self.serde.loads_typed((type_.decode(), data))
        channel_values: dict[str, Any] = {}
        names = blobs.split(b"\n") if blobs else []
        for name, frame in zip(names, values, strict=True):
            if frame:  # None or False: no value stored
                channel = unescape(name[: name.index(b":")].decode())
                typed = values_of.value(ns_raw, name, frame)
                channel_values[channel] = self.serde.loads_typed(typed)
        checkpoint = cast(Checkpoint, {**body, "channel_values": channel_values})
        parent = parent_raw.decode()
        if parent_writes:
            self._migrate_pending_sends(checkpoint, parent_writes)
        return CheckpointTuple(
            config=_config(thread_id, ns, cid),
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, codec.load_metadata(meta)),
            parent_config=_config(thread_id, ns, parent) if parent else None,
            pending_writes=self._pending(w_flat),
        )

    def _migrate_pending_sends(self, checkpoint: Checkpoint, parent_writes: Any) -> None:
        """Checkpoints before format v4 kept Send packets as the parent's TASKS writes."""
        sends = [
            self.serde.loads_typed((type_, data))
            for _, channel, type_, data, _, _ in self._writes(parent_writes)
            if channel == TASKS
        ]
        if not sends:
            return
        checkpoint["channel_values"][TASKS] = sends
        versions = checkpoint["channel_versions"]
        versions[TASKS] = max(versions.values()) if versions else next_version(None)

    # ---- writes ----------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Plan[RunnableConfig]:
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
        blobs: dict[str, bytes] = {}
        lists: dict[str, tuple[str, deltas.Written, str | None]] = {}  # field: channel, what, base
        compact = self.list_deltas and self.execution is not Execution.PER_KEY
        for channel, version in new_versions.items():  # names checked above
            if channel in values:
                f = blob_field(channel, version)
                if not compact:
                    blobs[f] = _dumps(self.serde, values[channel], f"channel {channel!r}")
                    continue
                type_, data = _dump_typed(self.serde, values[channel], f"channel {channel!r}")
                encoded = self.lists.encode(thread_id, ns, channel, f, type_, data)
                blobs[f] = encoded.frame
                if encoded.written is not None:
                    lists[f] = (channel, encoded.written, encoded.base)
        type_, data = _dump_typed(self.serde, body, "checkpoint")
        md = get_serializable_checkpoint_metadata(config, metadata)
        fields: dict[str, Arg] = {
            "checkpoint": data,
            "type": type_,
            "parent": parent_id or "",
            "v": int(body.get("v", 1)),
            "blobs": "\n".join(blob_field(c, v) for c, v in body["channel_versions"].items()),
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": cid,
            "sort_key": search.sort_key(cid, thread_id, ns),
            "ts": _timestamp_ms(body.get("ts")),
        }
        fields["meta"], per_key = codec.dump_metadata(md)
        fields.update(per_key)
        for name in ("source", "run_id"):
            if isinstance(md.get(name), str):
                fields[name] = cast(str, md.get(name))
        step = search.number(md.get("step"))  # the index's copy of step
        if step is not None:
            fields["step"] = step
        keys = self.layout.thread(thread_id)
        cp_key = validation.key_size(
            keys.checkpoint(ns, cid), "thread_id, checkpoint_ns and checkpoint['id']"
        )
        checkpoint_calls = [
            Command.of("DEL", cp_key),
            Command(("HSET", cp_key, *_flatten(fields))),
            Command.of("SADD", keys.namespaces, ns),
            Command.of("ZADD", keys.registry(ns), 0, cid),  # published last
        ]
        # what the write loop does not need is not kept alive across its round trips
        # (the garbage collector scans whatever an operation in flight holds)
        del body, values, md, fields, per_key
        while True:
            # a (channel, version) names one value: the first stored stays, so no
            # later write changes what a stored checkpoint (or a delta on it) reads
            calls: list[Call] = [
                Command.of("HSETNX", keys.blobs(ns), f, frame) for f, frame in blobs.items()
            ]
            bases = sorted({base for _, _, base in lists.values() if base is not None})
            if bases:  # a delta is written only where its base still exists
                calls.insert(0, Require(keys.blobs(ns), tuple(bases)))
            replies = yield from self._publish(thread_id, keys, [*calls, *checkpoint_calls])
            gone = set(refused(calls, replies))
            if not gone:
                break
            # another process deleted or pruned the bases (or a failover lost them)
            # since this process wrote them: nothing was applied; store those whole
            for f, (channel, written, base) in list(lists.items()):
                if base in gone:
                    blobs[f], whole = written.whole()
                    lists[f] = (channel, whole, None)
        stored = dict(zip(blobs, replies[1 if bases else 0 :], strict=False))
        for f, (channel, written, _) in lists.items():
            if stored.get(f):  # HSETNX: 1, or True through redis-py's reply callback
                self.lists.remember(thread_id, ns, channel, written)
            else:  # the field held a value already: this process's bytes may not be it
                self.lists.forget_channel(thread_id, ns, channel)
        return _config(thread_id, ns, cid)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> Plan[None]:
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
        overwrite: dict[str, bytes] = {}
        calls: list[Call] = []
        for idx, (channel, value) in enumerate(writes):
            validation.text(channel, "write channel")
            i = WRITES_IDX_MAP.get(channel, idx)
            type_, data = _dump_typed(self.serde, value, f"write to {channel!r}")
            frame = codec.dump_write(task_id, channel, type_, data, task_path, i)
            if i < 0:  # special channels keep one slot and overwrite it
                overwrite[write_field(task_id, i)] = frame
            else:  # ordinary writes never overwrite: a retried task keeps its first result
                calls.append(Command.of("HSETNX", key, write_field(task_id, i), frame))
        if overwrite:
            calls.append(Command(("HSET", key, *_flatten(overwrite))))
        if calls:  # listed first: a cleanup must find every writes hash there is
            yield from self._write(keys, [Command.of("SADD", keys.write_keys, key), *calls])

    # ---- reads -----------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> Plan[CheckpointTuple | None]:
        thread_id = validation.thread_id(config)
        ns = validation.namespace(config)
        cid = validation.checkpoint_id(config) or ""
        keys = self.layout.thread(thread_id)
        (entries,) = yield from self._reads(
            [self._read_call(keys, namespaces=[ns], want=cid, limit=1)]
        )
        return self._tuple(thread_id, entries[0], _entry_resolver(entries)) if entries else None

    def list_checkpoints(
        self,
        config: RunnableConfig | None,
        *,
        filter: Mapping[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Plan[list[CheckpointTuple]]:
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
        (entries,) = yield from self._reads([call])
        values_of = _entry_resolver(entries)
        entries = sorted(entries, key=lambda e: (e[1], e[0]))  # id, then ns
        # oldest first: a delta is rebuilt on its already rebuilt base
        tuples = [self._tuple(thread_id, entry, values_of) for entry in entries][::-1]
        # the 'id' read ignores filters; the others filtered exactly already, and
        # the check (on tuples already loaded) only guards that
        return [t for t in tuples if _matches(t, filter, before_id)][:n]

    # ---- across threads: the search index -------------------------------------

    def _indexed(self) -> bool:
        if self.use_search is False:
            return False
        return bool(self.capabilities and self.capabilities.search)

    def _indexes(self) -> Plan[list[str]]:
        """The index names, creating the indexes on first use."""
        if self.search_names is None:
            caps = self.capabilities
            if self.client_kind == "cluster" and not (caps and caps.search_all_shards):
                (slots,) = yield one(Command.keyless("CLUSTER", "SLOTS"))
                names = search.names_for_slots(self.layout, slots)
            else:
                names = [search.index_name(self.layout)]
            for name in names:
                yield from self._create_index(name)
            self.search_names = names
        return self.search_names

    def _create_index(self, name: str) -> Plan[None]:
        try:
            yield one(search.create_command(self.layout, name))
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
            if not search.indexing(info):
                return
            yield pause(0.05)

    def _search(
        self, where: Any, offsets: dict[str, int], count: int
    ) -> Plan[dict[str, list[bytes]]]:
        """One page from each index still in ``offsets``, in one round trip."""
        names = list(offsets)
        calls = tuple(search.search_command(n, where, offsets[n], count) for n in names)
        replies = yield RoundTrip(calls)
        return {n: search.result_keys(r) for n, r in zip(names, replies, strict=True)}

    def _with_indexes(self, make: Callable[[], Plan[T]]) -> Plan[T]:
        """Run an index query; if an index is missing on its node (a new primary, a
        moved slot), work out the indexes again, create what is missing, and rerun
        the query from its start."""
        try:
            return (yield from make())
        except ResponseError as exc:
            text = str(exc).lower()
            if "no such index" not in text and "unknown index" not in text:
                raise
        self.search_names = None
        return (yield from make())

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
                thread, ns, cid = search.parse_checkpoint_key(self.layout, key)
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
                for tup in (yield from self._load(batch)):
                    if _matches(tup, filter, before_id):
                        found.append(tup)
                        if limit is not None and len(found) >= limit:
                            return found
            if not offsets and not pool:
                return found

    def _load(self, wanted: Sequence[tuple[str, str, str]]) -> Plan[list[CheckpointTuple]]:
        """Checkpoints by (id, thread, namespace), in the order given; gone ones skipped."""
        if not wanted:
            return []
        calls = [
            self._read_call(self.layout.thread(t), namespaces=[ns], want=cid)
            for cid, t, ns in wanted
        ]
        replies = yield from self._reads(calls)
        return [
            self._tuple(t, entries[0], _entry_resolver(entries))
            for (_, t, _), entries in zip(wanted, replies, strict=True)
            if entries
        ]

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
        replies = yield from self._reads(calls)
        found = sorted(
            (
                (cid.decode(), tid, ns.decode())
                for tid, pairs in zip(thread_ids, replies, strict=True)
                for ns, cid in pairs
            ),
            reverse=True,
        )
        loaded = yield from self._load(found[:limit])
        return [t for t in loaded if _matches(t, filter, before_id)]

    def thread_ids(self) -> Plan[list[str]]:
        """Every thread in the directory (bucketed sets, no KEYS or SCAN)."""
        buckets = self.layout.all_directory_buckets()
        replies = yield RoundTrip(tuple(Command.of("SMEMBERS", b) for b in buckets))
        return sorted({m.decode() for members in replies for m in members})

    def delta_channel_history(
        self, config: RunnableConfig, channels: Sequence[str]
    ) -> Plan[dict[str, DeltaChannelHistory]]:
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
        values_of = _resolver((ns_raw, a[3]) for a in ancestors)
        for _, w_flat, seed_flat, _ in ancestors:
            for task_id, channel, type_, data, _, _ in reversed(self._writes(w_flat)):
                if channel in remaining:
                    value = self.serde.loads_typed((type_, data))
                    collected[channel].append((task_id, channel, value))
            for ch_raw, frame in codec.pairs(seed_flat).items():
                channel = ch_raw.decode()
                # a field name never holds a newline: this name is no base's
                typed = values_of.value(ns_raw, b"\n" + ch_raw, frame)
                seeds[channel] = self.serde.loads_typed(typed)
                remaining.discard(channel)
        result: dict[str, DeltaChannelHistory] = {}
        for c in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[c]))}
            if c in seeds:
                entry["seed"] = seeds[c]
            result[c] = entry
        return result

    # ---- maintenance -----------------------------------------------------------

    def _unlist(self, thread_ids: Sequence[str]) -> Plan[None]:
        """Drop emptied threads from the directory. A writer in another process may
        have written one of them again since its script ran, and that writer may
        have listed it before this removal: so each is checked once more after the
        removal, and listed again if it holds data. Together with the writer's own
        rule (list again after a write that found the thread absent, see
        :meth:`_publish`), whichever of the two acts last leaves a live thread listed."""
        for tid in thread_ids:
            self.known_threads.discard(tid)
        entries = {tid: self.layout.directory(tid) for tid in thread_ids}
        yield RoundTrip(tuple(Command.of("SREM", d, t) for t, d in entries.items()))
        alive = yield RoundTrip(
            tuple(Command.of("EXISTS", self.layout.thread(t).namespaces) for t in thread_ids)
        )
        again = [Command.of("SADD", entries[t], t) for t, n in zip(thread_ids, alive) if int(n)]
        if again:
            yield RoundTrip(tuple(again))

    def _per_thread(
        self, thread_ids: Sequence[str], make: Callable[[ThreadKeys], ScriptCall]
    ) -> Plan[None]:
        """Run one script per thread (each atomic), then drop emptied threads from
        the directory; scripts answer with the namespaces the thread has left."""
        if not thread_ids:
            return
        calls = [make(self.layout.thread(tid)) for tid in thread_ids]
        for tid in thread_ids:  # what is remembered may be gone
            self.lists.forget(tid)
        left = yield from self._scripts(calls)
        gone = [tid for tid, n in zip(thread_ids, left, strict=True) if not n]
        if gone:
            yield from self._unlist(gone)

    def delete_thread(self, thread_id: str) -> Plan[None]:
        tid = validation.text(thread_id, "thread_id")
        yield from self._per_thread([tid], self._drop_call)

    @staticmethod
    def _drop_call(keys: ThreadKeys) -> ScriptCall:
        return ScriptCall(scripts.DELETE_THREAD, (keys.namespaces,), (keys.handle,))

    def prune(
        self, thread_ids: Sequence[str], strategy: str = "keep_latest", keep_last: int | None = None
    ) -> Plan[None]:
        tids = [validation.text(t, "thread_id") for t in thread_ids]
        if keep_last is not None:
            if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
                raise ValueError(f"keep_last must be a non-negative int, not {keep_last!r}")
            keep = keep_last
        elif strategy == "keep_latest":
            keep = 1
        elif strategy == "delete":
            keep = 0
        else:
            raise ValueError(
                f"unknown prune strategy {strategy!r}; use one of {PRUNE_STRATEGIES} or keep_last=N"
            )
        yield from self._per_thread(
            tids, lambda k: ScriptCall(scripts.PRUNE, (k.namespaces,), (k.handle, keep))
        )

    def delete_for_runs(self, run_ids: Sequence[str]) -> Plan[None]:
        runs = [validation.text(r, "run_id") for r in run_ids]
        if not runs:
            return
        if self._indexed() and all(search._tag_safe(r) for r in runs):
            tids = yield from self._with_indexes(lambda: self._indexed_threads(runs))
        else:
            tids = yield from self.thread_ids()
        yield from self._per_thread(
            tids, lambda k: ScriptCall(scripts.DELETE_RUNS, (k.namespaces,), (k.handle, *runs))
        )

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> Plan[None]:
        src = validation.text(source_thread_id, "source_thread_id")
        dst = validation.text(target_thread_id, "target_thread_id")
        skeys, dkeys = self.layout.thread(src), self.layout.thread(dst)
        (exported,) = yield from self._scripts(
            [ScriptCall(scripts.EXPORT, (skeys.namespaces,), (skeys.handle,))]
        )
        self.lists.forget(dst)  # its values may be replaced
        if not exported:
            return
        calls: list[Call] = []
        for ns_raw, blobs_flat, entries in exported:
            ns = ns_raw.decode()
            blobs = codec.pairs(blobs_flat)
            if blobs:
                calls.append(Command(("HSET", dkeys.blobs(ns), *_flatten(blobs))))
            ids: list[Arg] = []
            for id_raw, cp_flat, w_flat in entries:
                cid = id_raw.decode()
                cp = codec.pairs(cp_flat)
                cp[b"thread_id"] = dst.encode()
                cp[b"sort_key"] = search.sort_key(cid, dst, ns).encode()
                calls += [
                    Command.of("DEL", dkeys.checkpoint(ns, cid), dkeys.writes(ns, cid)),
                    Command(("HSET", dkeys.checkpoint(ns, cid), *_flatten(cp))),
                ]
                writes = codec.pairs(w_flat)
                if writes:
                    calls.append(Command(("HSET", dkeys.writes(ns, cid), *_flatten(writes))))
                ids += [0, cid]
            calls.append(Command.of("SADD", dkeys.namespaces, ns))
            if ids:
                calls.append(Command(("ZADD", dkeys.registry(ns), *ids)))
        yield from self._publish(dst, dkeys, calls)


def _flatten(mapping: Mapping[Any, Arg]) -> list[Arg]:
    out: list[Arg] = []
    for k, v in mapping.items():
        out += (k, v)
    return out


def _matches(t: CheckpointTuple, filter: Mapping[str, Any] | None, before_id: str) -> bool:
    """InMemorySaver's rule, on a loaded checkpoint: Python's ``==`` per filter item
    (a missing key is None), the filter's value on the left as there."""
    cid = t.config["configurable"]["checkpoint_id"]
    if before_id and cid >= before_id:
        return False
    md: Mapping[str, Any] = t.metadata
    return all(v == md.get(k) for k, v in (filter or {}).items())

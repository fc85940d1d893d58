"""What every plan of a saver shares: its state, the detector's findings and the
retry policy that carries an operation through failovers, slot moves and refusals."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ParamSpec

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.exceptions import (
    TimeoutError,
)

from . import codec, deltas, perkey, replies, scripts, search
from .detector import Capabilities, ModeLog, detect, probe_modes
from .errors import DurabilityError, pool_exhausted
from .failures import Failure, classify, stalled
from .indexes import ShardIndexes
from .keys import KeyLayout, ThreadKeys
from .options import TTL, Durability, Retention
from .plan import (
    Arg,
    Call,
    Command,
    Mode,
    Plan,
    RoundTrip,
    ScriptCall,
    T,
    WriteMode,
    pause,
)
from .retry import Retries, Step

P = ParamSpec("P")
UNREACHABLE = (Failure.LOST, Failure.MOVING)
"""Failures of a probe that mean the server is not there yet (a failover)."""


def config_of(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def flatten(mapping: Mapping[Any, Arg]) -> list[Arg]:
    out: list[Arg] = []
    for k, v in mapping.items():
        out += (k, v)
    return out


def _watched(plan: Plan[T], failed: list[RoundTrip]) -> Plan[T]:
    """``plan`` as it is, but for noting each trip an error came back from (the keys
    of the last one tell which slot a slot in motion is)."""
    replies: Any = None
    error: BaseException | None = None
    while True:
        try:
            trip = plan.send(replies) if error is None else plan.throw(error)
        except StopIteration as done:
            value: T = done.value
            return value
        error = None
        try:
            replies = yield trip
        except GeneratorExit:
            plan.close()
            raise
        except BaseException as exc:
            failed.append(trip)
            error = exc


def _publishes(call: Call) -> bool:
    return isinstance(call, Command) and call.publishes


def _published_last(calls: list[Call], wait: tuple[int, int] | None) -> Plan[list[Any]]:
    """A write without a transaction (per-key mode): the commands that make it visible
    (:attr:`Command.publishes`) go in a second trip, sent only once every other
    command succeeded. A pipeline runs every command even after one fails, and a
    failure need not stop the commands after it (a server out of memory refuses one
    large value, then takes the small commands that follow, its query buffer drained):
    sent in one trip, the registry entry would publish a checkpoint whose values were
    refused. So a write a server error stops leaves nothing readable, as after a
    crash. Replies come back in the order of ``calls`` (then WAIT's, if any)."""
    data = [c for c in calls if not _publishes(c)]
    shown = [c for c in calls if _publishes(c)]
    if not data or not shown:
        return list((yield RoundTrip(tuple(calls), atomic=True, wait=wait)))
    first = iter((yield RoundTrip(tuple(data), atomic=True)))
    # registry entries of one slot, each a command that applies whole: nothing to
    # hold together (per-key mode has no transaction anyway)
    last = iter((yield RoundTrip(tuple(shown), wait=wait)))
    return [next(last) if _publishes(c) else next(first) for c in calls] + list(last)


@dataclass
class Session:
    """What the plans of one saver share: its key layout, serializer, options, what
    the detector found, and the caches of this process (hints, never trusted alone)."""

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
    checkpoint_indexes: ShardIndexes = field(init=False)
    """The checkpoint index of each shard (one unless search sees one shard)."""
    use_search: bool | None = None
    """Forced by the user: False never creates or queries an index."""
    durability: Durability | None = None
    retention: Retention | None = None
    """Every put prunes its namespace to this many checkpoints, in its own write."""
    list_deltas: bool = True
    """Store a list that grew by appending as the appended items (see deltas.py)."""
    lists: deltas.ListBases = field(default_factory=deltas.ListBases)
    clock: Callable[[], float] = field(default=time.monotonic)
    """Seconds, only ever compared (retry deadlines); injected by tests."""

    def __post_init__(self) -> None:
        self.checkpoint_indexes = ShardIndexes(
            self.layout.index, partial(search.create_command, self.layout)
        )

    @property
    def write_mode(self) -> WriteMode:
        return self.mode.writes

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
        forced = self.transactions is False or self.scripts is False
        refused = [
            w for w, ok in (("MULTI", caps.transactions), ("scripts", caps.scripts)) if not ok
        ]
        reason = (
            "forced by options"
            if forced
            else f"the server refuses {' and '.join(refused)} ({caps.topology})"
        )
        self._use(caps, reason)

    def _use(self, caps: Capabilities, reason: str) -> bool:
        """Take the modes these findings call for (logging a fallback once, with its
        reason); True if they changed."""
        writes = caps.write_mode(self.transactions, self.scripts)
        scripts = caps.read_scripts(self.scripts)
        changed = (writes, scripts) != (self.mode.writes, self.mode.scripts)
        self.mode.writes, self.mode.scripts = writes, scripts
        self.log.fallback(writes, scripts, reason)
        return changed

    def setup(self) -> Plan[Capabilities]:
        """Probe the server once (again on every call: setup is idempotent)."""
        self.adopt((yield from detect(self.layout, self.client_kind)))
        assert self.capabilities is not None
        self.log.eviction(self.capabilities, bool(self.ttl.ms))
        return self.capabilities

    def guarded(self, make: Callable[P, Plan[T]], *args: P.args, **kwargs: P.kwargs) -> Plan[T]:
        """Run an operation (detecting first if needed) through what a live system
        throws at it, as the retry policy (retry.py) decides: a slot in motion is
        waited out, a refusal or a lost connection re-probes the server and switches
        mode if it now refuses what the mode needs, and a failover is waited out until
        ``failover_wait`` runs out. A slot still in motion then (a migration left half
        done) raises :class:`SlotMigrationError`, naming the slot (that of the trip the
        failure came back from) and the fix. Every operation is idempotent, so a retry
        after an unanswered attempt is safe. Timeouts, a full connection pool and other
        errors reach the caller at once."""
        if self.capabilities is None:
            yield from self.setup()
        retries = Retries(self.clock(), self.failover_wait)
        while True:
            failed: list[RoundTrip] = []
            try:
                return (yield from _watched(make(*args, **kwargs), failed))
            except Exception as exc:
                error, failure = exc, classify(exc)
                decision = retries.after(failure, self.clock())
                if decision.step is Step.RAISE:
                    trip = failed[-1] if failed else None
                    if failure is Failure.MOVING and (
                        clear := stalled(exc, trip, self.failover_wait)
                    ):
                        raise clear from exc
                    raise
            assert failure is not None
            if decision.step is Step.REPROBE:
                changed = yield from self._reprobe(error, retries)
                decision = retries.probed(failure, changed, self.clock())
                if decision.step is Step.RAISE:
                    raise error
            if decision.step is Step.PAUSE:
                yield pause(decision.seconds)

    def _reprobe(self, error: BaseException, retries: Retries) -> Plan[bool]:
        """Ask the server again what it allows; adopt a new mode if it changed."""
        multi, lua = yield from self._reachable(error, retries)
        now = Capabilities(transactions=multi, scripts=lua)
        return self._use(now, f"the server refused a request mid-flight ({error})")

    def _reachable(self, first: BaseException, retries: Retries) -> Plan[tuple[bool, bool]]:
        """The mode probes, retried while the server is unreachable (a failover).

        A cluster node does not start refusing MULTI during a failover, so there
        the MULTI probe is not repeated (redis-py's asyncio cluster transaction,
        which it would need, breaks under concurrent failover handling)."""
        known = self.capabilities.transactions if self.capabilities else None
        known = known if self.client_kind == "cluster" else None
        while True:
            try:
                return (yield from probe_modes(self.layout, self.client_kind, known))
            except Exception as exc:
                unreachable = isinstance(exc, TimeoutError) or classify(exc) in UNREACHABLE
                if pool_exhausted(exc) or not unreachable:
                    raise
            decision = retries.probe_failed(self.clock())
            if decision.step is Step.RAISE:
                raise first from None
            yield pause(decision.seconds)

    # ---- helpers ---------------------------------------------------------------

    def _touch_call(self, keys: ThreadKeys) -> ScriptCall:
        return ScriptCall(scripts.TOUCH, (keys.namespaces,), (keys.handle, self.ttl.ms))

    def _atomic(self, keys: ThreadKeys | None, calls: list[Call]) -> Plan[list[Any]]:
        """One atomic trip; with a TTL the renewal of the whole thread rides in it
        (where scripts are refused it follows as its own steps). In durable mode the
        trip ends with WAIT, and too few acknowledgements raise."""
        # a thread's ttl renewal (the store's writes pass no thread: keys is None)
        touch = self._touch_call(keys) if keys is not None and self.ttl.ms else None
        if touch is not None and self.mode.scripts:
            calls, touch = [*calls, touch], None
        d = self.durability
        wait = (d.replicas, d.timeout_ms) if d else None
        if self.mode.writes is WriteMode.PER_KEY:
            replies = yield from _published_last(calls, wait)
        else:
            replies = yield RoundTrip(tuple(calls), atomic=True, wait=wait)
        if touch is not None:
            yield from perkey.touch(touch)
        if d is not None and int(replies[-1]) < d.replicas:
            raise DurabilityError(int(replies[-1]), d.replicas, d.timeout_ms)
        return list(replies[: len(calls)])

    def _scripts(self, calls: Sequence[ScriptCall]) -> Plan[list[Any]]:
        """Script calls in one trip, their answers decoded (replies.py); where scripts
        are refused, the same work as plain-command plans, which answer with the same
        records in a few more round trips."""
        if self.mode.scripts:
            raw = yield RoundTrip(tuple(calls))
            return [
                replies.decode(c.script.name, codec.reply(r), ids_only=c.args[1:2] == ("ids",))
                for c, r in zip(calls, raw, strict=True)
            ]
        answers = []
        for call in calls:
            answers.append((yield from perkey.PLANS[call.script.name](call)))
        return answers

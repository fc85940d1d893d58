"""Errors the saver raises on its own account (Redis errors pass through as they are,
but for a slot migration left half done: :class:`SlotMigrationError`, raised from it)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ClusterError, ConnectionError, MaxConnectionsError, RedisError


class SaverError(Exception):
    """Base class of the saver's own errors."""


class PoolTimeoutError(SaverError, RedisError):
    """No connection came free within ``pool_timeout`` seconds: all the connections
    the saver may open to that server (``max_connections``) were busy.

    Not a lost connection, so never retried as a failover: the process runs more
    operations at once than its connections serve in that time. It is no
    ``ConnectionError`` either, which redis-py's cluster client would take for a
    failed node (and refresh the topology for).
    """

    def __init__(self, max_connections: int, timeout: float, where: str = "") -> None:
        on = f" to {where}" if where else ""
        super().__init__(
            f"no connection{on} came free within pool_timeout={timeout:g} s: all "
            f"max_connections={max_connections} were busy; raise max_connections or "
            "pool_timeout, or run fewer operations at once"
        )
        self.max_connections = max_connections
        self.timeout = timeout


def pool_exhausted(exc: BaseException) -> bool:
    """A full connection pool, which redis-py reports as a ConnectionError (a
    MaxConnectionsError, or a BlockingConnectionPool's "No connection available."):
    the client's own limit, not a lost connection."""
    return isinstance(exc, (PoolTimeoutError, MaxConnectionsError)) or (
        isinstance(exc, ConnectionError) and str(exc) == "No connection available."
    )


class DurabilityError(SaverError):
    """Too few replicas acknowledged a durable write within its timeout.

    The write reached the primary and may or may not survive a failover: it is
    neither confirmed durable nor undone.
    """

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"only {acknowledged} of {wanted} replica(s) acknowledged the write within "
            f"{timeout_ms} ms: it is on the primary but may be lost if the primary fails "
            "now (it may also survive); retrying the operation is safe"
        )
        self.acknowledged = acknowledged
        self.wanted = wanted


class SlotMigrationError(SaverError, ClusterError):
    """A slot the operation needs stayed in motion for all of ``failover_wait``: a
    migration left half done (``CLUSTER SETSLOT <slot> IMPORTING`` on one node,
    ``MIGRATING`` on another, perhaps some keys moved, and no ``SETSLOT <slot> NODE``
    after them), as when the operator's resharding tool died part-way.

    A ``ClusterError`` (as redis-py's own "TTL exhausted" is), so handlers of
    redis-py's errors still catch it; the redis-py error it stands for is its
    ``__cause__``. Retrying is safe once the slot is stable again: every operation
    is idempotent.
    """

    def __init__(
        self, slots: tuple[int, ...], waited: float, node: str | None, error: BaseException
    ) -> None:
        slot, which = "<slot>", "a slot"
        if len(slots) == 1:
            slot = str(slots[0])
            which = f"slot {slot}"
        elif slots:  # a trip over several threads, and an error that does not say which
            which = f"one of slots {', '.join(map(str, slots))}"
        where = node or "<host:port>"
        super().__init__(
            f"{which} stayed in motion for failover_wait={waited:g} s: a slot "
            f"migration was left half done (CLUSTER SETSLOT {slot} IMPORTING/MIGRATING "
            f"and no SETSLOT {slot} NODE after it; last error {type(error).__name__}: "
            f"{error}). Finish or abort it, then retry: `redis-cli --cluster fix {where}` "
            f"(or `valkey-cli --cluster fix {where}`), with any node of the cluster; or "
            f"by hand, MIGRATE the slot's remaining keys to the importing node and send "
            f"`CLUSTER SETSLOT {slot} NODE <importing-node-id>` to both nodes (finish), "
            f"or, while no key has moved, `CLUSTER SETSLOT {slot} STABLE` to both (abort)"
        )
        self.slots = slots
        self.waited = waited
        self.node = node
        self._args = (slots, waited, node, error)

    def __reduce__(self) -> tuple[type[SlotMigrationError], tuple[Any, ...]]:
        return (type(self), self._args)  # it crosses process boundaries whole


class ParentMissingError(SaverError):
    """A durable put (``durability=...``) names a parent checkpoint the server does not
    hold, so nothing was written: the checkpoint would have a hole in its history.

    Another process deleted the thread, or the parent's own write was refused (a
    DurabilityError: too few replicas took it) and a failover has since taken it away,
    after a read returned it from the old primary. Read the thread again (get_tuple)
    and go on from what is stored.
    """

    def __init__(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, parent: str) -> None:
        where = f"thread {thread_id!r}" + (
            f", namespace {checkpoint_ns!r}" if checkpoint_ns else ""
        )
        super().__init__(
            f"checkpoint {checkpoint_id!r} of {where} was not written: its parent "
            f"{parent!r} is not stored (deleted, or its own write was refused and then "
            "lost in a failover); read the thread again and go on from what is stored"
        )
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.checkpoint_id = checkpoint_id
        self.parent = parent

    def __reduce__(self) -> tuple[type[ParentMissingError], tuple[Any, ...]]:
        return (type(self), (self.thread_id, self.checkpoint_ns, self.checkpoint_id, self.parent))


class ThreadDamagedError(SaverError):
    """A thread has lost some of its keys: a checkpoint its registry lists is gone, or
    a value (or a delta's base) that a stored checkpoint needs. A server evicts keys
    one by one under ``maxmemory`` with an evicting ``maxmemory-policy`` (or someone
    deleted them by hand); what is left would read back as a shorter state, so the
    read fails instead. A thread that lost every key reads as empty, as it should.
    """

    def __init__(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, lost: str) -> None:
        where = f"checkpoint {checkpoint_id!r}" + (
            f" of namespace {checkpoint_ns!r}" if checkpoint_ns else ""
        )
        super().__init__(
            f"thread {thread_id!r} is damaged: {where} {lost}, so it cannot be read "
            "whole. Its keys were evicted (maxmemory with an evicting maxmemory-policy: "
            "set maxmemory-policy noeviction, or a volatile-* policy without the saver's "
            "ttl) or deleted by hand; delete the thread (delete_thread) or restore it"
        )
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.checkpoint_id = checkpoint_id
        self.lost = lost

    def __reduce__(self) -> tuple[type[ThreadDamagedError], tuple[Any, ...]]:
        return (type(self), (self.thread_id, self.checkpoint_ns, self.checkpoint_id, self.lost))

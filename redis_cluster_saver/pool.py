"""Connections that queue: beyond ``max_connections`` per server, a caller waits up to
``pool_timeout`` seconds for a free connection instead of failing at once.

redis-py's default pools either fail when full (``ConnectionPool`` with a limit, and
the asyncio cluster's nodes: ``MaxConnectionsError``) or block and then raise a plain
``ConnectionError`` (``BlockingConnectionPool``). Both look like a lost connection,
which the saver would retry as a failover. Here the clients the saver builds block
on their pools and raise :class:`~.errors.PoolTimeoutError` instead; the asyncio
cluster client, whose nodes cannot block, is bounded by the saver itself
(:class:`NodeBounds`).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from .compat import POOL_DROPS_IDLE, closed_under, is_connected, should_reconnect
from .errors import PoolTimeoutError
from .plan import Call, Command, RoundTrip, keys_of

DEFAULT_MAX_CONNECTIONS = 64
"""Per server (per node on a cluster). A Redis node runs one command at a time, so
a few dozen connections in flight from one process already keep it busy: more add
server memory and queueing, not throughput. 64 serves 64 sync threads or a few
hundred concurrent graph runs (each holds a connection only for one round trip),
and 150 such processes still fit in Redis's default ``maxclients`` of 10,000."""

DEFAULT_POOL_TIMEOUT = 10.0
"""Seconds a caller waits for a free connection: a burst of hundreds of runs drains
in well under a second, so a wait this long means the process is overloaded (or a
connection leaked): it gets an error rather than an unbounded wait."""

CLUSTER_NODE_HEADROOM = 2
"""An asyncio cluster client the saver builds may open this many times
``max_connections`` per node: the saver counts each trip against the node it is
routed to, so beyond that bound a node only sees keyless trips (bounded apart, as
they may go to any node), trips that a redirect (MOVED, ASK) sent on from another
node, and the client's own topology queries. A client passed in keeps its limit:
the saver's bound there is that limit divided by this."""

NO_CONNECTION = "No connection available."
"""What redis-py's BlockingConnectionPool raises (as a ConnectionError) on a timeout."""


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """``max_connections`` per server and ``pool_timeout``, validated."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    timeout: float = DEFAULT_POOL_TIMEOUT

    @classmethod
    def parse(cls, max_connections: Any, pool_timeout: Any) -> PoolLimits:
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(f"max_connections must be an int >= 1, not {max_connections!r}")
        if (
            isinstance(pool_timeout, bool)
            or not isinstance(pool_timeout, (int, float))
            or not 0 < pool_timeout < math.inf
        ):
            raise ValueError(
                f"pool_timeout must be a positive number of seconds, not {pool_timeout!r}"
            )
        return cls(max_connections, float(pool_timeout))

    def blocking(self) -> dict[str, Any]:
        """Arguments of a blocking pool (one endpoint, or one cluster node)."""
        return {"max_connections": self.max_connections, "timeout": self.timeout}


def _timed_out(pool: Any, exc: redis.ConnectionError) -> PoolTimeoutError | None:
    if str(exc) != NO_CONNECTION:
        return None
    kwargs = pool.connection_kwargs
    where = f"{kwargs['host']}:{kwargs['port']}" if "host" in kwargs else ""
    return PoolTimeoutError(pool.max_connections, pool.timeout, where)


class QueuedPool(redis.BlockingConnectionPool):
    """A blocking pool whose timeout says so (PoolTimeoutError), and that lends the
    connection given back last straight to the next caller while nobody is waiting.

    redis-py's own path (a lock, a readability check, metrics, an event) costs about
    as much as a loopback round trip: a get_tuple through it took about 20% longer.
    The connection kept aside is counted as in use; it goes back through redis-py's
    path as soon as a caller asks while it is kept, so no caller ever waits on it.
    redis-py's connections drop themselves when a read fails or is interrupted, so one
    given back is in step (the check skipped here guards against a release
    mid-reply)."""

    def reset(self) -> None:
        super().reset()  # type: ignore[no-untyped-call]
        self._kept: list[Any] = []
        self._asking = 0
        self._keeping = threading.Lock()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        with self._keeping:
            self._asking += 1
            conn = self._kept.pop() if self._kept else None
        try:
            if conn is not None and self.pid == os.getpid():
                if not is_connected(conn):
                    conn.connect()
                return conn
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            error = _timed_out(self, exc)
            if error is None:
                raise
            raise error from None
        except ValueError as exc:
            if not closed_under(exc):
                raise
            # redis-py 6.x reads a socket closed under its handshake (a node killed
            # while a topology refresh drops connections) as this ValueError, and
            # gives the connection back with the closed socket still in it
            self.disconnect(inuse_connections=False)
            raise redis.ConnectionError(
                f"the connection closed under its handshake ({exc})"
            ) from exc
        finally:
            with self._keeping:
                self._asking -= 1

    def release(self, connection: Any) -> None:
        if self.pid == os.getpid() and not should_reconnect(connection):
            with self._keeping:
                if not self._asking and not self._kept:
                    self._kept.append(connection)
                    return
        super().release(connection)  # type: ignore[no-untyped-call]

    def _give_back_kept(self) -> None:
        """The connection kept aside back among redis-py's free ones, for what redis-py
        does to a whole pool: it is idle, though redis-py counts it as in use."""
        with self._keeping:
            kept, self._kept = self._kept, []
        for conn in kept:
            super().release(conn)  # type: ignore[no-untyped-call]

    def update_maint_notifications_config(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py 8.0 reconfigures every connection when a cluster client turns on
        maintenance notifications, and fails on one in use that has not said which
        parser it reads with (as the kept one looks to it)."""
        self._give_back_kept()
        return super().update_maint_notifications_config(*args, **kwargs)

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Drop every connection, or only the idle ones (and the one kept aside), as
        redis-py's Sentinel pool asks when the primary moved. redis-py before 7.0 has
        no ``inuse_connections`` here: its own Sentinel pool then failed with a
        TypeError on the first failover."""
        self._give_back_kept()
        if inuse_connections:
            super().disconnect()
        elif POOL_DROPS_IDLE:
            super().disconnect(inuse_connections=False)
        else:
            self._checkpid()
            for conn in list(self.pool.queue):  # the idle ones (None: a free place)
                if conn is not None:
                    conn.disconnect()


class QueuedSentinelPool(redis.sentinel.SentinelConnectionPool, QueuedPool):
    """A Sentinel-managed pool (it follows failovers) that blocks as QueuedPool."""


class AsyncQueuedPool(redis.asyncio.BlockingConnectionPool):
    """QueuedPool for asyncio (one loop: no lock needed between the checks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: list[Any] = []
        self._asking = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        self._asking += 1
        try:
            if self._kept:
                conn = self._kept.pop()
                if not is_connected(conn):
                    await conn.connect()
                return conn
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            error = _timed_out(self, exc)
            if error is None:
                raise
            raise error from None
        finally:
            self._asking -= 1

    def lend_now(self) -> Any:
        """A connection without waiting (the kept one first), for a caller that
        shares it (pipes.NodePipe); MaxConnectionsError where none is free."""
        if self._kept:
            return self._kept.pop()
        return self.get_available_connection()  # type: ignore[no-untyped-call]

    async def release(self, connection: Any) -> None:
        if not self._asking and not self._kept and not should_reconnect(connection):
            self._kept.append(connection)
            return
        await super().release(connection)


class AsyncQueuedSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, AsyncQueuedPool):
    """QueuedSentinelPool for asyncio."""


KEYLESS = "*"
"""The bound of keyless trips (PING, INFO, CLUSTER SLOTS): they go to any node."""


def _key(call: Call) -> str | None:
    if isinstance(call, Command):
        if call.route is not None:
            return call.route
        return None if call.anywhere or len(call.args) < 2 else str(call.args[1])
    keys = keys_of(call)
    return keys[0] if keys else None


class Turns:
    """One node's turns: ``free`` of them, then callers queue in arrival order.

    Every caller waits the same ``timeout``, so deadlines come in queue order and
    one timer (for the head of the queue) serves them all: a wait costs a future,
    not a task and a timer as ``asyncio.wait_for`` would."""

    __slots__ = ("free", "limit", "timeout", "timer", "waiters", "where")

    def __init__(self, where: str, limit: int, timeout: float) -> None:
        self.where, self.limit, self.timeout = where, limit, timeout
        self.free = limit
        self.waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self.timer: asyncio.TimerHandle | None = None

    async def take(self) -> None:
        if self.free and not self.waiters:
            self.free -= 1
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self.waiters.append((loop.time() + self.timeout, turn))
        if self.timer is None:
            self.timer = loop.call_at(self.waiters[0][0], self.expire)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self.give()  # handed a turn as the caller was cancelled: pass it on
            raise

    def give(self) -> None:
        while self.waiters:
            _, turn = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the turn passes straight to the next caller
                return
        self.free += 1

    def expire(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.waiters and (self.waiters[0][0] <= now or self.waiters[0][1].done()):
            _, turn = self.waiters.popleft()
            if not turn.done():
                turn.set_exception(PoolTimeoutError(self.limit, self.timeout, self.where))
        if self.waiters:
            self.timer = loop.call_at(self.waiters[0][0], self.expire)


class NodeBounds:
    """At most ``limit`` trips at once per node of an asyncio cluster client, whose
    nodes cannot queue (a full node raises MaxConnectionsError at once). A trip waits
    for its turn up to ``timeout`` seconds, then raises PoolTimeoutError.

    A trip counts against the node of its first key (an atomic trip is one slot);
    a pipeline that is not atomic against each node it goes to, taken in name
    order so that two trips never wait on each other; a keyless trip against
    a bound of its own.
    """

    def __init__(self, client: Any, limit: int, timeout: float) -> None:
        self.client = client
        self.limit = limit
        self.timeout = timeout
        self.nodes: dict[str, Turns] = {}

    @classmethod
    def of(cls, client: Any, limits: PoolLimits) -> NodeBounds:
        """Bounds for ``client``: within half its own per-node limit (see
        CLUSTER_NODE_HEADROOM), and within ``max_connections``."""
        own = client.get_connection_kwargs().get("max_connections") or limits.max_connections
        limit = max(1, min(limits.max_connections, own // CLUSTER_NODE_HEADROOM))
        return cls(client, limit, limits.timeout)

    def turns(self, name: str) -> Turns:
        turns = self.nodes.get(name)
        if turns is None:
            where = "any node" if name == KEYLESS else name
            turns = self.nodes[name] = Turns(where, self.limit, self.timeout)
        return turns

    def now(self, trip: RoundTrip) -> list[Turns] | None:
        """A turn taken at once for a trip to one node with a turn free (most trips),
        without a coroutine; None when :meth:`take` has to do it (the slot map is
        being learnt, the trip goes to several nodes, or it has to wait)."""
        if getattr(self.client, "_initialize", True) or (
            len(trip.calls) > 1 and not (trip.atomic or trip.wait)
        ):
            return None
        key = _key(trip.calls[0])
        turns = self.turns(KEYLESS if key is None else self.node_of(key))
        if not turns.free or turns.waiters:
            return None
        turns.free -= 1
        return [turns]

    async def take(self, trip: RoundTrip) -> list[Turns]:
        """A turn on each node ``trip`` goes to: give them back with :meth:`give`."""
        await self.client.initialize()  # the slot map is known after it
        calls = trip.calls[:1] if trip.atomic or trip.wait else trip.calls
        if len(calls) == 1:  # most trips: one node
            key = _key(calls[0])
            turns = self.turns(KEYLESS if key is None else self.node_of(key))
            await turns.take()
            return [turns]
        names = {KEYLESS if (key := _key(c)) is None else self.node_of(key) for c in calls}
        return await self.take_names(sorted(names))

    def node_of(self, key: str) -> str:
        return str(self.client.get_node_from_key(key).name)

    async def take_names(self, names: Sequence[str]) -> list[Turns]:
        """A turn on each of these nodes, in this order (all or none)."""
        held: list[Turns] = []
        try:
            for name in names:
                turns = self.turns(name)
                await turns.take()
                held.append(turns)
        except BaseException:
            self.give(held)
            raise
        return held

    @staticmethod
    def give(held: Sequence[Turns]) -> None:
        for turns in held:
            turns.give()

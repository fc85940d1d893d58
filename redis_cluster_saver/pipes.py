"""Pipelined direct calls to a cluster node (or a single endpoint's pool, through
:class:`PoolNode`), for the asyncio shell.

Under load most of a round trip's client time is spent on the socket rather than in
the saver: a send, a wake-up on the reply, a receive, a timer for the read timeout,
and the reader's chain of coroutines kept alive while it waits. Calls to one node
at the same time share one of the node's connections here instead: the packets
queued in one turn of the event loop go out in one write, and one reader takes the
replies off in order (often several per receive) and hands each to its caller.
Each call is still one command or one MULTI/EXEC block (a whole write, as atomic
as before, its replies read together); only the socket is shared. The connection
is the node's own, taken when a call finds none in use and given back when the last
reply is in, so a node never has more connections out than trips in flight.

Failures are the connection's: an error reply goes to its own caller (the
connection stays in step); a lost connection, a read timeout or anything else that
may leave it out of step fails every call waiting on it with a ConnectionError or
TimeoutError (which the shell sends again through the client: every operation is
idempotent), and the connection is dropped before it goes back to the node, so no
late reply is ever read as another call's. A cancelled caller's reply is read and
dropped: the connection stays in step.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from .compat import encoder_of, should_reconnect


class NodePipe:
    """The calls in flight to one node on one connection (one at a time)."""

    __slots__ = (
        "broken",
        "conn",
        "encoder",
        "flushing",
        "node",
        "opening",
        "outbox",
        "reader",
        "shared",
        "waiting",
    )

    def __init__(self, node: Any) -> None:
        self.node = node
        self.encoder = encoder_of(node)
        """How the node's connections encode text (for packing calls)."""
        self.shared = not node.connection_kwargs.get("health_check_interval")
        """Connections with health checks are never shared: the checks are part of
        redis-py's own send."""

        self.conn: Any = None
        """The node's connection carrying the calls in flight, if any."""
        self.waiting: deque[tuple[asyncio.Future[Any], int]] = deque()
        """Each call's future, and how many replies its packet has."""
        self.outbox: list[bytes] = []
        self.flushing = False
        self.broken = False
        """The calls failed: none is added until the connection is given back."""
        self.opening: asyncio.Future[BaseException | None] | None = None
        """Connecting the burst's connection: what it failed with, if it did."""
        self.reader: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly

    def usable(self) -> bool:
        """False while the connection in use has failed or is marked stale by a
        topology change (calls then go through the client until it is given back),
        and where connections are not shared."""
        conn = self.conn
        if conn is None:
            return self.shared
        return not (self.broken or should_reconnect(conn))

    def send(self, packet: list[bytes], replies: int = 1) -> asyncio.Future[Any] | None:
        """Queue ``packet`` (one command, or a MULTI/EXEC block of ``replies``
        replies) on the open connection: the future of its reply (a block's: the list
        of its replies, error replies among them as exceptions), or None when the
        connection has to be taken or opened first (then :meth:`call`). Most calls
        of a burst come here, without a coroutine."""
        if self.conn is None or self.opening is not None or self.broken:
            return None
        return self._queue(packet, replies)

    async def call(self, packet: list[bytes], replies: int = 1) -> Any:
        """The reply to ``packet`` (as :meth:`send`), written with whatever else is
        queued."""
        if self.conn is None:  # the first call of a burst takes a connection and opens it
            self.conn = self.node.acquire_connection()  # a full node raises, as through the client
            self.opening = asyncio.ensure_future(self._open(self.conn))
        while self.opening is not None:  # wait for the burst's connection to open
            failure = await asyncio.shield(self.opening)
            if failure is not None:
                raise ConnectionError(f"could not connect to {self.node.name}") from failure
        if self.broken or self.conn is None:
            raise ConnectionError("the node's connection failed")
        return await self._queue(packet, replies)

    def _queue(self, packet: list[bytes], replies: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((reply, replies))
        self.outbox += packet
        if not self.flushing:
            self.flushing = True
            loop.call_soon(self.flush)
        if self.reader is None:
            self.reader = loop.create_task(self.read(self.conn))
        return reply

    async def _open(self, conn: Any) -> BaseException | None:
        """Connect the burst's connection (dropped first if marked stale). A failure
        is handed to the callers that waited for it (they fall back); the connection
        goes back to the node and the next call tries afresh."""
        try:
            if should_reconnect(conn):
                await conn.disconnect()
            await conn.connect()
        except BaseException as exc:
            self.conn = self.opening = None  # before awaiting: a new burst starts afresh
            await conn.disconnect(nowait=True)
            self.node.release(conn)
            if not isinstance(exc, Exception):
                raise
            return exc
        self.opening = None
        return None

    def flush(self) -> None:
        """Write every queued packet at once (soon after the first was queued)."""
        self.flushing = False
        if not self.outbox:
            return
        packets, self.outbox = self.outbox, []
        writer = getattr(self.conn, "_writer", None)
        if writer is None or writer.transport.is_closing():
            self.fail(ConnectionError("the connection closed before the call was sent"))
            return
        writer.writelines(packets)

    async def read(self, conn: Any) -> None:
        """Hand out replies in order while calls wait, then give the connection back
        (dropped first if it failed)."""
        try:
            while self.waiting and not self.broken:
                got: list[Any] = []
                for _ in range(self.waiting[0][1]):
                    try:
                        got.append(await conn.read_response())
                    except ResponseError as exc:  # read whole: the connection is in step
                        got.append(exc)
                if self.broken:
                    break
                head, count = self.waiting.popleft()
                if head.done():
                    continue  # its caller was cancelled
                if count > 1:
                    head.set_result(got)
                elif isinstance(got[0], ResponseError):
                    head.set_exception(got[0])
                else:
                    head.set_result(got[0])
        except BaseException as exc:  # redis-py dropped the connection (read_response)
            self.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            broken, self.broken = self.broken, False
            self.conn = self.reader = None  # the next call takes a connection afresh
            if broken:
                await conn.disconnect(nowait=True)
            self.node.release(conn)

    def fail(self, exc: BaseException) -> None:
        """Fail every waiting call, each with an error of its own."""
        self.broken = True
        self.outbox.clear()
        kind = TimeoutError if isinstance(exc, TimeoutError) else ConnectionError
        while self.waiting:
            reply, _ = self.waiting.popleft()
            if not reply.done():
                error = kind(f"the node's shared connection failed: {exc}")
                error.__cause__ = exc
                reply.set_exception(error)


class PoolNode:
    """A single endpoint's asyncio pool, seen as a node by :class:`NodePipe`: the
    calls of a burst share one of the pool's connections, taken without waiting (a
    full pool raises MaxConnectionsError: the call then goes the pool's own way) and
    given back when the burst's last reply is in."""

    name = "single"

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.connection_kwargs = pool.connection_kwargs
        self.response_callbacks: dict[str, Any] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def acquire_connection(self) -> Any:
        lend = getattr(self.pool, "lend_now", None)
        return lend() if lend is not None else self.pool.get_available_connection()

    def release(self, conn: Any) -> None:
        """The pool's release waits on its lock: done in a task of its own."""
        task = asyncio.get_running_loop().create_task(self.pool.release(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

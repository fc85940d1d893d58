"""Thin shells that drive plans over a redis-py client: one sync, one asyncio.

What goes on the wire is decided by :mod:`.lowering`; the shells put each lowered
trip on their client (one command, a pipeline, MULTI/EXEC, a node's connection) and
hand the replies back. What the two share that does not wait on the network lives in
:class:`Shell`. Errors are thrown into the plan, so a plan that probes (the detector)
can catch a refusal where it happens.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from .compat import closed_under
from .connection import CLOSED_CLIENT, is_closed, is_cluster_client
from .errors import SaverError
from .lowering import Lowered, Shape, eval_args, evalsha_args, lower
from .pipes import NodePipe, PoolNode
from .plan import Command, Mode, Plan, RoundTrip
from .pool import NodeBounds

T = TypeVar("T")
TripHook = Callable[[str, RoundTrip], None]
"""Called with ("send", trip) before a trip goes out and ("reply", trip) once its
replies are in. Tests stop a process there (a crash at a chosen round trip) or
raise ConnectionError from "reply" (a reply lost after the server applied it)."""
REROUTE = (MovedError, AskError, TryAgainError, ClusterDownError, ConnectionError, TimeoutError)
"""What a script call sent straight to its node may meet when the slot map is off
(the slot moved or is moving, the node failed over or is gone): the call then goes
again through the cluster client, which handles these as for any command (follows
the redirect, relearns the map, retries what it retries). None of them means the
script ran, but for a lost reply, and every operation is idempotent."""


@dataclass(slots=True)
class Outcome:
    """What a trip brought back to its plan: replies, or an error to throw in; and,
    once the plan is done, its result."""

    replies: Any = None
    error: Exception | None = None
    value: Any = None


class Shell:
    """What the sync and async shells share: how each trip maps onto commands."""

    def __init__(self, client: Any, mode: Mode | None = None) -> None:
        self.client = client
        self.mode = mode or Mode()
        self.cluster = is_cluster_client(client)
        self.mode.one_endpoint = not self.cluster  # lowering: MULTI/EXEC as one packet
        self.hook: TripHook | None = None

    def notify(self, event: str, trip: RoundTrip) -> None:
        if self.hook is not None and trip.calls:
            self.hook(event, trip)

    def options(self, call: Command) -> dict[str, Any]:
        """A cluster client must be told where a keyless command goes."""
        if not self.cluster:
            return {}
        if call.route is not None:
            return {"target_nodes": self.client.get_node_from_key(call.route)}
        if call.anywhere:
            return {"target_nodes": self.client.get_random_node()}
        return {}

    @staticmethod
    def queued(
        client: Any, calls: Sequence[Command], transaction: bool = False, routes: bool = False
    ) -> Any:
        """A pipeline of ``client`` holding ``calls``, ready to execute. With ``routes``
        (a cluster client's pipeline), a command routed by a key goes to that key's
        node: the client cannot tell where a module command such as FT.SEARCH goes,
        and would try another node first."""
        pipe = client.pipeline(transaction=transaction)
        for call in calls:
            if routes and call.route is not None:
                node = client.get_node_from_key(call.route)
                pipe.execute_command(*call.args, target_nodes=node)
            else:
                pipe.execute_command(*call.args)
        return pipe

    def client_error(self, exc: Exception) -> Exception:
        """The error to throw into the plan; anything but the client's own is re-raised.

        redis-py's cluster clients follow an ASK to a node missing from their slot
        map (a new primary taking its first slot) through ``None`` (redis-py issue
        4015), and the asyncio one can meet a connection that a concurrent topology
        refresh just closed: both are the topology moving under the call, and go to
        the plan as the ClusterError they stand for. A sync cluster client closed
        under the saver fails the same way, for good: that is said plainly."""
        if isinstance(exc, (RedisError, RedisClusterException)):
            return exc
        if is_closed(self.client):
            raise SaverError(CLOSED_CLIENT) from exc
        if self.cluster and isinstance(exc, AttributeError) and _raised_by_redis(exc):
            return ClusterError(f"the cluster's topology changed under the call ({exc})")
        if closed_under(exc) and _raised_by_redis(exc):
            return ConnectionError(f"the connection closed under the call ({exc})")
        raise exc

    def owner(self, key: str) -> Any:
        """The primary that owns ``key``'s slot in the cluster client's slot map, or
        None when the map is being learnt again or does not cover the slot: the call
        then goes through the client."""
        if getattr(self.client, "_initialize", False):
            return None
        try:
            return self.client.get_node_from_key(key)
        except SlotNotCoveredError:
            return None

    @staticmethod
    def multi_packet(calls: Sequence[Command], encoder: Any) -> list[bytes]:
        """MULTI, the calls, EXEC: one packet on one connection of a single-endpoint
        client, read back without redis-py's pipeline machinery (which costs more
        than the round trip itself)."""
        return _pack([("MULTI",), *(c.args for c in calls), ("EXEC",)], encoder)

    @staticmethod
    def executed(replies: list[Any]) -> list[Any]:
        """EXEC's replies, from every reply of a MULTI packet (all read, so the
        connection stays in step, error replies among them as exceptions: MULTI
        refused, a command refused, EXECABORT); the first error raised, as
        redis-py's transactions do."""
        for item in replies:
            if isinstance(item, ResponseError):
                raise item
        for item in replies[-1]:
            if isinstance(item, ResponseError):
                raise item
        return list(replies[-1])

    @staticmethod
    def next_trip(plan: Plan[T], outcome: Outcome) -> RoundTrip | None:
        """The plan's next trip, given what the last one brought; None once the plan
        is done (its result then in ``outcome.value``)."""
        try:
            if outcome.error is not None:
                return plan.throw(outcome.error)
            return plan.send(outcome.replies)
        except StopIteration as done:
            outcome.value = done.value
            return None


class SyncShell(Shell):
    def run(self, plan: Plan[T]) -> T:
        if self.cluster and is_closed(self.client):  # it would serve keyed commands only
            raise SaverError(CLOSED_CLIENT)
        outcome = Outcome()
        while (trip := self.next_trip(plan, outcome)) is not None:
            try:
                self.notify("send", trip)
                outcome = Outcome(self.execute(trip))
                self.notify("reply", trip)
            except Exception as exc:
                outcome = Outcome(error=self.client_error(exc))
        return outcome.value  # type: ignore[no-any-return]

    def node_client(self, key: str) -> Any:
        """A client whose pipelines go to the one node that owns ``key``."""
        if not self.cluster:
            return self.client
        return self.client.get_redis_connection(self.client.get_node_from_key(key))

    def execute(self, trip: RoundTrip) -> list[Any]:
        low = lower(trip, self.mode)
        return low.replies(self.send(low))

    def send(self, low: Lowered) -> list[Any]:
        """The replies to ``low``'s calls, sent as its shape says."""
        if low.shape is Shape.PAUSE:
            time.sleep(low.pause)
            return []
        if low.shape is Shape.NODE:
            assert low.route is not None
            try:
                return list(self.queued(self.node_client(low.route), low.calls).execute())
            except (MovedError, ConnectionError):
                if self.cluster:  # the slot map is stale: learn it again before the retry
                    self.client.nodes_manager.initialize()
                raise
        if low.shape is Shape.TRANSACTION and not self.cluster:
            return self.transaction(low.calls)
        if low.shape is not Shape.ONE:
            transaction = low.shape is Shape.TRANSACTION
            routes = self.cluster and not transaction
            return list(self.queued(self.client, low.calls, transaction, routes).execute())
        call = low.one
        assert call is not None
        if isinstance(call, Command):
            return [self.client.execute_command(*call.args, **self.options(call))]
        send = self.client.execute_command if self.cluster else self.direct
        try:
            return [send(*evalsha_args(call))]
        except NoScriptError:
            return [send(*eval_args(call))]

    def direct(self, *args: Any) -> Any:
        """One command (a script call: redis-py has no reply callback for those) on a
        connection of a single-endpoint client, without the client's per-command
        machinery. An error reply leaves the connection in step; anything else
        drops it."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(_pack([args], conn.encoder))
            return conn.read_response()
        except ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def transaction(self, calls: Sequence[Command]) -> list[Any]:
        """MULTI ... EXEC on one connection (:meth:`Shell.multi_packet`); a connection
        that failed mid-reply is dropped, never reused."""
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(self.multi_packet(calls, conn.encoder))
            replies = [_reply(conn) for _ in range(len(calls) + 2)]
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return self.executed(replies)


def _reply(conn: Any) -> Any:
    """The next reply on a sync connection, an error reply as its exception."""
    try:
        return conn.read_response()
    except ResponseError as exc:
        return exc


async def _areply(conn: Any) -> Any:
    """The same on an asyncio connection."""
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc


def _raised_by_redis(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and f"{os.sep}redis{os.sep}" in frames[-1].filename


def _pack(commands: list[tuple[Any, ...]], encoder: Any) -> list[bytes]:
    """The commands in RESP, in one buffer: by hiredis in C when it is installed and
    the connection encodes text as UTF-8, as hiredis does; else by :func:`resp`, in
    the connection's ``encoder``'s encoding."""
    if _hiredis_pack is not None and _utf8(encoder.encoding, encoder.encoding_errors):
        return [b"".join([_hiredis_pack(c) for c in commands])]
    return [resp(commands, encoder.encoding, encoder.encoding_errors)]


@functools.lru_cache(maxsize=8)
def _utf8(encoding: str, errors: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "utf-8" and errors == "strict"
    except LookupError:
        return False


def resp(commands: list[tuple[Any, ...]], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """RESP for commands whose arguments are str, bytes, int or float, encoded as
    redis-py encodes them (its packer pays for generality these do not need).

    Most arguments are ASCII text (names, keys, fields, numbers): their frames are
    built as text and encoded in one go, up to the next binary value, which is
    framed as it is (never copied but by the final join)."""
    if not _ascii_compatible(encoding):
        return _resp_encoded(commands, encoding, errors)
    out: list[bytes] = []
    text: list[str] = []
    for args in commands:
        text.append(f"*{len(args)}\r\n")
        for arg in args:
            kind = type(arg)
            if kind is str and arg.isascii():
                text.append(f"${len(arg)}\r\n{arg}\r\n")
                continue
            if kind is int:
                digits = str(arg)
                text.append(f"${len(digits)}\r\n{digits}\r\n")
                continue
            if kind is bytes:
                raw = arg
            elif kind is str:
                raw = arg.encode(encoding, errors)
            else:
                raw = _other(arg, encoding, errors)
            text.append(f"${len(raw)}\r\n")
            out.append("".join(text).encode("ascii"))
            out.append(raw)
            text.clear()
            text.append("\r\n")
    out.append("".join(text).encode("ascii"))
    return b"".join(out)


@functools.lru_cache(maxsize=8)
def _ascii_compatible(encoding: str) -> bool:
    """Whether ``encoding`` writes ASCII text as ASCII (UTF-8, Latin-1: not UTF-16)."""
    sample = "".join(map(chr, range(128)))
    try:
        return sample.encode(encoding) == sample.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def _resp_encoded(commands: list[tuple[Any, ...]], encoding: str, errors: str) -> bytes:
    """:func:`resp` for an encoding that is not ASCII-compatible: every argument
    encoded on its own."""
    out: list[bytes] = []
    for args in commands:
        out.append(b"*%d\r\n" % len(args))
        for arg in args:
            kind = type(arg)
            if kind is bytes:
                raw = arg
            elif kind is str:
                raw = arg.encode(encoding, errors)
            elif kind is int:
                raw = b"%d" % arg
            else:
                raw = _other(arg, encoding, errors)
            out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


def _other(arg: Any, encoding: str, errors: str) -> bytes:
    if isinstance(arg, bytes):
        return bytes(arg)
    if isinstance(arg, str):
        return str(arg).encode(encoding, errors)
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise TypeError(f"cannot send {type(arg).__name__} to Redis: {arg!r:.80}")
    return repr(arg).encode()


_DIRECT_NODES = hasattr(redis.asyncio.cluster.ClusterNode, "acquire_connection")
"""Whether this redis-py's asyncio cluster nodes lend their connections (every
version the package allows does: the check guards the internals it leans on)."""

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _found

    _hiredis_pack = _found
except ImportError:  # pragma: no cover - hiredis is optional
    _hiredis_pack = None


class AsyncShell(Shell):
    """The asyncio shell. Script calls go straight to their node on one shared,
    pipelined connection (pipes.py) rather than through redis-py's per-command path;
    redis-py's asyncio MULTI, used only where scripts are refused, costs more than its
    sync one and on a cluster resolves each queued command's slot on a thread of its
    own (4.3 ms a put, against 0.9 ms as a script)."""

    def __init__(self, client: Any, mode: Mode | None = None) -> None:
        super().__init__(client, mode)
        self.nodes: dict[str, Any] = {}
        self.using: dict[Any, int] = {}  # per-node client -> trips running on it
        self.retired: set[Any] = set()  # forgotten clients, closed when unused
        self.pipes: dict[str, NodePipe] = {}
        """The shared connection of each node, for the direct calls (see pipes.py)."""
        pool = getattr(client, "connection_pool", None)
        self.single_pipe = (
            NodePipe(PoolNode(pool))
            if not self.cluster and pool is not None and hasattr(pool, "get_available_connection")
            else None
        )
        """The same for a single-endpoint client."""

    async def node_client(self, key: str) -> Any:
        """A client whose pipelines go to the one node that owns ``key``."""
        if not self.cluster:
            return self.client
        await self.client.initialize()
        node = self.client.get_node_from_key(key)
        if node.name not in self.nodes:
            pool = redis.asyncio.ConnectionPool(
                connection_class=node.connection_class, **node.connection_kwargs
            )
            self.nodes[node.name] = redis.asyncio.Redis.from_pool(pool)
        return self.nodes[node.name]

    async def retire_nodes(self) -> None:
        """Forget the per-node clients (the slot map moved): closed now, or when the
        last trip still running on one ends."""
        clients, self.nodes = list(self.nodes.values()), {}
        for client in clients:
            if client in self.using:
                self.retired.add(client)
            else:
                await client.aclose()

    async def aclose(self) -> None:
        """Close the per-node clients (they are the shell's own, whoever owns the
        main client)."""
        await self.retire_nodes()
        clients, self.retired = list(self.retired), set()
        for client in clients:
            await client.aclose()

    async def on_node(self, low: Lowered) -> list[Any]:
        """A NODE trip on a client of the node that owns its key."""
        assert low.route is not None
        client = await self.node_client(low.route)
        self.using[client] = self.using.get(client, 0) + 1
        try:
            return list(await self.queued(client, low.calls).execute())
        except (MovedError, ConnectionError):
            if self.cluster:  # the slot map is stale: learn it again before the retry
                await self.retire_nodes()
                await self.client.nodes_manager.initialize()
            raise
        finally:
            self.using[client] -= 1
            if not self.using[client]:
                del self.using[client]
                if client in self.retired:
                    self.retired.discard(client)
                    await client.aclose()

    async def run(self, plan: Plan[T]) -> T:
        outcome = Outcome()
        while (trip := self.next_trip(plan, outcome)) is not None:
            bounds = self.bounds if trip.calls else None
            held = None
            try:
                if bounds is not None:  # a turn on the node(s) the trip goes to
                    held = bounds.now(trip) or await bounds.take(trip)
                self.notify("send", trip)
                outcome = Outcome(await self.execute(trip))
                self.notify("reply", trip)
            except Exception as exc:
                outcome = Outcome(error=self.client_error(exc))
            finally:
                if bounds is not None and held:
                    bounds.give(held)
        return outcome.value  # type: ignore[no-any-return]

    bounds: NodeBounds | None = None
    """Trips at once per node, for an asyncio cluster client (its nodes cannot queue):
    :meth:`run` takes a turn before :meth:`execute` and gives it back after (taking
    it inline, as coroutines each trip would stay alive across its round trip)."""

    async def execute(self, trip: RoundTrip) -> list[Any]:
        low = lower(trip, self.mode)
        return low.replies(await self.send(low))

    async def send(self, low: Lowered) -> list[Any]:
        """The replies to ``low``'s calls, sent as its shape says."""
        if low.shape is Shape.PAUSE:
            await asyncio.sleep(low.pause)
            return []
        if low.shape is Shape.NODE:
            return await self.on_node(low)
        if low.shape is Shape.TRANSACTION and not self.cluster:
            return await self.transaction(low.calls)
        if low.shape is not Shape.ONE:
            transaction = low.shape is Shape.TRANSACTION
            routes = self.cluster and not transaction
            if routes and any(c.route is not None for c in low.calls):
                await self.client.initialize()  # the slot map is known after it
            pipe = self.queued(self.client, low.calls, transaction, routes)
            return list(await pipe.execute())
        call = low.one
        assert call is not None
        if isinstance(call, Command):
            if self.cluster and low.route is not None:
                return [await self.routed(low.route, *call.args)]
            if self.cluster and (call.route is not None or call.anywhere):
                await self.client.initialize()  # the node list is known after it
            return [await self.client.execute_command(*call.args, **self.options(call))]
        send = functools.partial(self.routed, low.route) if self.cluster else self.direct
        try:
            return [await send(*evalsha_args(call))]
        except NoScriptError:
            return [await send(*eval_args(call))]

    async def routed(self, key: str | None, *args: Any) -> Any:
        """A command on a cluster (a script call, or one of :data:`STRAIGHT`) whose
        slot is ``key``'s: one packet on the shared connection of the node that owns
        it (:class:`~.pipes.NodePipe`), without the client's per-command machinery
        (which parses the slot of every key, resolves policies, records metrics and
        packs in Python: most of the client's time per call); the node's reply
        callback applies, as through the client. The trip's turn (:attr:`bounds`)
        was taken on that node. On a redirect or a failure (:data:`REROUTE`), or
        where the slot map does not say, the command goes through the client."""
        node = self.owner(key) if _DIRECT_NODES and key is not None else None
        pipe = None if node is None else self.pipes.get(node.name)
        if node is not None and (pipe is None or pipe.node is not node):
            pipe = self.pipes[node.name] = NodePipe(node)  # a node new to the map
        if pipe is None or not pipe.usable():
            return await self.client.execute_command(*args)
        packet = _pack([args], pipe.encoder)
        try:
            reply = await (pipe.send(packet) or pipe.call(packet))
        except REROUTE:
            return await self.client.execute_command(*args)
        callback = pipe.node.response_callbacks.get(args[0])
        return callback(reply) if callback is not None else reply

    async def direct(self, *args: Any) -> Any:
        """A script call on a single-endpoint client: one packet on the connection
        the calls in flight share (:class:`~.pipes.NodePipe`), or, where that
        connection failed or none is free, on a connection of its own."""
        pipe = self.burst()
        if pipe is None:
            return await self.alone(*args)
        packet = _pack([args], pipe.encoder)
        try:
            return await (pipe.send(packet) or pipe.call(packet))
        except REROUTE:
            return await self.alone(*args)

    in_flight = 0
    """Calls on connections of their own (:meth:`alone`) awaiting their replies."""

    def burst(self) -> NodePipe | None:
        """The single endpoint's shared connection, where a call should join it: it
        is usable and calls are in flight (a call alone is cheaper on a connection
        of its own than as a burst of one)."""
        pipe = self.single_pipe
        if pipe is None or not pipe.usable() or (pipe.conn is None and not self.in_flight):
            return None
        return pipe

    async def alone(self, *args: Any) -> Any:
        """As SyncShell.direct."""
        (reply,) = await self.on_own_connection(lambda encoder: _pack([args], encoder), 1)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def on_own_connection(
        self, packet: Callable[[Any], list[bytes]], replies: int
    ) -> list[Any]:
        """The ``replies`` replies (error replies as exceptions, which leave the
        connection in step) to ``packet(encoder)``, on a connection of the pool's
        own; one that failed otherwise, or whose call was cancelled, is dropped."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        self.in_flight += 1
        try:
            await _send(conn, packet(conn.encoder))
            return [await _areply(conn) for _ in range(replies)]
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            self.in_flight -= 1
            await pool.release(conn)

    async def transaction(self, calls: Sequence[Command]) -> list[Any]:
        """As SyncShell.transaction: on the connection the calls in flight share
        (as :meth:`direct`), or alone on a connection of its own."""
        count = len(calls) + 2
        pipe = self.burst()
        if pipe is not None:
            packet = self.multi_packet(calls, pipe.encoder)
            try:
                shared = await (pipe.send(packet, count) or pipe.call(packet, count))
            except REROUTE:  # the shared connection failed: nothing says it ran
                shared = None
            if shared is not None:
                return self.executed(shared)
        own = await self.on_own_connection(lambda e: self.multi_packet(calls, e), count)
        return self.executed(own)


async def _send(conn: Any, packet: list[bytes]) -> None:
    """``conn.send_packed_command(packet)`` without its ``asyncio.wait_for`` where the
    packet goes to the socket at once: with a socket timeout set, the wait_for costs
    a task, a timer and two turns of the event loop per call (as much CPU as the rest
    of the round trip). The timeout guards a write that has to wait for the socket to
    drain, so such a write still waits under it; a connection not open yet, or one
    with health checks, goes through redis-py. Failures are raised as redis-py raises
    them, the connection dropped."""
    writer = getattr(conn, "_writer", None)
    if writer is None or not conn.is_connected or conn.health_check_interval:
        await conn.send_packed_command(packet)
        return
    try:
        writer.writelines(packet)
        if writer.transport.get_write_buffer_size():  # the socket took only part of it
            await asyncio.wait_for(writer.drain(), conn.socket_timeout)
        else:
            await writer.drain()  # raises at once if the connection was lost
    except asyncio.TimeoutError:
        await conn.disconnect(nowait=True)
        raise TimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        await conn.disconnect(nowait=True)
        raise ConnectionError(f"Error while writing to socket: {exc}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)
        raise

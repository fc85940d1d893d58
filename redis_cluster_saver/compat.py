"""What differs between the redis-py versions the package allows (``redis>=6.3,<9``).

The saver reaches past redis-py's public client API in a few places for speed (its
pools lend the last connection straight back; the asyncio shell shares a node's
connection): those places ask here rather than assume one version's internals.
Each answer is found by feature, once, not by version number; the compatibility
job of ``make test`` runs the suite on the oldest redis-py declared and on a 7.x.

- ``should_reconnect()`` arrived in 7.0 (connections a maintenance notification or
  a topology change marks stale); before it no connection is ever so marked.
- The sync ``Connection.is_connected`` property arrived in 8.0; before it a
  connection is open while it holds a socket (``_sock``), as 8.x's property reads.
- ``ClusterNode.get_encoder()`` (asyncio) arrived in 8.0; before it a node's
  connections encode as its ``connection_kwargs`` say.
- ``BlockingConnectionPool.disconnect(inuse_connections=...)`` arrived in 7.0; redis-py's
  Sentinel pool passes it when the primary moved (a TypeError on 6.x).
- redis-py 6.x lets a read of a socket closed under it escape as Python's
  ``ValueError: I/O operation on closed file`` rather than a ConnectionError.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis
from redis._parsers.encoders import Encoder

POOL_DROPS_IDLE = (
    "inuse_connections" in inspect.signature(redis.BlockingConnectionPool.disconnect).parameters
)
"""Whether redis-py's blocking pool can drop only its idle connections."""


def should_reconnect(conn: Any) -> bool:
    """Whether redis-py marked ``conn`` to be dropped before its next use."""
    marked = getattr(conn, "should_reconnect", None)
    return bool(marked()) if marked is not None else False


def is_connected(conn: Any) -> bool:
    """Whether ``conn`` (sync or asyncio) holds an open socket."""
    try:
        return bool(conn.is_connected)
    except AttributeError:  # a sync connection of redis-py before 8.0
        return getattr(conn, "_sock", None) is not None


def encoder_of(node: Any) -> Any:
    """How the connections of an asyncio cluster node (or a pool) encode text."""
    own = getattr(node, "get_encoder", None)
    if own is not None:
        return own()
    kwargs = node.connection_kwargs
    return Encoder(  # type: ignore[no-untyped-call]
        kwargs.get("encoding", "utf-8"),
        kwargs.get("encoding_errors", "strict"),
        kwargs.get("decode_responses", False),
    )


def closed_under(exc: BaseException) -> bool:
    """A ValueError that stands for a connection closed under a read (redis-py 6.x)."""
    return isinstance(exc, ValueError) and "closed file" in str(exc)

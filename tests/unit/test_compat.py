"""The redis-py internals the saver leans on, asked of the redis-py installed: the
compatibility job runs these on the oldest redis-py declared and on a 7.x."""

from __future__ import annotations

import redis
import redis.asyncio.cluster

from redis_cluster_saver import compat, shells
from redis_cluster_saver.pipes import NodePipe
from redis_cluster_saver.pool import QueuedPool


def test_a_new_connection_is_neither_open_nor_marked_stale() -> None:
    for conn in (redis.Connection(), redis.asyncio.Connection()):
        assert compat.is_connected(conn) is False
        assert compat.should_reconnect(conn) is False


def test_a_queued_pool_gives_lent_connections_back_and_drops_idle_ones() -> None:
    pool = QueuedPool(host="127.0.0.1", port=1, max_connections=2, timeout=0.1)
    conn = pool.make_connection()  # type: ignore[no-untyped-call]
    pool.release(conn)  # kept aside for the next caller
    pool.disconnect(inuse_connections=False)  # as redis-py's Sentinel pool asks
    pool.disconnect()
    assert not pool._kept


def test_asyncio_cluster_calls_can_go_straight_to_their_node() -> None:
    node = redis.asyncio.cluster.ClusterNode("127.0.0.1", 1)
    assert shells._DIRECT_NODES
    pipe = NodePipe(node)
    assert (pipe.encoder.encoding, pipe.encoder.encoding_errors) == ("utf-8", "strict")
    assert pipe.usable()


def test_a_socket_closed_under_a_read_is_told_apart() -> None:
    assert compat.closed_under(ValueError("I/O operation on closed file."))
    assert not compat.closed_under(ValueError("invalid literal"))
    assert not compat.closed_under(OSError("I/O operation on closed file."))

"""Errors the saver raises on its own account (Redis errors pass through as they are)."""

from __future__ import annotations

from redis.exceptions import ConnectionError, MaxConnectionsError, RedisError


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

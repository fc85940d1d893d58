"""What went wrong, in the saver's own terms: one table sorts redis-py's exceptions
(and a few server error texts redis-py has no class for) into the kinds of failure the
retry policy (retry.py) acts on. Anything the table does not name reaches the caller.
"""

from __future__ import annotations

from enum import Enum

from redis.exceptions import (
    AskError,
    ClusterError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from .errors import pool_exhausted


class Failure(str, Enum):
    LOST = "lost connection"
    """The server stopped answering on a connection: a failover, a restart, or a proxy
    that closes the connection on what it refuses (the detector tells which)."""
    MOVING = "slot in motion"
    """The topology changes under the call: MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a
    replica answering READONLY after a failover, a script meeting a moving slot."""
    REFUSED = "refused"
    """The server (an ACL, a proxy) refuses a command a mode needs."""


NOT_RETRIED: tuple[type[BaseException], ...] = (TimeoutError, OutOfMemoryError)
"""Checked first: a stalled server gets a clear error, not a longer wait; a server
out of memory is no refusal (its text says "not allowed", and a script's names the
script), and probing it again would take MULTI, refused for want of memory, for
MULTI refused for good."""
BY_CLASS: tuple[tuple[type[BaseException], Failure], ...] = (
    (ConnectionError, Failure.LOST),
    (TryAgainError, Failure.MOVING),
    (AskError, Failure.MOVING),  # MovedError is one
    (ClusterError, Failure.MOVING),  # ClusterDownError is one
    (ReadOnlyError, Failure.MOVING),
    (RedisClusterException, Failure.MOVING),
)
BY_TEXT: tuple[tuple[str, Failure], ...] = (
    ("non local key", Failure.MOVING),  # a script met a key of a slot being moved
    ("cluster is down", Failure.MOVING),
    ("multi", Failure.REFUSED),
    ("exec", Failure.REFUSED),
    ("eval", Failure.REFUSED),
    ("script", Failure.REFUSED),
    ("not allowed", Failure.REFUSED),
    ("unknown command", Failure.REFUSED),
    ("noperm", Failure.REFUSED),
    ("crossslot", Failure.REFUSED),
)
"""Error replies redis-py raises as a plain ResponseError, by what their text holds,
first match wins (the moving slot before the refusal words it also contains)."""


def classify(exc: BaseException) -> Failure | None:
    """The kind of failure, or None for one that is not retried: a timeout, a full
    connection pool (redis-py raises it as a ConnectionError, but it is the client's
    own limit), or any other error."""
    if isinstance(exc, NOT_RETRIED) or pool_exhausted(exc):
        return None
    for kind, failure in BY_CLASS:
        if isinstance(exc, kind):
            return failure
    if isinstance(exc, ResponseError):
        text = str(exc).lower()
        for words, failure in BY_TEXT:
            if words in text:
                return failure
    return None

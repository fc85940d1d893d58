"""What went wrong, in the saver's own terms: one table sorts redis-py's exceptions
(and a few server error texts redis-py has no class for) into the kinds of failure the
retry policy (retry.py) acts on. Anything the table does not name reaches the caller.
A slot still in motion when the wait is over is told apart from a failover (a migration
left half done), and named from the error or the keys of the trip that met it.
"""

from __future__ import annotations

import re
from enum import Enum

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    ConnectionError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from .errors import SlotMigrationError, pool_exhausted
from .plan import Command, RoundTrip, keys_of


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
STATE_CODES = ("NOREPLICAS", "MASTERDOWN", "BUSY")
"""Error codes by which a server refuses any write, or any command, for its state: too
few replicas in sync (``min-replicas-to-write``), a replica cut off from its primary, a
script running too long. None of them refuses a command the saver's mode needs, and
none is a failover: the caller gets them at once, and the mode stays."""


_STATE_REPLY = re.compile(
    r"(?:^|of pipeline caused error: \(['\"])(?:" + "|".join(STATE_CODES) + ") "
)
"""A state code opening the server's reply, or the reply redis-py's asyncio pipeline
quotes ("Command # 1 (SET ...) of pipeline caused error: ('NOREPLICAS ...',)"); never
a word of the command's own arguments, which that quote also carries."""


def refused_for_state(exc: BaseException) -> bool:
    """A refusal for the server's state (see STATE_CODES), however it came: as its own
    reply, or inside a script's error or a transaction's."""
    if isinstance(exc, MasterDownError):
        return True
    if not isinstance(exc, ResponseError):
        return False
    return _STATE_REPLY.search(str(exc)) is not None


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
    own limit), a refusal for the server's state, or any other error."""
    if isinstance(exc, NOT_RETRIED) or pool_exhausted(exc) or refused_for_state(exc):
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


MIGRATING_TEXT = ("non local key", "ttl exhausted")
"""What a slot migration left half done keeps raising, besides ASK (MOVED is one) and
TRYAGAIN: a script meeting a key moved to the importing node, and redis-py's cluster
client out of redirections ("TTL exhausted"). Not CLUSTERDOWN or READONLY: those
are failovers."""


def migrating(exc: BaseException) -> bool:
    """A failure that a slot in motion between two nodes causes."""
    if isinstance(exc, (TryAgainError, AskError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, (ClusterError, ResponseError)) and any(
        words in text for words in MIGRATING_TEXT
    )


def _trip_keys(trip: RoundTrip) -> list[str]:
    keys: list[str] = []
    for call in trip.calls:
        if not isinstance(call, Command):
            keys += keys_of(call)
        elif call.route is not None:
            keys.append(call.route)
        elif not call.anywhere and len(call.args) > 1:
            keys += keys_of(call)
    return keys


def slots_in_motion(exc: BaseException, trip: RoundTrip | None) -> tuple[int, ...]:
    """The slot a migration failure names (ASK and MOVED carry it), else the slots
    of the keys of the trip it came back from (all one thread's, but for
    operations across threads)."""
    if isinstance(exc, AskError):
        return (exc.slot_id,)
    keys = _trip_keys(trip) if trip is not None else []
    return tuple(sorted({key_slot(k.encode()) for k in keys}))


def stalled(exc: BaseException, trip: RoundTrip | None, waited: float) -> SlotMigrationError | None:
    """The clear error for a slot that stayed in motion all of ``failover_wait``
    (``exc``, met by ``trip``), or None if ``exc`` is no migration's."""
    if not migrating(exc):
        return None
    node = f"{exc.host}:{exc.port}" if isinstance(exc, AskError) else None
    return SlotMigrationError(slots_in_motion(exc, trip), waited, node, exc)

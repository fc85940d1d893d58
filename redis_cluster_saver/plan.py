"""The vocabulary of plans: commands, script calls and round trips.

A plan is a generator that yields :class:`RoundTrip` objects and receives each
trip's replies (one per call, in order); its return value is the operation's
result. Plans never touch a socket, so the sync and async shells share them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


class WriteMode(str, Enum):
    """What a given server allows for atomic trips (writes); :mod:`.lowering` decides
    from it what goes on the wire.

    ``transaction``: MULTI/EXEC runs on one slot (the default). Each write is then one
    same-slot APPLY script where scripts also run (as atomic, one command on the
    wire), and MULTI/EXEC where they are refused.
    ``script``: where MULTI is refused but EVAL works (strict proxies), each write is
    one same-slot script, so it stays atomic.
    ``per_key``: where both are refused, plain commands in an order that never
    exposes a half-written checkpoint, a task's writes in one command.

    Reads are decided apart (:attr:`Mode.scripts`): a server may allow MULTI and
    refuse Lua (an ACL with ``-@scripting``).
    """

    TRANSACTION = "transaction"
    SCRIPT = "script"
    PER_KEY = "per_key"


@dataclass
class Mode:
    """The write and read modes one saver's plans and shell share; it can change at run
    time when a refusal first appears."""

    writes: WriteMode = WriteMode.TRANSACTION
    scripts: bool = True
    """Reads and maintenance run as same-slot scripts (else as plain-command plans,
    and list deltas, whose precondition needs a script, are off)."""
    one_endpoint: bool = False
    """The client talks to one endpoint (not a cluster client; its shell sets this):
    a write of plain commands then goes as MULTI/EXEC where MULTI runs, even where
    scripts run too. One packet either way, and the server spends less on it than on
    APPLY (a put_writes: 26 against 67 us of server CPU on valkey 9.1)."""


Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script body with its SHA1, so shells can EVALSHA and fall back to EVAL."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class Command:
    """One Redis command, sent as-is."""

    args: tuple[Arg, ...]
    anywhere: bool = False
    """Keyless: any node may answer it (a cluster client needs to be told)."""
    route: str | None = None
    """Send to the node owning this key (for module commands a cluster client
    does not know how to route)."""
    publishes: bool = False
    """Makes what the other commands of its atomic trip wrote visible (a registry
    entry). Where writes have no transaction (per-key mode) it goes in a trip of its
    own, once all of those succeeded (see ``Session._atomic``)."""

    @classmethod
    def of(cls, *args: Arg) -> Command:
        return cls(args)

    @classmethod
    def keyless(cls, *args: Arg) -> Command:
        return cls(args, anywhere=True)

    @classmethod
    def routed(cls, key: str, *args: Arg) -> Command:
        return cls(args, route=key)

    @classmethod
    def publishing(cls, *args: Arg) -> Command:
        return cls(args, publishes=True)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A script run with declared keys (all of one slot) and arguments."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Require:
    """A precondition of an atomic trip: these fields of a hash exist. Where one is
    missing, nothing of the trip is applied, and the trip's first reply is the list
    of missing fields instead. Only a script can check it, so a trip holding one
    goes as a script, whatever the mode (plans never send one where scripts are
    refused)."""

    key: str
    fields: tuple[str, ...]


Call = Command | ScriptCall | Require

KEYS_FROM_FIRST = frozenset({"DEL", "EXISTS", "UNLINK"})
"""Commands whose every argument is a key; the others here name one key first."""


def keys_of(call: Call) -> tuple[str, ...]:
    """The keys a call touches, as a script or transaction must declare them."""
    if isinstance(call, Command):
        args = call.args
        if args[0] in KEYS_FROM_FIRST or str(args[0]).upper() in KEYS_FROM_FIRST:
            return tuple(str(k) for k in args[1:])
        return (str(args[1]),)
    if isinstance(call, ScriptCall):
        return call.keys
    return (call.key,)


def refused(calls: tuple[Call, ...] | list[Call], replies: list[Any]) -> list[str]:
    """The fields a trip's precondition found missing (nothing was applied), or []."""
    if calls and isinstance(calls[0], Require) and isinstance(replies[0], list):
        return [f.decode() if isinstance(f, bytes) else str(f) for f in replies[0]]
    return []


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """Calls sent together. ``atomic`` trips run as one APPLY script or MULTI/EXEC
    where the server allows one (see :mod:`.lowering`).

    Calls in an atomic trip are ordered so that running them one by one (where a
    proxy forbids MULTI) never exposes a half-written checkpoint: data first, the
    registry entry that publishes it last. Plans do not read the replies of atomic
    trips: their shape depends on how the trip was carried out.
    """

    calls: tuple[Call, ...]
    atomic: bool = False
    force_multi: bool = False
    """Send as MULTI/EXEC whatever the write mode (the detector's probe)."""
    pause: float = 0.0
    """A trip with no calls that only waits (plans cannot sleep themselves)."""
    wait: tuple[int, int] | None = None
    """Durable write: end the trip with WAIT (replicas, timeout ms) on the same
    connection; its reply comes last."""


Plan = Generator[RoundTrip, list[Any], T]


def one(call: Call) -> RoundTrip:
    return RoundTrip((call,))


def pause(seconds: float) -> RoundTrip:
    return RoundTrip((), pause=seconds)

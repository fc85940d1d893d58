"""The vocabulary of plans: commands, script calls and round trips.

A plan is a generator that yields :class:`RoundTrip` objects and receives each
trip's replies (one per call, in order); its return value is the operation's
result. Plans never touch a socket, so the sync and async shells share them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
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

    @classmethod
    def of(cls, *args: Arg) -> Command:
        return cls(args)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A script run with declared keys (all of one slot) and arguments."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


Call = Command | ScriptCall


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """Calls sent together. ``atomic`` trips run as one MULTI/EXEC where allowed.

    Calls in an atomic trip are ordered so that running them one by one (where a
    proxy forbids MULTI) never exposes a half-written checkpoint: data first, the
    registry entry that publishes it last.
    """

    calls: tuple[Call, ...]
    atomic: bool = False


Plan = Generator[RoundTrip, list[Any], T]


def one(call: Call) -> RoundTrip:
    return RoundTrip((call,))

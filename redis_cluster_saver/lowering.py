"""How a round trip goes on the wire, for the current mode: decided here, once.

A plan's trip says what must happen together (``atomic``, a precondition, a WAIT);
:func:`lower` turns it into the exact calls to send and the shape to send them in,
and :meth:`Lowered.replies` turns what came back into one reply per call of the
trip. Both shells send the same calls for the same trip and mode; they only know how
to put a shape on their client (one command, a pipeline, MULTI/EXEC on a node).

The rule for an atomic trip of several calls: one APPLY script wherever scripts run
(as atomic as MULTI/EXEC, one command on the wire, and the only way to check a
precondition), but MULTI/EXEC for plain commands on one endpoint where MULTI runs
(cheaper for the server); MULTI/EXEC where only transactions run; its plain commands
in their order where neither does (the plans order them so that none exposes a
half-written checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import codec, scripts
from .plan import Arg, Call, Command, Mode, Require, RoundTrip, ScriptCall, WriteMode, keys_of

SPLIT = {"HSET": 2, "ZADD": 2, "DEL": 1}
"""Commands whose arguments may go to APPLY in pieces (field/value pairs, members):
Lua's ``unpack()`` takes a few thousand values at most."""
CHUNK = 1000
"""Pairs (or keys) per piece."""
PSEUDO = {scripts.TOUCH: "__touch__", scripts.RETAIN: "__retain__"}
"""Scripts APPLY runs inline, as its pseudo commands."""
STRAIGHT = frozenset({"SADD", "SREM", "PEXPIRE"})
"""Writes of one key (named first) that a plan sends alone, routed by that key (the
hot one: SADD, a new thread's directory entry). Reads are left to the client, which
may send them to replicas."""


class Shape(Enum):
    """How a lowered trip's calls go out."""

    PAUSE = "pause"
    """No calls: the plan waits ``Lowered.pause`` seconds."""
    ONE = "one"
    """One command, or one script call (EVALSHA, then EVAL if the server lacks it)."""
    PIPELINE = "pipeline"
    """Several commands in one packet, not atomic."""
    TRANSACTION = "transaction"
    """The commands inside MULTI/EXEC, on the node that owns their slot."""
    NODE = "node"
    """Commands in one packet on one connection to the node that owns ``route``'s
    slot, replies in order (a durable write: the write, then WAIT for replicas)."""


@dataclass(frozen=True, slots=True)
class Lowered:
    """A trip as the shells send it.

    ``calls`` are exact, and plain commands: a script in a batch rides as EVAL (a
    NOSCRIPT there would fail one command of a transaction while the rest commit).
    A ONE trip's call is ``one``, a script call sent as EVALSHA. ``route`` is the key
    whose slot's primary takes the calls on a cluster (None for ONE: the client
    routes it, and may send a read to a replica)."""

    shape: Shape
    calls: tuple[Command, ...] = ()
    one: Command | ScriptCall | None = None
    route: str | None = None
    pause: float = 0.0
    pieces: tuple[int, ...] | None = None
    """For a trip sent as one APPLY call: how many of the script's commands each call
    of the trip became (the script answers per command, packed)."""

    def replies(self, raw: Sequence[Any]) -> list[Any]:
        """One reply per call of the trip, from the replies to the calls sent. An
        error inside EXEC's reply is raised (redis-py raises the first of a
        transaction's); a durable trip ends with WAIT's reply."""
        if self.shape is Shape.NODE:
            body, wait = list(raw[:-1]), raw[-1]
            return [*self._written(body), wait]
        return self._written(list(raw))

    def _written(self, raw: list[Any]) -> list[Any]:
        if self.pieces is not None:
            return _per_call(codec.reply(raw[0]), self.pieces)
        if self.calls and self.calls[0].args == ("MULTI",):
            executed = raw[-1]
            for item in executed:
                if isinstance(item, Exception):
                    raise item
            return list(executed)
        return raw


def lower(trip: RoundTrip, mode: Mode) -> Lowered:
    """The calls ``trip`` comes down to in ``mode``."""
    if not trip.calls:
        return Lowered(Shape.PAUSE, pause=trip.pause)
    if trip.wait is not None:
        return _durable(trip, mode)
    if len(trip.calls) == 1 and not isinstance(trip.calls[0], Require):
        call = trip.calls[0]
        return Lowered(Shape.ONE, one=call, route=_route(call))
    if trip.force_multi:
        return Lowered(Shape.TRANSACTION, _batch(trip.calls))
    if trip.atomic:
        how = _atomic_shape(trip, mode)
        if how is Shape.ONE:
            script, pieces = as_script(trip)
            return Lowered(Shape.ONE, one=script, route=_route(script), pieces=pieces)
        return Lowered(how, _batch(trip.calls))
    return Lowered(Shape.PIPELINE, _batch(trip.calls))


def _atomic_shape(trip: RoundTrip, mode: Mode) -> Shape:
    if _scripted(trip, mode):
        return Shape.ONE
    if mode.writes is WriteMode.TRANSACTION:
        return Shape.TRANSACTION
    return Shape.PIPELINE


def _scripted(trip: RoundTrip, mode: Mode) -> bool:
    """The atomic trip goes as one APPLY script (see the module's docstring); on one
    endpoint a trip of plain commands goes as MULTI/EXEC where that runs (cheaper for
    the server; a cluster client keeps APPLY, which declares every key to a slot in
    motion)."""
    if any(isinstance(c, Require) for c in trip.calls):
        return True
    if mode.writes is WriteMode.SCRIPT:
        return True
    if not (mode.scripts and mode.writes is WriteMode.TRANSACTION):
        return False
    return not (mode.one_endpoint and all(isinstance(c, Command) for c in trip.calls))


def _durable(trip: RoundTrip, mode: Mode) -> Lowered:
    """The write, then WAIT, on one connection: WAIT counts the replicas that took
    this connection's writes (and inside MULTI it does not wait)."""
    assert trip.wait is not None
    replicas, timeout = trip.wait
    key = keys_of(trip.calls[0])[0]
    wait = Command.of("WAIT", replicas, timeout)
    if _scripted(trip, mode):
        script, pieces = as_script(trip)
        return Lowered(Shape.NODE, (_as_eval(script), wait), route=key, pieces=pieces)
    body = _batch(trip.calls)
    if mode.writes is WriteMode.TRANSACTION:
        body = (Command.of("MULTI"), *body, Command.of("EXEC"))
    return Lowered(Shape.NODE, (*body, wait), route=key)


def _route(call: Command | ScriptCall) -> str | None:
    if isinstance(call, ScriptCall):
        return call.keys[0] if call.keys else None
    plain = call.route is None and not call.anywhere
    return str(call.args[1]) if plain and str(call.args[0]) in STRAIGHT else None


def _batch(calls: Sequence[Call]) -> tuple[Command, ...]:
    out: list[Command] = []
    for call in calls:
        if isinstance(call, Require):
            raise ValueError("a precondition is checked by a script: its trip goes as one")
        out.append(call if isinstance(call, Command) else _as_eval(call))
    return tuple(out)


def _as_eval(call: ScriptCall) -> Command:
    return Command(eval_args(call))


def evalsha_args(call: ScriptCall) -> tuple[Arg, ...]:
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def eval_args(call: ScriptCall) -> tuple[Arg, ...]:
    return ("EVAL", call.script.source, len(call.keys), *call.keys, *call.args)


def chunks(args: tuple[Arg, ...]) -> list[tuple[Arg, ...]]:
    """A command for APPLY, in pieces short enough for Lua's ``unpack()``."""
    step = SPLIT.get(str(args[0]).upper())
    if step is None or len(args) <= 2 + CHUNK * step:
        return [args]
    head, rest = args[:2], args[2:]
    size = CHUNK * step
    return [head + rest[i : i + size] for i in range(0, len(rest), size)]


def as_script(trip: RoundTrip) -> tuple[ScriptCall, tuple[int, ...]]:
    """An atomic trip as one APPLY call that declares every key its commands touch
    (all one slot), so that while the slot moves the server answers ASK or TRYAGAIN
    before running it, and never runs it half on each side; and how many of APPLY's
    commands each call became."""
    argv: list[Arg] = []
    declared: dict[str, None] = {}
    pieces: list[int] = []
    script = scripts.APPLY_PLAIN
    for call in trip.calls:
        for key in keys_of(call):
            declared[key] = None
        if isinstance(call, Command):
            parts = chunks(call.args)
        elif isinstance(call, Require):
            parts = [("__require__", call.key, *call.fields)]
        else:
            name = PSEUDO.get(call.script)
            if name is None:
                raise ValueError(f"APPLY cannot run the {call.script.name!r} script inline")
            parts = [(name, *call.args)]
            script = scripts.APPLY  # with the helpers the pseudo commands run
        pieces.append(len(parts))
        for part in parts:
            argv.append(len(part))
            argv += part
    return ScriptCall(script, tuple(declared), tuple(argv)), tuple(pieces)


def _per_call(replies: Any, pieces: tuple[int, ...]) -> list[Any]:
    """APPLY's replies, one per command it ran, as one per call of the trip (a call
    sent in pieces answers with its last piece's reply). A refused precondition
    answers with the missing fields alone: passed on as it came."""
    each: list[Any] = list(replies)
    if len(each) != sum(pieces):
        return each
    out: list[Any] = []
    at = 0
    for n in pieces:
        at += n
        out.append(each[at - 1])
    return out

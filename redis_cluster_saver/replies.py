"""What read scripts and their plain-command twins answer, as typed records.

A script answers with nested arrays (the read script packs them with cmsgpack); the
per-key plans build the same records directly. :func:`decode` is the one step from a
script's raw answer to these types, so no caller unpacks a list by position, and a
missing value is ``None`` whichever side it came from (Lua's ``nil`` arrives as
``False``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

Flat = list[bytes]
"""A hash as its fields and values in turn, as HGETALL answers."""


class Fields(NamedTuple):
    """The checkpoint hash fields a read loads (codec.READ_FIELDS, in order)."""

    checkpoint: bytes
    type: bytes
    parent: bytes
    v: bytes | None
    blobs: bytes | None
    """The blob fields the checkpoint uses, newline-separated."""
    meta: bytes


class Entry(NamedTuple):
    """One checkpoint read: its fields, pending writes and channel values."""

    ns: bytes
    id: bytes
    fields: Fields
    writes: Flat
    values: list[bytes | None]
    """One frame per field of ``fields.blobs``; None where no value is stored."""
    parent_writes: Flat
    """The parent's writes, for checkpoints before format v4 (their Send packets)."""
    bases: Flat
    """Delta bases (field, frame) this reply carries; any entry of a reply may carry
    the bases another of the same namespace needs."""


class Listed(NamedTuple):
    """A checkpoint found by a read that answers ids only."""

    ns: bytes
    id: bytes


class Ancestor(NamedTuple):
    """One step up the parent chain (the history script)."""

    id: bytes
    writes: Flat
    seeds: Flat
    """(channel, frame) of the channels whose stored value this ancestor holds."""
    bases: Flat


class ExportedCheckpoint(NamedTuple):
    id: bytes
    checkpoint: Flat
    writes: Flat


class ExportedNamespace(NamedTuple):
    """A namespace of a thread, whole (the export script, for copy_thread)."""

    ns: bytes
    blobs: Flat
    checkpoints: list[ExportedCheckpoint]


def _none(value: Any) -> Any:
    return None if value is False else value


def entry(raw: Any) -> Entry:
    ns, cid, fields, writes, values, parent_writes, bases = raw
    return Entry(
        ns,
        cid,
        Fields(*map(_none, fields)),
        list(writes),
        [_none(v) for v in values],
        list(parent_writes),
        list(bases),
    )


def entries(raw: Any) -> list[Entry]:
    return [entry(e) for e in raw]


def listed(raw: Any) -> list[Listed]:
    return [Listed(ns, cid) for ns, cid in raw]


def ancestors(raw: Any) -> list[Ancestor]:
    return [Ancestor(cid, list(w), list(s), list(b)) for cid, w, s, b in raw]


def exported(raw: Any) -> list[ExportedNamespace]:
    return [
        ExportedNamespace(ns, list(blobs), [ExportedCheckpoint(*c) for c in checkpoints])
        for ns, blobs, checkpoints in raw
    ]


def _same(raw: Any) -> Any:
    return raw


def decode(script: str, raw: Any, ids_only: bool = False) -> Any:
    """A script's raw answer as its records (counts and flags pass as they are)."""
    if script == "read":
        return listed(raw) if ids_only else entries(raw)
    return DECODERS.get(script, _same)(raw)


DECODERS: dict[str, Callable[[Any], Any]] = {"history": ancestors, "export": exported}

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
    held: bytes | None
    """One flag per field of ``blobs``: ``1`` where this checkpoint's put stored that
    value, so it must be there (None: written before the flags, nothing known)."""


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


class Missing(NamedTuple):
    """A checkpoint the registry lists whose hash is gone (a read answers it where it
    would answer an Entry or a Listed): a deletion in flight, or a damaged thread."""

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


def _gone(raw: Any) -> bool:
    """The scripts answer a gone checkpoint as ``{ns, id, false}``."""
    return len(raw) == 3 and raw[2] is False


def entry(raw: Any) -> Entry | Missing:
    if _gone(raw):
        return Missing(raw[0], raw[1])
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


def entries(raw: Any) -> list[Entry | Missing]:
    return [entry(e) for e in raw]


def listed(raw: Any) -> list[Listed | Missing]:
    return [Missing(e[0], e[1]) if _gone(e) else Listed(e[0], e[1]) for e in raw]


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

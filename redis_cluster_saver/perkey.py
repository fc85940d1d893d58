"""Plans that do what each script does, with plain commands only.

For servers and proxies that refuse scripts: the same replies as the scripts in
``scripts.py``, so every operation works unchanged, at the price of a few more
round trips. Deletions go child data first and registry entry last, so an
interrupted run never leaves a listed checkpoint half-gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from . import codec, deltas
from .keys import ThreadKeys, escape, unescape
from .plan import Command, Plan, RoundTrip, ScriptCall, one
from .replies import (
    Ancestor,
    Entry,
    ExportedCheckpoint,
    ExportedNamespace,
    Fields,
    Listed,
    Missing,
)

BATCH = 64


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _trip(*calls: Command) -> RoundTrip:
    return RoundTrip(tuple(calls))


def _namespaces(keys: ThreadKeys) -> Plan[list[str]]:
    (members,) = yield one(Command.of("SMEMBERS", keys.namespaces))
    return sorted(_s(m) for m in members)


def _ids(keys: ThreadKeys, ns: str, newest_first: bool = False) -> Plan[list[str]]:
    cmd = (
        ("ZREVRANGEBYLEX", keys.registry(ns), "+", "-")
        if newest_first
        else ("ZRANGEBYLEX", keys.registry(ns), "-", "+")
    )
    (ids,) = yield one(Command(cmd))
    return [_s(i) for i in ids]


def _flat(mapping: Any) -> list[bytes]:
    out: list[bytes] = []
    for k, v in codec.pairs(mapping).items():
        out += (_b(k), _b(v))
    return out


def _bases(keys: ThreadKeys, ns: str, frames: Sequence[Any], seen: set[bytes]) -> Plan[list[bytes]]:
    """(field, value) pairs of the delta bases ``frames`` need and ``seen`` lacks,
    one round trip per level of the chains."""
    out: list[bytes] = []
    wanted = [b for f in frames if f and (b := deltas.base_of(f)) is not None]
    for _ in range(deltas.MAX_WALK):
        wanted = [b for b in dict.fromkeys(wanted) if b not in seen]
        if not wanted:
            break
        seen.update(wanted)
        (values,) = yield one(Command(("HMGET", keys.blobs(ns), *wanted)))
        found = [(f, v) for f, v in zip(wanted, values) if v is not None]
        for f, v in found:
            out += (f, v)
        wanted = [b for _, v in found if (b := deltas.base_of(v)) is not None]
    return out


def _checkpoints(
    keys: ThreadKeys, ns: str, ids: Sequence[str]
) -> Plan[list[tuple[str, dict[bytes, bytes], Any]]]:
    """(id, checkpoint hash, writes hash) of the ids still stored, in one trip."""
    calls: list[Command] = []
    for cid in ids:
        calls += [
            Command.of("HGETALL", keys.checkpoint(ns, cid)),
            Command.of("HGETALL", keys.writes(ns, cid)),
        ]
    replies = yield RoundTrip(tuple(calls))
    found = []
    for cid, cp, writes in zip(ids, replies[::2], replies[1::2], strict=True):
        if cp:
            found.append((cid, codec.pairs(cp), writes))
    return found


def _values_and_parents(
    keys: ThreadKeys, ns: str, found: Sequence[tuple[str, dict[bytes, bytes], Any]]
) -> Plan[list[tuple[list[Any], Any]]]:
    """(channel values, parent writes before format v4) of each checkpoint, in one trip."""
    follow: list[Command] = []
    where: list[tuple[int | None, int | None]] = []
    for _, cp, _ in found:
        names = [n for n in cp[b"blobs"].split(b"\n") if n] if cp.get(b"blobs") else []
        vi = pi = None
        if names:
            vi = len(follow)
            follow.append(Command(("HMGET", keys.blobs(ns), *names)))
        if int(cp.get(b"v", b"4")) < 4 and cp.get(b"parent"):
            pi = len(follow)
            follow.append(Command.of("HGETALL", keys.writes(ns, _s(cp[b"parent"]))))
        where.append((vi, pi))
    more = (yield RoundTrip(tuple(follow))) if follow else []
    return [
        (more[vi] if vi is not None else [], more[pi] if pi is not None else {}) for vi, pi in where
    ]


def load_entries(
    keys: ThreadKeys, ns: str, ids: Sequence[str]
) -> Plan[tuple[list[tuple[Entry, dict[bytes, bytes]]], list[Missing]]]:
    """The read script's entries for these ids, each with its whole checkpoint hash
    (which filters read), the first carrying the delta bases of all; and the ids
    the registry still lists whose hash is gone (as the script answers them)."""
    if not ids:
        return [], []
    found = yield from _checkpoints(keys, ns, ids)
    here = {cid for cid, _, _ in found}
    absent = [cid for cid in ids if cid not in here]
    loaded = yield from _values_and_parents(keys, ns, found)
    rows = [
        Entry(
            ns.encode(),
            cid.encode(),
            Fields(*(cp.get(f.encode()) for f in codec.READ_FIELDS)),  # type: ignore[arg-type]
            _flat(writes),
            list(values),
            _flat(parent_writes),
            [],
        )
        for (cid, cp, writes), (values, parent_writes) in zip(found, loaded, strict=True)
    ]
    bases = yield from _bases(keys, ns, [v for row in rows for v in row.values], set())
    # Read last, after its values: a checkpoint still there was not deleted before
    # them (deletions drop the checkpoint first, its values after; a TTL sets them
    # all at once, the checkpoint first). One gone meanwhile is dropped, as if read
    # a moment later, never returned with its values missing. One gone before the
    # hash was read and still listed now is answered as the script answers it.
    checks = [Command.of("EXISTS", keys.checkpoint(ns, c)) for c, _, _ in found]
    checks += [Command.of("ZREVRANGEBYLEX", keys.registry(ns), f"[{c}", f"[{c}") for c in absent]
    replies = (yield RoundTrip(tuple(checks))) if checks else []
    alive, listed = replies[: len(found)], replies[len(found) :]
    gone = [Missing(ns.encode(), c.encode()) for c, n in zip(absent, listed) if n]
    kept = [(row, cp) for row, (_, cp, _), n in zip(rows, found, alive, strict=True) if n]
    return [
        (row._replace(bases=bases if i == 0 else []), cp) for i, (row, cp) in enumerate(kept)
    ], gone


def matches(cp: dict[bytes, bytes], filters: Sequence[tuple[bytes, bytes]]) -> bool:
    """The read script's test: stored ``m:`` fields and filter values are both
    canonical JSON (codec.dump_json), equal bytes exactly for equal values."""
    for field, want in filters:
        got = cp.get(field)
        if got != want and not (got is None and want == b"null"):
            return False
    return True


def read(call: ScriptCall) -> Plan[list[Entry | Missing] | list[Listed | Missing]]:
    base, mode, ttl, limit, before, want, n, *rest = call.args
    keys = ThreadKeys(_s(base))
    count, limit_n = int(n), int(limit)
    namespaces = [_s(x) for x in rest[:count]]
    filters = [(_b(rest[i]), _b(rest[i + 1])) for i in range(count, len(rest), 2)]
    if int(ttl) > 0:
        yield from touch(ScriptCall(call.script, call.keys, (base, ttl)))
    if not namespaces:
        namespaces = yield from _namespaces(keys)
    if mode == "id":
        out: list[Entry | Missing] = []
        for ns in namespaces:
            rows, gone = yield from load_entries(keys, ns, [_s(want)])
            out += [*(e for e, _ in rows), *gone]
        return out
    found: list[Entry | Missing] = []
    for ns in namespaces:
        found += yield from _newest(keys, ns, _s(before), limit_n, filters)
    if mode == "ids":
        return [e if isinstance(e, Missing) else Listed(e.ns, e.id) for e in found]
    return found


def _newest(
    keys: ThreadKeys, ns: str, before: str, limit: int, filters: Sequence[tuple[bytes, bytes]]
) -> Plan[list[Entry | Missing]]:
    """A namespace's checkpoints newest first that match ``filters`` (at most ``limit``,
    0: all), before ``before``; the first carries the delta bases all of them need.
    Listed ones whose hash is gone follow, uncounted (as the script answers them)."""
    upper = f"({before}" if before else "+"
    out: list[Entry] = []
    gone: list[Missing] = []  # listed, hash gone: answered whatever the filter
    carried: list[bytes] = []  # delta bases, whichever entry brought them
    # without a filter every checkpoint still stored counts: ask for no more than the
    # page (one gone meanwhile makes the loop ask again); with one, a batch
    while limit == 0 or len(out) < limit:
        want = min(BATCH, limit - len(out)) if limit and not filters else BATCH
        (ids,) = yield one(
            Command.of("ZREVRANGEBYLEX", keys.registry(ns), upper, "-", "LIMIT", 0, want)
        )
        rows, missing = yield from load_entries(keys, ns, [_s(i) for i in ids])
        gone += missing
        for entry, cp in rows:
            carried += entry.bases
            if matches(cp, filters) and (limit == 0 or len(out) < limit):
                out.append(entry._replace(bases=[]))
        if len(ids) < want:
            break
        upper = f"({_s(ids[-1])}"
    if out:
        out[0] = out[0]._replace(bases=carried)
    return [*out, *gone]


def touch(call: ScriptCall) -> Plan[int]:
    base, ttl = call.args[0], int(call.args[1])
    keys = ThreadKeys(_s(base))
    calls: list[Command] = []
    for ns in (yield from _namespaces(keys)):
        for cid in (yield from _ids(keys, ns)):
            calls += [
                Command.of("PEXPIRE", keys.checkpoint(ns, cid), ttl),
                Command.of("PEXPIRE", keys.writes(ns, cid), ttl),
            ]
        calls += [
            Command.of("PEXPIRE", keys.registry(ns), ttl),
            Command.of("PEXPIRE", keys.blobs(ns), ttl),
        ]
    (written,) = yield one(Command.of("SMEMBERS", keys.write_keys))
    calls += [Command.of("PEXPIRE", _s(w), ttl) for w in written]
    calls.append(Command.of("PEXPIRE", keys.write_keys, ttl))
    yield RoundTrip((*calls, Command.of("PEXPIRE", keys.namespaces, ttl)))
    return 1


def _drop(keys: ThreadKeys, ns: str, ids: Sequence[str]) -> Plan[None]:
    if ids:
        data = [Command.of("DEL", keys.checkpoint(ns, c), keys.writes(ns, c)) for c in ids]
        listed = Command(("SREM", keys.write_keys, *(keys.writes(ns, c) for c in ids)))
        yield RoundTrip((*data, listed))
        yield one(Command(("ZREM", keys.registry(ns), *ids)))


def _settle(keys: ThreadKeys, ns: str) -> Plan[None]:
    """Drop unused channel values; forget the namespace once it is empty."""
    ids = yield from _ids(keys, ns)
    lists = yield RoundTrip(tuple(Command.of("HGET", keys.checkpoint(ns, c), "blobs") for c in ids))
    used = {f for blob_list in lists if blob_list for f in _b(blob_list).split(b"\n") if f}
    if used:  # and the delta bases of what is used
        (values,) = yield one(Command(("HMGET", keys.blobs(ns), *used)))
        used.update((yield from _bases(keys, ns, values, set(used)))[::2])
    (fields,) = yield one(Command.of("HKEYS", keys.blobs(ns)))
    unused = [f for f in fields if f not in used]
    if unused:
        yield one(Command(("HDEL", keys.blobs(ns), *unused)))
    if not ids:
        yield _trip(
            Command.of("DEL", keys.registry(ns), keys.blobs(ns)),
            Command.of("SREM", keys.namespaces, ns),
        )


def _scard(keys: ThreadKeys) -> Plan[int]:
    (n,) = yield one(Command.of("SCARD", keys.namespaces))
    return int(n)


def delete_thread(call: ScriptCall) -> Plan[int]:
    keys = ThreadKeys(_s(call.args[0]))
    for ns in (yield from _namespaces(keys)):
        yield from _drop(keys, ns, (yield from _ids(keys, ns)))
        yield one(Command.of("DEL", keys.registry(ns), keys.blobs(ns)))
    (written,) = yield one(Command.of("SMEMBERS", keys.write_keys))
    for w in written:
        yield one(Command.of("DEL", _s(w)))
    yield one(Command.of("DEL", keys.namespaces, keys.write_keys))
    return 0


def _cp_fields(keys: ThreadKeys, ns: str, ids: Sequence[str], *fields: str) -> Plan[list[Any]]:
    replies = yield RoundTrip(
        tuple(Command(("HMGET", keys.checkpoint(ns, c), *fields)) for c in ids)
    )
    return list(replies)


def prune(call: ScriptCall) -> Plan[int]:
    keys, keep_n = ThreadKeys(_s(call.args[0])), int(call.args[1])
    for ns in (yield from _namespaces(keys)):
        yield from _prune_ns(keys, ns, keep_n)
    return (yield from _scard(keys))


def retain(call: ScriptCall) -> Plan[int]:
    """Retention on write, after the put (the RETAIN script's twin)."""
    keys, ns, keep_n = ThreadKeys(_s(call.args[0])), _s(call.args[1]), int(call.args[2])
    yield from _prune_ns(keys, ns, keep_n)
    ids = yield from _ids(keys, ns)
    if not ids:
        return 1
    head, oldest = keys.writes(ns, ""), min(ids, key=str.encode)
    (members,) = yield one(Command.of("SMEMBERS", keys.write_keys))
    gone = [
        w
        for w in map(_s, members)
        if w.startswith(head) and unescape(w[len(head) :]).encode() < oldest.encode()
    ]
    if gone:
        yield RoundTrip((Command.of("DEL", *gone), Command.of("SREM", keys.write_keys, *gone)))
    return 1


def _prune_ns(keys: ThreadKeys, ns: str, keep_n: int) -> Plan[None]:
    ids = yield from _ids(keys, ns, newest_first=True)
    keep = set(ids[:keep_n])
    for cid in ids[:keep_n]:
        (counters,) = yield from _cp_fields(keys, ns, [cid], "m:counters_since_delta_snapshot")
        if counters[0] is None:
            continue
        remaining = {escape(ch) + ":" for ch in orjson.loads(counters[0])}
        cur: str | None = cid
        while remaining and cur:
            ((blob_list, parent),) = yield from _cp_fields(keys, ns, [cur], "blobs", "parent")
            if blob_list is None:
                break
            keep.add(cur)
            names = [_s(f) for f in _b(blob_list).split(b"\n") if f]
            candidates = [f for f in names if f[: f.index(":") + 1] in remaining]
            if candidates:
                present = yield RoundTrip(
                    tuple(Command.of("HEXISTS", keys.blobs(ns), f) for f in candidates)
                )
                for f, there in zip(candidates, present):
                    if there:
                        remaining.discard(f[: f.index(":") + 1])
            cur = _s(parent) if parent else None
    yield from _drop(keys, ns, [c for c in ids if c not in keep])
    yield from _settle(keys, ns)


def delete_runs(call: ScriptCall) -> Plan[int]:
    keys = ThreadKeys(_s(call.args[0]))
    runs = {_b(r) for r in call.args[1:]}
    for ns in (yield from _namespaces(keys)):
        ids = yield from _ids(keys, ns)
        fields = yield from _cp_fields(keys, ns, ids, "run_id")
        doomed = [c for c, (run,) in zip(ids, fields) if run in runs]
        if doomed:  # most threads hold none of the runs
            yield from _drop(keys, ns, doomed)
            yield from _settle(keys, ns)
    return (yield from _scard(keys))


def export(call: ScriptCall) -> Plan[list[ExportedNamespace]]:
    keys = ThreadKeys(_s(call.args[0]))
    out: list[ExportedNamespace] = []
    for ns in (yield from _namespaces(keys)):
        ids = yield from _ids(keys, ns)
        calls = [Command.of("HGETALL", keys.blobs(ns))]
        for cid in ids:
            calls += [
                Command.of("HGETALL", keys.checkpoint(ns, cid)),
                Command.of("HGETALL", keys.writes(ns, cid)),
            ]
        replies = yield RoundTrip(tuple(calls))
        checkpoints = [
            ExportedCheckpoint(cid.encode(), _flat(cp), _flat(writes))
            for cid, cp, writes in zip(ids, replies[1::2], replies[2::2], strict=True)
            if cp
        ]
        out.append(ExportedNamespace(ns.encode(), _flat(replies[0]), checkpoints))
    return out


def history(call: ScriptCall) -> Plan[list[Ancestor]]:
    base, ns_arg, cid, *channels = call.args
    keys, ns = ThreadKeys(_s(base)), _s(ns_arg)
    target = _s(cid)
    if not target:
        ids = yield from _ids(keys, ns, newest_first=True)
        if not ids:
            return []
        target = ids[0]
    remaining = {escape(_s(c)) + ":": _s(c) for c in channels}
    ((cur,),) = yield from _cp_fields(keys, ns, [target], "parent")
    out: list[Ancestor] = []
    while remaining and cur:
        ((blob_list, parent),) = yield from _cp_fields(keys, ns, [_s(cur)], "blobs", "parent")
        if blob_list is None:
            break
        (writes,) = yield one(Command.of("HGETALL", keys.writes(ns, _s(cur))))
        names = [_s(f) for f in _b(blob_list).split(b"\n") if f]
        candidates = [f for f in names if f[: f.index(":") + 1] in remaining]
        seeds: list[bytes] = []
        bases: list[bytes] = []
        if candidates:
            values = yield RoundTrip(
                tuple(Command.of("HGET", keys.blobs(ns), f) for f in candidates)
            )
            for f, value in zip(candidates, values):
                if value is not None:
                    seeds += [remaining.pop(f[: f.index(":") + 1]).encode(), value]
            bases = yield from _bases(keys, ns, values, set())
        out.append(Ancestor(_b(cur), _flat(writes), seeds, bases))
        cur = parent
    return out


PLANS: dict[str, Callable[[ScriptCall], Plan[Any]]] = {
    "read": read,
    "touch": touch,
    "delete_thread": delete_thread,
    "prune": prune,
    "retain": retain,
    "delete_runs": delete_runs,
    "export": export,
    "history": history,
}

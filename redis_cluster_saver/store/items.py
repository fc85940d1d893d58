"""What a store item is in Redis, and what a search means: pure code, no I/O.

An item is one hash: its value as JSON, when it was written, its ttl, and one vector
per embedded field. Filters and scores mean what they mean in LangGraph's
``InMemoryStore`` (``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, plain
equality, nested objects; cosine similarity), on every path.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from langgraph.store.base import Item, MatchCondition, SearchItem

from ..keys import decode_namespace, encode_namespace

NO_EXPIRY = "+inf"
VECTOR = "vec:"
"""Field prefix of an item's vectors, one per embedded path (``vec:<path>``)."""
FIELDS = ("value", "ns", "key", "created", "updated", "ttl")


def expiry_score(now_ms: int, ttl_minutes: float | None) -> str | int:
    """A key's score in its namespace's sorted set: when it expires (ms), or never."""
    return NO_EXPIRY if ttl_minutes is None else now_ms + ttl_ms(ttl_minutes)


def ttl_ms(minutes: float) -> int:
    return max(1, int(minutes * 60_000))


def dump_value(value: Mapping[str, Any], what: str) -> bytes:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what}: a store value must be a dict, not {type(value).__name__}")
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise TypeError(f"{what}: the value is not JSON-serializable ({exc})") from exc


def pack_vector(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}d", *vector)


def unpack_vector(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 8}d", data))


def item_fields(
    namespace: tuple[str, ...],
    key: str,
    value: Mapping[str, Any],
    now_ms: int,
    ttl_minutes: float | None,
    vectors: Mapping[str, Sequence[float]],
) -> dict[str, bytes | str | int]:
    """The hash of one item, as HSET takes it."""
    fields: dict[str, bytes | str | int] = {
        "value": dump_value(value, f"item {key!r} of {namespace!r}"),
        "ns": encode_namespace(namespace),
        "key": key,
        "created": now_ms,
        "updated": now_ms,
    }
    if ttl_minutes is not None:
        fields["ttl"] = ttl_ms(ttl_minutes)
    for path, vector in vectors.items():
        fields[VECTOR + path] = pack_vector(vector)
    return fields


@dataclass(frozen=True, slots=True)
class Stored:
    """An item as read back, with its vectors (path -> vector)."""

    item: Item
    vectors: dict[str, list[float]]
    ttl_ms: int | None


def _when(ms: bytes | str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)


def _text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


def load_item(raw: Mapping[Any, bytes]) -> Stored | None:
    """An item from its hash (HGETALL's reply); None for a missing (or expired) one."""
    if not raw:
        return None
    fields = {_text(k): v for k, v in raw.items()}
    if "value" not in fields:
        return None
    vectors = {
        name[len(VECTOR) :]: unpack_vector(data)
        for name, data in fields.items()
        if name.startswith(VECTOR)
    }
    item = Item(
        value=orjson.loads(fields["value"]),
        key=_text(fields["key"]),
        namespace=decode_namespace(_text(fields["ns"])),
        created_at=_when(fields["created"]),
        updated_at=_when(fields["updated"]),
    )
    ttl = fields.get("ttl")
    return Stored(item, vectors, int(ttl) if ttl is not None else None)


# ------------------------------------------------------------------------- filters


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """InMemoryStore's filter: every key of ``filter`` compares true."""
    if not filter:
        return True
    return all(_compare(value.get(k), want) for k, want in filter.items())


def _compare(value: Any, want: Any) -> bool:
    if isinstance(want, dict):
        if any(k.startswith("$") for k in want):
            return all(_operator(value, op, operand) for op, operand in want.items())
        if not isinstance(value, dict):
            return False
        return all(_compare(value.get(k), v) for k, v in want.items())
    if isinstance(want, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(want)
            and all(_compare(v, w) for v, w in zip(value, want, strict=False))
        )
    return bool(value == want)


def _operator(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            left, right = float(value), float(operand)
        except (TypeError, ValueError):  # InMemoryStore raises here; no number, no match
            return False
        return {
            "$gt": left > right,
            "$gte": left >= right,
            "$lt": left < right,
            "$lte": left <= right,
        }[op]
    raise ValueError(f"unsupported filter operator {op!r}: use $eq, $ne, $gt, $gte, $lt, $lte")


def check_filter(filter: Mapping[str, Any] | None) -> None:
    """Bad operators raise before anything is read."""
    if filter is None:
        return
    if not isinstance(filter, Mapping):
        raise TypeError(f"filter must be a dict, not {type(filter).__name__}")
    for want in filter.values():
        _check_operand(want)


def _check_operand(want: Any) -> None:
    if isinstance(want, dict):
        for k, v in want.items():
            if k.startswith("$") and k not in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
                raise ValueError(
                    f"unsupported filter operator {k!r}: use $eq, $ne, $gt, $gte, $lt, $lte"
                )
            _check_operand(v)


# --------------------------------------------------------------- search and scores


def cosine(query: Sequence[float], vector: Sequence[float]) -> float:
    """InMemoryStore's cosine similarity (0 for a zero vector)."""
    dot = math.fsum(a * b for a, b in zip(query, vector, strict=False))
    n1 = math.sqrt(math.fsum(a * a for a in query))
    n2 = math.sqrt(math.fsum(b * b for b in vector))
    return dot / (n1 * n2) if n1 > 0 and n2 > 0 else 0.0


def order(stored: Iterable[Stored]) -> list[Stored]:
    """Items in the store's own order: by namespace, then by key."""
    return sorted(stored, key=lambda s: (s.item.namespace, s.item.key))


def search_page(
    candidates: list[Stored],
    query: list[float] | None,
    offset: int,
    limit: int,
) -> list[SearchItem]:
    """A page of matching items, as InMemoryStore pages them: by score where there is
    a query (each item by its best vector; items without one after the scored, in
    order, filling the page), else in order."""
    if query is None:
        return [_hit(s.item, None) for s in candidates[offset : offset + limit]]
    scored: list[tuple[float, int, Stored]] = []
    scoreless: list[Stored] = []
    for i, s in enumerate(candidates):
        if s.vectors:
            best = max(cosine(query, v) for v in s.vectors.values())
            scored.append((best, i, s))
        else:
            scoreless.append(s)
    scored.sort(key=lambda t: (-t[0], t[1]))
    kept = [(score, s) for score, _, s in scored[offset : offset + limit]]
    page = [_hit(s.item, score) for score, s in kept]
    if len(page) < limit:
        page += [_hit(s.item, None) for s in scoreless[: limit - len(page)]]
    return page


def _hit(item: Item, score: float | None) -> SearchItem:
    return SearchItem(
        namespace=item.namespace,
        key=item.key,
        value=item.value,
        created_at=item.created_at,
        updated_at=item.updated_at,
        score=score,
    )


# ---------------------------------------------------------------------- namespaces


def namespace_matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    """InMemoryStore's prefix and suffix conditions, ``*`` matching any one label."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"unsupported match type {condition.match_type!r}")
    return all(p == "*" or n == p for n, p in pairs)


def namespace_page(
    namespaces: Iterable[tuple[str, ...]],
    conditions: Sequence[MatchCondition] | None,
    max_depth: int | None,
    offset: int,
    limit: int,
) -> list[tuple[str, ...]]:
    chosen = [ns for ns in namespaces if all(namespace_matches(ns, c) for c in conditions or ())]
    if max_depth is not None:
        chosen = list({ns[:max_depth] for ns in chosen})
    return sorted(set(chosen))[offset : offset + limit]


def literal_first_label(prefix: Sequence[str]) -> str | None:
    """The first label of a prefix when it names one (no wildcard), else None."""
    return prefix[0] if prefix and prefix[0] != "*" else None

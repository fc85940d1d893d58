"""Across threads with the Search module: the index, its queries, and their replies.

The index covers checkpoint hashes only (their keys start ``<prefix>:cp:{``). On a
cluster whose search sees one shard (RediSearch without the coordinator, as on
open-source clusters before Redis 8), FT.CREATE and FT.SEARCH act on the node that
owns the index name's slot and see only that node's keys: so there is one index per
primary (indexes.py), and queries fan out to all of them and merge newest first.

Index fields are a pre-filter: every result is loaded and checked against the
exact filter, so a value the index cannot hold exactly (an empty tag, one with the
tag separator) costs speed, never correctness.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from redisvl.query import FilterQuery
from redisvl.query.filter import FilterExpression, Num, Tag
from redisvl.schema import IndexSchema

from .keys import KeyLayout
from .plan import Arg, Command

SEPARATOR = "\x1f"  # a tag separator no id is expected to contain
PAGE = 200
TAG = {"separator": SEPARATOR, "case_sensitive": True}


def schema(layout: KeyLayout, name: str) -> IndexSchema:
    return IndexSchema.from_dict(
        {
            "index": {"name": name, "prefix": layout.checkpoint_prefix, "storage_type": "hash"},
            "fields": [
                {"name": "thread_id", "type": "tag", "attrs": TAG},
                {"name": "checkpoint_ns", "type": "tag", "attrs": TAG},
                {"name": "checkpoint_id", "type": "tag", "attrs": TAG},
                {"name": "sort_key", "type": "tag", "attrs": {**TAG, "sortable": True}},
                {"name": "source", "type": "tag", "attrs": TAG},
                {"name": "run_id", "type": "tag", "attrs": TAG},
                {"name": "step", "type": "numeric"},
                {"name": "ts", "type": "numeric", "attrs": {"sortable": True}},
            ],
        }
    )


def create_command(layout: KeyLayout, name: str) -> Command:
    s = schema(layout, name)
    fields: list[Arg] = [a for f in s.redis_fields for a in f.redis_args()]
    prefix = layout.checkpoint_prefix
    return Command.routed(
        name, "FT.CREATE", name, "ON", "HASH", "PREFIX", 1, prefix, "SCHEMA", *fields
    )


SORT_KEY_MAX = 512


def sort_key(checkpoint_id: str, thread_id: str, ns: str) -> str:
    """Unique per checkpoint, and ordered as (id, thread, namespace): paging over a
    sort with ties is unstable (a page boundary inside a tie repeats or skips).

    The index drops tag values that are too long, so a key over SORT_KEY_MAX keeps
    its head and ends with a digest of the whole: still unique, ordered by the head.
    """
    key = f"{checkpoint_id}\x01{thread_id}\x01{ns}"
    if len(key) <= SORT_KEY_MAX:
        return key
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return f"{key[: SORT_KEY_MAX - 42]}\x01{digest}"


def number(value: Any) -> int | float | None:
    """The index's form of a metadata ``step`` (None: not a finite number): bools as
    ints and integral floats as ints, as Python's ``==`` equates them, so a filter
    on ``1`` finds a step put as ``True`` or ``1.0``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value) if value.is_integer() else value
    return None


def _tag_safe(value: Any) -> bool:
    """Values the index holds exactly: tag indexing trims and splits, and drops long
    values, so anything else is left to the exact check after loading."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and value == value.strip()
        and value.isprintable()
        and SEPARATOR not in value
    )


def expression(
    filter: Mapping[str, Any] | None, run_ids: Sequence[str] = ()
) -> FilterExpression | None:
    """The part of an exact metadata filter the index can answer."""
    parts: list[FilterExpression] = []
    for key in ("source", "run_id"):
        if filter and key in filter and _tag_safe(filter[key]):
            parts.append(Tag(key) == filter[key])
    step = number((filter or {}).get("step"))
    if isinstance(step, int) and abs(step) < 2**53:  # exact in the index's doubles
        parts.append(Num("step") == step)
    if run_ids:
        parts.append(Tag("run_id") == list(run_ids))
    result: FilterExpression | None = None
    for part in parts:
        result = part if result is None else result & part
    return result


def search_command(name: str, where: FilterExpression | None, offset: int, count: int) -> Command:
    query = FilterQuery(filter_expression=where, num_results=count)
    query.sort_by("sort_key", asc=False)
    query.no_content()
    query.paging(offset, count)
    return Command.routed(name, "FT.SEARCH", name, *query.get_args())


def result_keys(reply: Any) -> list[bytes]:
    """Document keys from an FT.SEARCH NOCONTENT reply, RESP2 or RESP3."""
    if isinstance(reply, Mapping):
        results = reply.get(b"results", reply.get("results", []))
        return [r.get(b"id", r.get("id")) for r in results]
    return list(reply[1:])

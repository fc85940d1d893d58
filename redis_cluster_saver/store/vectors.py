"""Vector search through the Search module: documents, index and queries (no I/O).

Where RediSearch and RedisJSON run, each item with vectors also has a JSON document
beside it (same slot, written in the same atomic write): its vectors, and a tag per
namespace prefix. The index holds every vector of a document in one multi-value
field, so a KNN query ranks a document by its nearest vector: the best field per
item, as InMemoryStore scores. Prefix tags are digests, so any label is a plain tag.

The index only chooses candidates. Their items are then read, filtered and scored
exactly (cosine over the stored doubles, as InMemoryStore does); see
``StorePlans._knn`` for why the merged page is the exact top of the whole store.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ..keys import KeyLayout, encode_namespace
from ..plan import Arg, Command

ALGORITHMS = ("FLAT", "HNSW")
"""FLAT compares the query with every vector (exact); HNSW is a graph, approximate
but far faster over many vectors."""
HNSW_EF_RUNTIME = 200
"""HNSW's candidate list per query (the module's default, 10, gave recall@10 of 0.28
over 30,000 random 64-dimension vectors; 200 gave 0.95, and 0.87 over 100,000 in
``make bench-store``: random vectors are a graph index's worst case)."""


def prefix_tag(prefix: Sequence[str]) -> str:
    return hashlib.sha1(
        encode_namespace(tuple(prefix)).encode("utf-8", "surrogatepass")
    ).hexdigest()[:20]


def document(namespace: tuple[str, ...], vectors: Mapping[str, Sequence[float]]) -> bytes:
    """The JSON document of an item's vectors."""
    return orjson.dumps(
        {
            "v": [list(v) for v in vectors.values()],
            "p": [prefix_tag(namespace[:n]) for n in range(1, len(namespace) + 1)],
        }
    )


def create_command(layout: KeyLayout, dims: int, algorithm: str, name: str) -> Command:
    return Command.routed(
        name,
        "FT.CREATE",
        name,
        "ON",
        "JSON",
        "PREFIX",
        1,
        layout.store_vectors_prefix,
        "SCHEMA",
        "$.v[*]",
        "AS",
        "v",
        "VECTOR",
        algorithm,
        6,
        "TYPE",
        "FLOAT32",
        "DIM",
        dims,
        "DISTANCE_METRIC",
        "COSINE",
        "$.p[*]",
        "AS",
        "p",
        "TAG",
    )


def usable(query: Sequence[float]) -> bool:
    """A query the index can rank by (cosine of a zero vector is no ranking)."""
    return any(x != 0 for x in query) and all(math.isfinite(x) for x in query)


def knn_command(
    name: str, prefix: Sequence[str], query: Sequence[float], k: int, algorithm: str
) -> Command:
    """The ``k`` nearest documents under ``prefix`` on one index, nearest first."""
    where = f"@p:{{{prefix_tag(prefix)}}}" if prefix else "*"
    runtime = f" EF_RUNTIME {max(k, HNSW_EF_RUNTIME)}" if algorithm == "HNSW" else ""
    args: list[Arg] = [
        "FT.SEARCH",
        name,
        f"({where})=>[KNN {k} @v $q{runtime} AS d]",
        "PARAMS",
        2,
        "q",
        struct.pack(f"<{len(query)}f", *query),
        "SORTBY",
        "d",
        "RETURN",
        1,
        "d",
        "LIMIT",
        0,
        k,
        "DIALECT",
        2,
    ]
    return Command.routed(name, *args)


def knn_hits(reply: Any) -> list[tuple[float, bytes]]:
    """(distance, document key) of an FT.SEARCH reply, RESP2 or RESP3."""
    hits: list[tuple[float, bytes]] = []
    if isinstance(reply, Mapping):
        for result in reply.get(b"results", reply.get("results", [])):
            key = result.get(b"id", result.get("id"))
            extra = result.get(b"extra_attributes", result.get("extra_attributes", {}))
            hits.append((_distance(extra.get(b"d", extra.get("d"))), _bytes(key)))
        return hits
    rows = list(reply[1:])
    for key, fields in zip(rows[::2], rows[1::2], strict=True):
        named = dict(zip(fields[::2], fields[1::2], strict=True))
        hits.append((_distance(named.get(b"d", named.get("d"))), _bytes(key)))
    return hits


def _distance(value: Any) -> float:
    try:
        d = float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return math.inf
    return d if math.isfinite(d) else math.inf


def _bytes(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()

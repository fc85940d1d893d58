"""What a batch asks the embedding model for, and where its answers go (pure code).

LangGraph's ``index={"dims": N, "embed": ..., "fields": [...]}``: the texts at each
field's path of each put value (or the put's own ``index`` paths; ``index=False``
embeds nothing), and each search's query. The stores call the model, sync or async;
these functions only say what to embed and map the vectors back, as InMemoryStore
does (a path that yields several texts embeds each as ``<path>.<i>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    IndexConfig,
    Op,
    PutOp,
    SearchOp,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
)


@dataclass(frozen=True)
class Index:
    """The store's index configuration, checked, with its fields tokenized."""

    dims: int
    embeddings: Embeddings
    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def parse(cls, config: IndexConfig | None) -> Index | None:
        if config is None:
            return None
        if not isinstance(config, Mapping):
            raise TypeError(
                f"index must be a dict like {{'dims': 1536, 'embed': ...}}, not {config!r}"
            )
        unknown = set(config) - {"dims", "embed", "fields"}
        if unknown:
            raise ValueError(f"unknown index option(s): {', '.join(sorted(unknown))}")
        dims = config.get("dims")
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise ValueError(f"index['dims'] must be a positive int, not {dims!r}")
        if config.get("embed") is None:
            raise ValueError(
                "index['embed'] is required: Embeddings, a function or 'provider:model'"
            )
        paths = config.get("fields") or ["$"]
        fields = tuple((p, p if p == "$" else tokenize_path(p)) for p in paths)
        return cls(dims, ensure_embeddings(config.get("embed")), fields)


@dataclass
class Wanted:
    """A batch's texts to embed (each once) and where each vector goes."""

    texts: list[str] = field(default_factory=list)
    places: list[list[tuple[int, str]]] = field(default_factory=list)  # (op index, path)
    queries: list[str] = field(default_factory=list)

    def vectors(
        self, embedded: Sequence[Sequence[float]], dims: int
    ) -> dict[int, dict[str, list[float]]]:
        if len(embedded) != len(self.texts):
            raise ValueError(
                f"the embedding model returned {len(embedded)} vectors for {len(self.texts)} texts"
            )
        out: dict[int, dict[str, list[float]]] = {}
        for vector, places in zip(embedded, self.places, strict=True):
            checked = _checked(vector, dims)
            for i, path in places:
                out.setdefault(i, {})[path] = checked
        return out

    def query_vectors(
        self, ops: Sequence[Op], embedded: Sequence[Sequence[float]], dims: int
    ) -> dict[int, list[float]]:
        by_text = {q: _checked(v, dims) for q, v in zip(self.queries, embedded, strict=True)}
        return {
            i: by_text[op.query]
            for i, op in enumerate(ops)
            if isinstance(op, SearchOp) and op.query and op.query in by_text
        }


def _checked(vector: Sequence[float], dims: int) -> list[float]:
    values = [float(x) for x in vector]
    if len(values) != dims:
        raise ValueError(f"the embedding model returned {len(values)} dimensions, not {dims}")
    return values


def wanted(ops: Sequence[Op], index: Index | None) -> Wanted:
    """What to embed for ``ops``: nothing without an index."""
    out = Wanted()
    if index is None:
        return out
    slot: dict[str, int] = {}
    last_put: dict[tuple[tuple[str, ...], str], int] = {}
    for i, op in enumerate(ops):
        if isinstance(op, PutOp):
            last_put[(tuple(op.namespace), op.key)] = i  # only the last put of an item counts
    for i in last_put.values():
        op = ops[i]
        assert isinstance(op, PutOp)
        if op.value is None or op.index is False:
            continue
        paths = index.fields if op.index is None else tuple((p, tokenize_path(p)) for p in op.index)
        for path, tokens in paths:
            texts = get_text_at_path(op.value, tokens)
            named = (
                [(f"{path}.{n}", t) for n, t in enumerate(texts)]
                if len(texts) > 1
                else [(path, t) for t in texts]
            )
            for name, text in named:
                if text not in slot:
                    slot[text] = len(out.texts)
                    out.texts.append(text)
                    out.places.append([])
                out.places[slot[text]].append((i, name))
    out.queries = sorted({op.query for op in ops if isinstance(op, SearchOp) and op.query})
    return out

"""Vector search over many items: our store against the peers' stores, with recall@10
against exact search.

    python -m benchmarks.store_vectors [--items 100000] [--dims 64] [--queries 30] [--rounds 3]

Each store is loaded with the same ``--items`` items (100 users' namespaces, one
embedded text each; deterministic vectors, so every store holds the same ones), then
the same queries run round by round, interleaved: over the whole store (prefix
``()``) and within one user (prefix ``(user,)``), ``limit=10``. Recall@10 compares
each answer's keys with the exact top 10 by cosine similarity (numpy over all
vectors). Memory per item is the server's used_memory growth while the store loaded.
PostgresStore is absent: Debian 12 has no pgvector. Not part of ``make test``
(``make bench-store``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import redis
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, PutOp
from langgraph.store.memory import InMemoryStore

from cluster.harness import start, stop
from redis_cluster_saver.store import RedisClusterStore

USERS = 100
K = 10
NUMBER = re.compile(r"(\d+)$")


class TableEmbeddings(Embeddings):
    """Text ``doc <i>`` is row i of a fixed random matrix; ``query <q>`` a query row."""

    def __init__(self, docs: np.ndarray, queries: np.ndarray) -> None:
        self.docs, self.queries = docs, queries

    def _row(self, text: str) -> list[float]:
        match = NUMBER.search(text)
        assert match is not None, text
        table = self.queries if text.startswith("query") else self.docs
        return [float(x) for x in table[int(match.group(1))]]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._row(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._row(text)


def user_of(i: int, items: int) -> str:
    return f"user{i * USERS // items}"


@contextlib.contextmanager
def opened(name: str, url: str, index: dict[str, Any]) -> Iterator[BaseStore]:
    if name.startswith("ours"):
        algorithm = "HNSW" if "HNSW" in name else "FLAT"
        options: dict[str, Any] = {"key_prefix": f"vb{algorithm}", "vector_algorithm": algorithm}
        with RedisClusterStore.from_conn_string(url, index=index, **options) as ours:
            yield ours
    elif name == "RedisStore":
        from langgraph.store.redis import RedisStore

        with RedisStore.from_conn_string(url, index=index) as store:  # type: ignore[arg-type]
            store.setup()
            yield store
    elif name == "ValkeyStore":
        from langgraph_checkpoint_aws import ValkeyStore

        with ValkeyStore.from_conn_string(
            url.replace("redis://", "valkey://"), index=index
        ) as store:
            store.setup()
            yield store
    else:
        yield InMemoryStore(index=index)  # type: ignore[arg-type]


def used_memory(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def load(store: BaseStore, items: int, batch: int = 500) -> None:
    for at in range(0, items, batch):
        ops = [
            PutOp((user_of(i, items), "mem"), f"d{i}", {"text": f"doc {i}", "i": i})
            for i in range(at, min(items, at + batch))
        ]
        store.batch(ops)


def exact_top(docs: np.ndarray, query: np.ndarray, rows: np.ndarray | None = None) -> set[str]:
    pool = docs if rows is None else docs[rows]
    scores = pool @ query / (np.linalg.norm(pool, axis=1) * np.linalg.norm(query))
    best = np.argsort(-scores, kind="stable")[:K]
    ids = best if rows is None else rows[best]
    return {f"d{int(i)}" for i in ids}


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    out = call()
    return (time.perf_counter() - began) * 1000, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    docs = rng.standard_normal((args.items, args.dims))
    near = rng.integers(0, args.items, args.queries)
    queries = docs[near] + 0.8 * rng.standard_normal((args.queries, args.dims))
    index = {"dims": args.dims, "embed": TableEmbeddings(docs, queries), "fields": ["text"]}
    users = [user_of(int(j), args.items) for j in near]
    rows_of = {
        u: np.array([i for i in range(args.items) if user_of(i, args.items) == u])
        for u in set(users)
    }
    truth_all = [exact_top(docs, q) for q in queries]
    truth_user = [exact_top(docs, q, rows_of[u]) for q, u in zip(queries, users, strict=True)]
    names = [
        "ours (FLAT)",
        "ours (HNSW)",
        "ours (FLAT, cluster)",
        "RedisStore",
        "ValkeyStore",
        "InMemoryStore",
    ]
    deps = {t: start(t, owner_pid=os.getpid()) for t in ("standalone", "cluster")}
    url_of = {n: deps["cluster" if "cluster" in n else "standalone"].url for n in names}
    notes: dict[str, dict[str, str]] = {n: {} for n in names}
    lat: dict[str, dict[str, list[float]]] = {n: {"all": [], "user": []} for n in names}
    hits: dict[str, dict[str, list[float]]] = {n: {"all": [], "user": []} for n in names}
    try:
        with contextlib.ExitStack() as stack:
            stores: dict[str, BaseStore] = {}
            for n in names:
                try:
                    store = stack.enter_context(opened(n, url_of[n], index))
                    on_standalone = "cluster" not in n and n != "InMemoryStore"
                    before = used_memory(url_of[n]) if on_standalone else 0
                    seconds, _ = timed(lambda store=store: load(store, args.items))
                    notes[n]["load"] = f"{seconds / 1000:.0f} s"
                    if on_standalone:
                        per = (used_memory(url_of[n]) - before) / args.items
                        notes[n]["memory"] = f"{per:,.0f} B"
                    stores[n] = store
                except Exception as exc:
                    notes[n]["error"] = f"{type(exc).__name__}: {str(exc)[:100]}"
                print(n, notes[n], flush=True)
            for _ in range(args.rounds):
                for n, store in stores.items():
                    for q in range(args.queries):
                        for kind, prefix, truth in (
                            ("all", (), truth_all[q]),
                            ("user", (users[q],), truth_user[q]),
                        ):
                            if kind in notes[n]:  # it failed before
                                continue
                            try:
                                ms, found = timed(
                                    lambda store=store, prefix=prefix, q=q: store.search(
                                        prefix, query=f"query {q}", limit=K
                                    )
                                )
                            except Exception as exc:
                                notes[n][kind] = f"{type(exc).__name__}: {str(exc)[:80]}"
                                continue
                            lat[n][kind].append(ms)
                            hits[n][kind].append(len({h.key for h in found} & truth) / K)
    finally:
        for dep in deps.values():
            stop(dep)
    print()
    print(
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.items:,} items of {args.dims} dims, "
        f"{args.queries} queries x {args.rounds} rounds, limit {K}"
    )
    print(
        "| store | all: p50 / p99 ms | all: recall@10 | one user: p50 / p99 ms | "
        "one user: recall@10 | load | memory per item |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in names:
        if "error" in notes[n]:
            print(f"| {n} | {notes[n]['error']} | | | | | |")
            continue
        cells = []
        for kind in ("all", "user"):
            v = sorted(lat[n][kind])
            if not v:
                cells += [notes[n].get(kind, "-"), ""]
                continue
            p99 = v[min(len(v) - 1, int(0.99 * len(v)))]
            cells += [
                f"{statistics.median(v):.2f} / {p99:.2f}",
                f"{statistics.mean(hits[n][kind]):.3f}",
            ]
        print(
            f"| {n} | {' | '.join(cells)} | {notes[n].get('load', '')} | "
            f"{notes[n].get('memory', '-')} |"
        )


if __name__ == "__main__":
    main()

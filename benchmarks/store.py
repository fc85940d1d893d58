"""Our store against the peers' stores, in one run, interleaved round by round:
langgraph-checkpoint-redis's RedisStore and langgraph-checkpoint-aws's ValkeyStore on
the same valkey 9.1 server (with RedisJSON and RediSearch), PostgresStore on Debian's
PostgreSQL (no pgvector on Debian 12, so no vector index), and InMemoryStore.

    python -m benchmarks.store [--items 500] [--rounds 3] [--namespaces 10000]

Per round and store: ``--items`` puts over 50 users' namespaces, a get of each, and a
filtered search of each user's namespace; p50 and p99 of each (pooled over rounds),
with ours/peer ratios. Then ``list_namespaces`` over ``--namespaces`` namespaces, and
server memory per item (used_memory delta) for the Redis-backed stores. Not part of
``make test`` (``make bench-store``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
from langgraph.store.base import BaseStore, PutOp
from langgraph.store.memory import InMemoryStore

from cluster.harness import start, stop
from redis_cluster_saver.store import RedisClusterStore

USERS = 50


@contextlib.contextmanager
def opened(name: str, redis_url: str, pg_url: str) -> Iterator[BaseStore]:
    if name == "ours":
        with RedisClusterStore.from_conn_string(redis_url, key_prefix="bench") as ours:
            yield ours
    elif name == "ours (cluster)":
        with RedisClusterStore.from_conn_string(pg_url, key_prefix="bench") as ours:
            yield ours
    elif name == "RedisStore":
        from langgraph.store.redis import RedisStore

        with RedisStore.from_conn_string(redis_url) as store:
            store.setup()
            yield store
    elif name == "ValkeyStore":
        from langgraph_checkpoint_aws import ValkeyStore

        with ValkeyStore.from_conn_string(redis_url.replace("redis://", "valkey://")) as store:
            store.setup()
            yield store
    elif name == "PostgresStore":
        from langgraph.store.postgres import PostgresStore

        with PostgresStore.from_conn_string(pg_url) as store:
            store.setup()
            yield store
    else:
        yield InMemoryStore()


def timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def one_round(store: BaseStore, items: int, run: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"put": [], "get": [], "search": []}
    placed = []
    for i in range(items):
        ns, key = (f"{run}-user{i % USERS}", "memories"), f"m{i}"
        value = {"text": f"memory {i} of user {i % USERS}", "kind": "fact" if i % 3 else "pref"}
        out["put"].append(timed(lambda ns=ns, key=key, value=value: store.put(ns, key, value)))
        placed.append((ns, key))
    for ns, key in placed:
        out["get"].append(timed(lambda ns=ns, key=key: store.get(ns, key)))
    for u in range(USERS):
        ns = (f"{run}-user{u}",)
        out["search"].append(
            timed(lambda ns=ns: store.search(ns, filter={"kind": "fact"}, limit=10))
        )
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def used_memory(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--namespaces", type=int, default=10_000)
    args = parser.parse_args()
    deps = {t: start(t, owner_pid=os.getpid()) for t in ("standalone", "postgres", "cluster")}
    names = [
        "ours",
        "RedisStore",
        "ValkeyStore",
        "PostgresStore",
        "InMemoryStore",
        "ours (cluster)",
    ]
    urls = {n: (deps["standalone"].url, deps["postgres"].url) for n in names}
    urls["ours (cluster)"] = (deps["standalone"].url, deps["cluster"].url)
    figures: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    extra: dict[str, dict[str, str]] = {n: {} for n in names}
    try:
        with contextlib.ExitStack() as stack:
            stores: dict[str, BaseStore] = {}
            for n in names:
                try:
                    stores[n] = stack.enter_context(opened(n, *urls[n]))
                except Exception as exc:
                    extra[n]["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
            for r in range(args.rounds):
                for n, store in stores.items():
                    if "error" in extra[n]:
                        continue
                    try:
                        got = one_round(store, args.items, f"r{r}{uuid.uuid4().hex[:4]}")
                    except Exception as exc:
                        extra[n]["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
                        continue
                    for phase, values in got.items():
                        figures[n].setdefault(phase, []).extend(values)
            for n, store in stores.items():
                if "error" in extra[n]:
                    continue
                redis_backed = n in ("ours", "RedisStore", "ValkeyStore")
                before = used_memory(deps["standalone"].url) if redis_backed else 0
                run = f"ns{uuid.uuid4().hex[:4]}"
                ops = [
                    PutOp((f"{run}{i % 1000}", f"n{i}"), "k", {"text": f"item {i}"})
                    for i in range(args.namespaces)
                ]
                for at in range(0, len(ops), 500):
                    store.batch(ops[at : at + 500])
                if redis_backed:
                    per = (used_memory(deps["standalone"].url) - before) / args.namespaces
                    extra[n]["memory per item"] = f"{per:,.0f} B"
                listing = [
                    timed(lambda store=store: store.list_namespaces(limit=100)) for _ in range(5)
                ]
                extra[n]["list_namespaces"] = f"{statistics.median(listing):.1f} ms"
    finally:
        for dep in deps.values():
            stop(dep)
    print()
    print(
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.items} items x {args.rounds} rounds, "
        f"list_namespaces over {args.namespaces:,} namespaces"
    )
    print("| store | put p50 / p99 (ms) | get p50 / p99 | search p50 / p99 | "
          "list_namespaces | memory per item |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    ours = figures["ours"]
    for n in names:
        if "error" in extra[n]:
            print(f"| {n} | {extra[n]['error']} | | | | |")
            continue
        cells = []
        for phase in ("put", "get", "search"):
            v = figures[n][phase]
            ratio = (
                f" ({pct(v, 0.5) / pct(ours[phase], 0.5):.2f}x ours)"
                if n != "ours" and ours
                else ""
            )
            cells.append(f"{pct(v, 0.5):.3f} / {pct(v, 0.99):.3f}{ratio}")
        print(
            f"| {n} | {' | '.join(cells)} | {extra[n].get('list_namespaces', '')} | "
            f"{extra[n].get('memory per item', '-')} |"
        )


if __name__ == "__main__":
    main()

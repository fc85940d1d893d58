"""The saver's own CPU, client and server, apart from the serializer's.

    python -m benchmarks.cpu [--turns 20] [--rounds 5] [--savers ours,aws,...]

Two parts, each in interleaved rounds on one valkey 9.1 (with RedisJSON and
RediSearch, which the reference saver needs), every saver under its own prefix:

- per turn: ``--turns`` user turns of the ReAct agent (benchmarks/agent.py) at
  LangGraph's default durability, on a fresh thread. Client CPU is this process's
  (``time.process_time``: the graph, the serializer and the saver), shown over
  InMemorySaver's, which runs the same graph and serializes the same values with no
  I/O; server CPU is the server's ``used_cpu_user + used_cpu_sys`` growth over the
  turns. Medians over rounds.
- per call: the puts and put_writes those turns made (recorded once on InMemorySaver)
  replayed on each saver into fresh threads, then ``get_tuple`` of the latest
  checkpoint and ``list(limit=10)``. Client microseconds per call exclude the time
  spent in the saver's serializer (a timing wrapper around ``saver.serde``); server
  microseconds per call are the server's CPU growth over the calls.

The garbage collector runs before each measured block, so that no saver pays for
what the last one left; the figures of one configuration still move between runs on
a small VM, which is why there are five rounds and medians.

Our saver runs in each write mode (``apply``: the default, writes as one APPLY
script; ``multi``: ``scripts=False``, writes in MULTI/EXEC and plain reads;
``script``: ``transactions=False``; ``per-key``: neither), sync and async. Not part
of ``make test`` (``make bench-cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import os
import platform
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from benchmarks.agent import build, user_turn
from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

MODES: dict[str, dict[str, bool]] = {
    "apply": {},
    "multi": {"scripts": False},
    "script": {"transactions": False},
    "per-key": {"transactions": False, "scripts": False},
}
REPLAY_THREADS = 4
READS = 200
MEMORY = "InMemorySaver"


class TimedSerde:
    """A serializer that keeps count of the CPU time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        began = time.process_time()
        try:
            return fn(*args)
        finally:
            self.seconds += time.process_time() - began

    def dumps_typed(self, obj: Any) -> Any:
        return self._timed(self.inner.dumps_typed, obj)

    def loads_typed(self, data: Any) -> Any:
        return self._timed(self.inner.loads_typed, data)


@dataclass(frozen=True)
class Saver:
    name: str
    make: Callable[[str], contextlib.AbstractAsyncContextManager[Any]]
    sync: bool = False


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def ours(mode: str, sync: bool) -> Saver:
    options = MODES[mode]

    @contextlib.asynccontextmanager
    async def make(url: str) -> AsyncIterator[Any]:
        if sync:
            with RedisClusterSaver.from_conn_string(url, key_prefix=f"s{_tag()}", **options) as s:
                yield s
            return
        async with AsyncRedisClusterSaver.from_conn_string(
            url, key_prefix=f"a{_tag()}", **options
        ) as saver:
            yield saver

    return Saver(f"ours {'sync' if sync else 'async'} {mode}", make, sync)


@contextlib.asynccontextmanager
async def in_memory(url: str) -> AsyncIterator[Any]:
    yield InMemorySaver()


@contextlib.asynccontextmanager
async def aws_async(url: str) -> AsyncIterator[Any]:
    from langgraph_checkpoint_aws import AsyncValkeySaver

    async with AsyncValkeySaver.from_conn_string(url) as saver:
        yield saver


@contextlib.asynccontextmanager
async def aws_sync(url: str) -> AsyncIterator[Any]:
    from langgraph_checkpoint_aws import ValkeySaver

    with ValkeySaver.from_conn_string(url) as saver:
        yield saver


@contextlib.asynccontextmanager
async def plainredis(url: str) -> AsyncIterator[Any]:
    from langgraph_checkpoint_plainredis import AsyncRedisSaver

    saver = AsyncRedisSaver(url=url, prefix=f"p{_tag()}")
    try:
        yield saver
    finally:
        await saver.client.aclose()


@contextlib.asynccontextmanager
async def reference(url: str) -> AsyncIterator[Any]:
    from langgraph.checkpoint.redis.aio import AsyncRedisSaver

    async with AsyncRedisSaver.from_conn_string(url) as saver:
        await saver.asetup()
        yield saver


SAVERS = [
    Saver(f"{MEMORY} async", in_memory),
    Saver(f"{MEMORY} sync", in_memory, sync=True),
    *(ours(mode, sync) for sync in (False, True) for mode in MODES),
    Saver("aws async", aws_async),
    Saver("aws sync", aws_sync, sync=True),
    Saver("plainredis async", plainredis),
    Saver("reference async", reference),
]


@dataclass
class Figures:
    turn_cpu_ms: float = 0.0
    turn_wall_ms: float = 0.0
    turn_server_ms: float = 0.0
    client_us: dict[str, float] = field(default_factory=dict)
    server_us: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class Recorder(InMemorySaver):
    """InMemorySaver that keeps every put and put_writes it was given, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        args = (config, checkpoint, metadata, new_versions)
        self.calls.append(("put", copy.deepcopy(args)))
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.calls.append(("put_writes", copy.deepcopy((config, writes, task_id, task_path))))
        super().put_writes(config, writes, task_id, task_path)


def record(turns: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The calls ``turns`` turns make, taken from a sync run (the same calls, in order)."""
    saver = Recorder()
    app = build(saver, delta=False)
    config = {"configurable": {"thread_id": "recorded"}}
    for n in range(turns):
        app.invoke(user_turn(n), config, durability="sync")
    return saver.calls


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def on_thread(config: Any, thread: str) -> Any:
    return {**config, "configurable": {**config["configurable"], "thread_id": thread}}


class Caller:
    """One saver's calls, sync or async, with the same signature."""

    def __init__(self, saver: BaseCheckpointSaver[Any], sync: bool) -> None:
        self.saver = saver
        self.sync = sync

    async def call(self, op: str, *args: Any) -> Any:
        if op == "list":
            if self.sync:
                return list(self.saver.list(args[0], limit=10))
            return [t async for t in self.saver.alist(args[0], limit=10)]
        if self.sync:
            return getattr(self.saver, op)(*args)
        return await getattr(self.saver, f"a{op}")(*args)


async def turns(saver: Saver, saver_obj: Any, count: int, admin: redis.Redis) -> Figures:
    figures = Figures()
    app = build(saver_obj, delta=False)
    config = {"configurable": {"thread_id": f"t{_tag()}"}}
    pool = ThreadPoolExecutor(max_workers=1)

    async def turn(n: int) -> None:
        if saver.sync:  # the sync graph on a thread of its own, as in a sync app
            await asyncio.get_running_loop().run_in_executor(
                pool, lambda: app.invoke(user_turn(n), config)
            )
        else:
            await app.ainvoke(user_turn(n), config)

    try:
        await turn(0)  # warm
        config = {"configurable": {"thread_id": f"t{_tag()}"}}
        gc.collect()  # each saver starts with nothing left for the collector by the last
        server0, cpu0, wall0 = server_cpu(admin), time.process_time(), time.perf_counter()
        for n in range(count):
            await turn(n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        figures.turn_server_ms = (server_cpu(admin) - server0) * 1000 / count
        figures.turn_cpu_ms = cpu * 1000 / count
        figures.turn_wall_ms = wall * 1000 / count
    finally:
        pool.shutdown()
    return figures


async def calls(
    saver_obj: Any, sync: bool, recorded: list[tuple[str, tuple[Any, ...]]], admin: redis.Redis
) -> tuple[dict[str, float], dict[str, float]]:
    """(client us, server us) per call of each operation, the serializer's time left out."""
    timed = TimedSerde(saver_obj.serde)
    saver_obj.serde = timed
    caller = Caller(saver_obj, sync)
    threads = [f"r{_tag()}" for _ in range(REPLAY_THREADS)]
    client: dict[str, float] = {}
    server: dict[str, float] = {}

    async def measure(op: str, work: list[tuple[Any, ...]]) -> None:
        gc.collect()
        ser0, server0, cpu0 = timed.seconds, server_cpu(admin), time.process_time()
        for args in work:
            await caller.call(op, *args)
        cpu = time.process_time() - cpu0 - (timed.seconds - ser0)
        client[op] = cpu * 1e6 / len(work)
        server[op] = (server_cpu(admin) - server0) * 1e6 / len(work)

    await caller.call("get_tuple", on_thread(recorded[0][1][0], "warm"))
    for op in ("put", "put_writes"):
        work: list[tuple[Any, ...]] = []
        for thread in threads:
            work.extend(
                (on_thread(args[0], thread), *args[1:]) for name, args in recorded if name == op
            )
        await measure(op, work)  # put_writes after the puts: their checkpoints exist
    latest = [{"configurable": {"thread_id": t, "checkpoint_ns": ""}} for t in threads]
    await measure("get_tuple", [(latest[i % len(latest)],) for i in range(READS)])
    await measure("list", [(latest[i % len(latest)],) for i in range(READS // 2)])
    return client, server


async def run_one(saver: Saver, url: str, args: argparse.Namespace, recorded: Any) -> Figures:
    admin = redis.Redis.from_url(url)
    try:
        async with saver.make(url) as saver_obj:
            figures = await turns(saver, saver_obj, args.turns, admin)
            if not saver.name.startswith(MEMORY):
                figures.client_us, figures.server_us = await calls(
                    saver_obj, saver.sync, recorded, admin
                )
            return figures
    finally:
        admin.close()


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(names: list[str], results: dict[str, list[Figures]]) -> None:
    def cpu_of(name: str) -> float:
        return med([f.turn_cpu_ms for f in results.get(name, []) if not f.error])

    base = {kind: cpu_of(f"{MEMORY} {kind}") for kind in ("async", "sync")}
    aws = {kind: cpu_of(f"aws {kind}") - base[kind] for kind in ("async", "sync")}
    print(
        "\nPer turn (medians over rounds; client CPU over InMemorySaver's of the same "
        "kind, sync or async, and that over the AWS saver's):"
    )
    print("| saver | wall ms | client CPU ms | over InMemorySaver | / AWS | server CPU ms |")
    print("|---|---|---|---|---|---|")
    for name in names:
        good = [f for f in results.get(name, []) if not f.error]
        if not good:
            errors = [f.error for f in results.get(name, []) if f.error]
            print(f"| {name} | failed: {errors[0] if errors else 'no run'} | | | | |")
            continue
        kind = "sync" if " sync" in name else "async"
        cpu = med([f.turn_cpu_ms for f in good])
        over = cpu - base[kind]
        share = f"{over / aws[kind]:.2f}" if not name.startswith(MEMORY) and aws[kind] > 0 else ""
        print(
            f"| {name} | {med([f.turn_wall_ms for f in good]):.2f} | {cpu:.2f} | "
            f"{over:.2f} | {share} | {med([f.turn_server_ms for f in good]):.2f} |"
        )
    ops = ("put", "put_writes", "get_tuple", "list")
    print("\nPer call, microseconds (client without the serializer / server):")
    print("| saver | " + " | ".join(ops) + " |")
    print("|---|" + "---|" * len(ops))
    for name in names:
        good = [f for f in results.get(name, []) if not f.error and f.client_us]
        if not good:
            continue
        client = {op: med([f.client_us[op] for f in good]) for op in ops}
        server = {op: med([f.server_us[op] for f in good]) for op in ops}
        cells = [f"{client[op]:.0f} / {server[op]:.0f}" for op in ops]
        print(f"| {name} | " + " | ".join(cells) + " |")


async def bench(args: argparse.Namespace, url: str) -> None:
    chosen = [s for s in SAVERS if any(s.name.startswith(p) for p in args.savers)]
    recorded = record(args.turns)
    results: dict[str, list[Figures]] = {}
    for r in range(args.rounds):
        for saver in chosen if r % 2 == 0 else list(reversed(chosen)):
            try:
                got = await run_one(saver, url, args, recorded)
            except Exception as exc:  # reported, not hidden
                got = Figures(error=f"{type(exc).__name__}: {exc}"[:160])
            results.setdefault(saver.name, []).append(got)
            print(f"round {r + 1}: {saver.name} done", flush=True)
    report([s.name for s in chosen], results)


@contextlib.contextmanager
def server() -> Iterator[str]:
    dep = start("standalone", owner_pid=os.getpid())
    try:
        yield dep.url
    finally:
        stop(dep)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--savers",
        type=lambda s: s.split(","),
        default=[MEMORY, "ours", "aws", "plainredis", "reference"],
        help="name prefixes of the savers to run",
    )
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.turns} turns, {args.rounds} rounds "
        f"interleaved, {REPLAY_THREADS} threads of replayed calls, {READS} reads"
    )
    with server() as url:
        asyncio.run(bench(args, url))


if __name__ == "__main__":
    main()

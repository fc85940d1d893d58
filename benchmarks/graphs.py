"""A ReAct-style agent, end to end, on every saver a user would consider.

    python -m benchmarks.graphs [--turns 30] [--threads 32] [--rounds 3]
                                [--rtt 0,0.5,2] [--savers ours,postgres,...]

Workload (benchmarks/agent.py): user turns of five supersteps each (agent -> tool ->
agent -> tool -> agent), LangChain messages with tool calls through add_messages,
the history growing turn by turn; messages in a plain channel or a DeltaChannel;
LangGraph's default durability ("async": a step's checkpoint is written while the
next step runs) or ``durability="sync"``.

For each round trip time (``--rtt``, ms; 0 is plain loopback, others go through
the harness's latency proxy, cluster/latency.py, in front of the standalone server
and PostgreSQL), each durability and each kind of messages, in interleaved rounds:
- sequential: one thread, ``--turns`` turns one after another: turns/s, turn p50/p99;
- concurrent: ``--threads`` threads at once, 5 turns each: turns/s;
- get_state and get_state_history(limit=10) on the sequential thread (median ms);
- round trips per turn, counted by the proxy (a request after a reply is a trip).

Savers: ours (AsyncRedisClusterSaver and RedisClusterSaver on the standalone server;
the async one on the 3+3 cluster at loopback), InMemorySaver (no I/O: the limit),
langgraph-checkpoint-redis (the reference), langgraph-checkpoint-aws's
AsyncValkeySaver, langgraph-checkpoint-plainredis, and langgraph-checkpoint-postgres
(AsyncPostgresSaver on a psycopg pool). The Redis savers share one valkey 9.1 with
RedisJSON and RediSearch (the reference needs them), each under its own prefix or
database. Ratios are ours (async, standalone) over each peer, median over rounds:
sequential turns/s, concurrent turns/s, and the peer's median turn latency over ours
(each round's median turn: a few slow turns move a mean, not a median).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from langgraph.checkpoint.memory import InMemorySaver

from benchmarks.agent import SUPERSTEPS_PER_TURN, build, user_turn
from cluster import latency
from cluster.harness import start, stop
from cluster.model import Deployment
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

OURS = "ours"
CONCURRENT_TURNS = 5


@dataclass
class Servers:
    """Where each saver connects, at one round trip time."""

    redis: str
    postgres: str | None
    cluster: str | None
    counters: dict[str, latency.LatencyProxy] = field(default_factory=dict)
    """The proxies in front of redis and postgres (they count round trips)."""


Factory = Callable[[Servers], contextlib.AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Saver:
    name: str
    make: Factory
    sync: bool = False
    server: str | None = "redis"
    """Which proxy counts its round trips (None: no I/O, or not counted)."""
    loopback_only: bool = False


@contextlib.asynccontextmanager
async def _ours_on(url: str, tag: str) -> AsyncIterator[Any]:
    saver = AsyncRedisClusterSaver(url, key_prefix=f"{tag}{uuid.uuid4().hex[:6]}")
    await saver.asetup()
    try:
        yield saver
    finally:
        await saver.aclose()


def ours_async(servers: Servers) -> contextlib.AbstractAsyncContextManager[Any]:
    return _ours_on(servers.redis, "o")


@contextlib.asynccontextmanager
async def ours_sync(servers: Servers) -> AsyncIterator[Any]:
    with RedisClusterSaver.from_conn_string(
        servers.redis, key_prefix=f"s{uuid.uuid4().hex[:6]}"
    ) as saver:
        yield saver


def ours_cluster(servers: Servers) -> contextlib.AbstractAsyncContextManager[Any]:
    assert servers.cluster is not None
    return _ours_on(servers.cluster, "c")


@contextlib.asynccontextmanager
async def in_memory(servers: Servers) -> AsyncIterator[Any]:
    yield InMemorySaver()


@contextlib.asynccontextmanager
async def reference(servers: Servers) -> AsyncIterator[Any]:
    from langgraph.checkpoint.redis.aio import AsyncRedisSaver

    async with AsyncRedisSaver.from_conn_string(servers.redis) as saver:
        await saver.asetup()
        yield saver


@contextlib.asynccontextmanager
async def aws(servers: Servers) -> AsyncIterator[Any]:
    from langgraph_checkpoint_aws.checkpoint.valkey import AsyncValkeySaver

    async with AsyncValkeySaver.from_conn_string(servers.redis, pool_size=64) as saver:
        yield saver


@contextlib.asynccontextmanager
async def plainredis(servers: Servers) -> AsyncIterator[Any]:
    from langgraph_checkpoint_plainredis import AsyncRedisSaver

    saver = AsyncRedisSaver(url=servers.redis, prefix=f"p{uuid.uuid4().hex[:6]}")
    try:
        yield saver
    finally:
        await saver.client.aclose()


@contextlib.asynccontextmanager
async def postgres(servers: Servers) -> AsyncIterator[Any]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    assert servers.postgres is not None
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        servers.postgres, max_size=64, kwargs=kwargs, open=False
    ) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver


SAVERS = [
    Saver(OURS, ours_async),
    Saver("ours sync", ours_sync, sync=True),
    Saver("ours cluster", ours_cluster, server=None, loopback_only=True),
    Saver("in-memory", in_memory, server=None),
    Saver("reference", reference),
    Saver("aws valkey", aws),
    Saver("plainredis", plainredis),
    Saver("postgres", postgres, server="postgres"),
]


@dataclass
class Figures:
    turn_s: list[float] = field(default_factory=list)
    """Seconds per sequential turn."""
    concurrent_rate: float = 0.0
    get_state_ms: float = 0.0
    history_ms: float = 0.0
    trips_per_turn: float | None = None
    failed: int = 0
    error: str = ""


class Runner:
    """Runs one saver's graphs, sync or async, with the same calls."""

    def __init__(self, saver: Saver, checkpointer: Any, delta: bool, durability: str) -> None:
        self.app = build(checkpointer, delta)
        self.sync = saver.sync
        self.durability = durability
        self.pool = ThreadPoolExecutor(max_workers=64) if saver.sync else None

    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        """A sync saver's graph call, on a worker thread (the loop goes on)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def turn(self, thread: str, n: int) -> None:
        config = {"configurable": {"thread_id": thread}}
        kwargs = {"durability": self.durability}
        if self.pool is None:
            await self.app.ainvoke(user_turn(n), config, **kwargs)
        else:
            await self.in_thread(lambda: self.app.invoke(user_turn(n), config, **kwargs))

    async def state(self, thread: str) -> Any:
        config = {"configurable": {"thread_id": thread}}
        if self.pool is None:
            return await self.app.aget_state(config)
        return await self.in_thread(lambda: self.app.get_state(config))

    async def history(self, thread: str) -> list[Any]:
        config = {"configurable": {"thread_id": thread}}
        if self.pool is None:
            return [s async for s in self.app.aget_state_history(config, limit=10)]
        return await self.in_thread(lambda: list(self.app.get_state_history(config, limit=10)))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


async def timed_ms(
    fn: Callable[[], Awaitable[Any]], repeat: int = 15, budget: float = 1.5
) -> float:
    """Median of up to ``repeat`` calls (at least 3, fewer past ``budget`` seconds)."""
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < repeat and (len(samples) < 3 or time.perf_counter() - began < budget):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


async def measure(
    saver: Saver, servers: Servers, delta: bool, durability: str, turns: int, threads: int
) -> Figures:
    figures = Figures()
    async with saver.make(servers) as checkpointer:
        runner = Runner(saver, checkpointer, delta, durability)
        try:
            tag = uuid.uuid4().hex[:8]
            await runner.turn(f"warm-{tag}", 0)
            thread = f"seq-{tag}"
            proxy = servers.counters.get(saver.server or "")
            if proxy is not None:
                proxy.reset()
            for n in range(turns):
                t0 = time.perf_counter()
                await runner.turn(thread, n)
                figures.turn_s.append(time.perf_counter() - t0)
            if proxy is not None:
                await asyncio.sleep(0.05)  # the last trips' replies through the proxy
                figures.trips_per_turn = proxy.stats().round_trips / turns
            figures.get_state_ms = await timed_ms(lambda: runner.state(thread))
            figures.history_ms = await timed_ms(lambda: runner.history(thread))
            state = await runner.state(thread)
            if len(state.values["messages"]) != turns * (SUPERSTEPS_PER_TURN + 1):
                raise AssertionError(f"{saver.name}: the thread lost messages")
            figures.concurrent_rate, figures.failed = await concurrent(runner, threads, tag)
        finally:
            runner.close()
    return figures


async def count_trips(saver: Saver, servers: Servers, delta: bool, durability: str) -> float:
    """Round trips per turn of a thread's first turns, as the proxy saw them."""
    proxy = servers.counters[saver.server or ""]
    async with saver.make(servers) as checkpointer:
        runner = Runner(saver, checkpointer, delta, durability)
        try:
            thread = f"count-{uuid.uuid4().hex[:8]}"
            await runner.turn(thread, 0)
            await asyncio.sleep(0.05)
            proxy.reset()
            for n in range(1, 6):
                await runner.turn(thread, n)
            await asyncio.sleep(0.05)
            return proxy.stats().round_trips / 5
        finally:
            runner.close()


async def concurrent(runner: Runner, threads: int, tag: str) -> tuple[float, int]:
    async def one(i: int) -> None:
        for n in range(CONCURRENT_TURNS):
            await runner.turn(f"con-{tag}-{i}", n)

    t0 = time.perf_counter()
    done = await asyncio.gather(*(one(i) for i in range(threads)), return_exceptions=True)
    elapsed = time.perf_counter() - t0
    failed = sum(1 for d in done if isinstance(d, BaseException))
    return (threads - failed) * CONCURRENT_TURNS / elapsed, failed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Key = tuple[float, str, bool]  # rtt ms, durability, delta


async def bench(args: argparse.Namespace, deps: dict[str, Deployment]) -> None:
    chosen = [s for s in SAVERS if s.name in args.savers]
    results: dict[tuple[Key, str], list[Figures]] = {}
    trips: dict[tuple[Key, str], float] = {}
    measured: dict[float, float] = {}
    for rtt in args.rtt:
        for durability in ("async", "sync"):
            for delta in (False, True):
                key = (rtt, durability, delta)
                for _ in range(args.rounds):
                    with servers_at(rtt, deps, proxied=False) as servers:
                        measured[rtt] = ping_ms(servers.redis)
                        for saver in chosen:
                            if saver.loopback_only and (rtt or servers.cluster is None):
                                continue
                            if saver.server == "postgres" and servers.postgres is None:
                                continue
                            try:
                                got = await measure(
                                    saver, servers, delta, durability, args.turns, args.threads
                                )
                            except Exception as exc:  # reported, not hidden
                                got = Figures(error=f"{type(exc).__name__}: {exc}"[:160])
                            results.setdefault((key, saver.name), []).append(got)
                if not rtt and args.trips:  # trips per turn: a pass through a proxy, no delay
                    with servers_at(0, deps, proxied=True) as servers:
                        for saver in chosen:
                            if saver.server in servers.counters:
                                trips[(key, saver.name)] = await count_trips(
                                    saver, servers, delta, durability
                                )
                report(key, [s.name for s in chosen], results, trips, measured[rtt])


@contextlib.contextmanager
def servers_at(rtt: float, deps: dict[str, Deployment], proxied: bool) -> Iterator[Servers]:
    """The servers as the savers reach them: straight at loopback, else through a
    latency proxy (which counts round trips); ``proxied`` puts a proxy with no delay
    in front at loopback too, for the pass that counts round trips."""
    cluster_url = deps["cluster"].url if "cluster" in deps else None
    if not rtt and not proxied:
        pg = deps.get("postgres")
        yield Servers(deps["standalone"].url, pg.url if pg else None, cluster_url)
        return
    delay = rtt / 2 / 1000
    with contextlib.ExitStack() as stack:
        proxy, url = latency.behind(deps["standalone"], delay)
        stack.enter_context(proxy)
        counters = {"redis": proxy}
        pg_url = None
        if "postgres" in deps:
            pg_proxy, pg_url = latency.behind(deps["postgres"], delay)
            stack.enter_context(pg_proxy)
            counters["postgres"] = pg_proxy
        yield Servers(url, pg_url, None, counters)


def ping_ms(url: str) -> float:
    """The median PING round trip to ``url`` (through the proxy, if any)."""
    client = redis.Redis.from_url(url)
    try:
        samples = []
        for _ in range(200):
            t0 = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples)
    finally:
        client.close()


def report(
    key: Key,
    names: list[str],
    results: dict[tuple[Key, str], list[Figures]],
    counted: dict[tuple[Key, str], float],
    ping: float,
) -> None:
    rtt, durability, delta = key
    title = "loopback" if not rtt else f"{rtt:g} ms RTT set"
    title += f" (PING {ping:.2f} ms)"
    print(
        f"\n{title}, durability={durability!r}, messages {'as DeltaChannel' if delta else 'plain'}:"
    )
    print(
        "| saver | turns/s | turn p50/p99 ms | concurrent turns/s | get_state ms | "
        "history(10) ms | trips/turn | ours / saver (seq turns/s, concurrent, median turn) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ours = results.get((key, OURS))
    for name in names:
        runs = results.get((key, name))
        if not runs:
            continue
        errors = [r.error for r in runs if r.error]
        good = [r for r in runs if not r.error]
        if not good:
            print(f"| {name} | failed: {errors[0]} | | | | | | |")
            continue
        rate = statistics.median(len(r.turn_s) / sum(r.turn_s) for r in good)
        conc = statistics.median(r.concurrent_rate for r in good)
        every = [x * 1000 for r in good for x in r.turn_s]
        trips = [r.trips_per_turn for r in good if r.trips_per_turn is not None]
        if (key, name) in counted:
            trips = [counted[(key, name)]]
        failed = sum(r.failed for r in good)
        ratio = ""
        if ours and name != OURS:
            pairs = [
                (len(o.turn_s) / sum(o.turn_s)) / (len(p.turn_s) / sum(p.turn_s))
                for o, p in zip(ours, runs, strict=False)
                if not o.error and not p.error
            ]
            cpairs = [
                o.concurrent_rate / p.concurrent_rate
                for o, p in zip(ours, runs, strict=False)
                if not o.error and not p.error and p.concurrent_rate
            ]
            mpairs = [  # a few slow turns move a mean over 30 turns, not a median
                statistics.median(p.turn_s) / statistics.median(o.turn_s)
                for o, p in zip(ours, runs, strict=False)
                if not o.error and not p.error and o.turn_s and p.turn_s
            ]
            if pairs:
                ratio = f"{statistics.median(pairs):.2f}x"
            if cpairs:
                ratio += f", {statistics.median(cpairs):.2f}x"
            if mpairs:
                ratio += f", {statistics.median(mpairs):.2f}x"
        trip_text = f"{statistics.median(trips):.1f}" if trips else "-"
        print(
            f"| {name} | {rate:.1f} | {pct(every, 0.5):.1f}/{pct(every, 0.99):.1f} | "
            f"{conc:.1f}{f' ({failed} failed runs)' if failed else ''} | "
            f"{statistics.median(r.get_state_ms for r in good):.2f} | "
            f"{statistics.median(r.history_ms for r in good):.2f} | {trip_text} | {ratio} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rtt", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.5, 2.0]
    )
    parser.add_argument("--savers", type=lambda s: s.split(","), default=[s.name for s in SAVERS])
    parser.add_argument(
        "--no-trips", dest="trips", action="store_false", help="skip counting round trips"
    )
    args = parser.parse_args()
    deps: dict[str, Deployment] = {}
    try:
        deps["standalone"] = start("standalone", owner_pid=os.getpid())
        if "ours cluster" in args.savers:
            deps["cluster"] = start("cluster", owner_pid=os.getpid())
        if "postgres" in args.savers:
            with contextlib.suppress(Exception):
                deps["postgres"] = start("postgres", owner_pid=os.getpid())
        print(
            f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; {args.turns} turns x "
            f"{SUPERSTEPS_PER_TURN} supersteps sequential, {args.threads} threads x "
            f"{CONCURRENT_TURNS} turns concurrent, {args.rounds} rounds interleaved"
        )
        asyncio.run(bench(args, deps))
    finally:
        for dep in deps.values():
            stop(dep)


if __name__ == "__main__":
    main()

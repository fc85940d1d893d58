"""Our savers against the reference (langgraph-checkpoint-redis) on the same server,
in one run, interleaved A B A B so drift cancels out.

    python -m benchmarks.compare [--steps 300] [--rounds 3]

Workload: one thread grows for STEPS steps (a message list that grows each step and
three channels that rarely change), put + put_writes per step; then get_tuple(latest),
get_tuple(by id), list(limit=10) and list(all). Figures: ops/s (median over rounds),
p50/p99 latency, Redis commands and round trips per operation (counted at the
socket), server memory per checkpoint (used_memory delta), each with ours/reference.
Then the bare-client limit (our exact packets replayed by a plain connection) and
how our latency grows with history length.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.cluster
import redis.connection
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.redis import AsyncRedisSaver, RedisSaver

from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

SENT: list[bytes] = []


@contextmanager
def counting() -> Iterator[list[bytes]]:
    """Every packet sent, sync and async: one packet is one round trip (asyncio
    connections all write through the stream writer, whoever packed the bytes)."""
    sync_send = redis.connection.Connection.send_packed_command
    async_write = asyncio.StreamWriter.writelines

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        SENT.append(command if isinstance(command, bytes) else b"".join(command))
        sync_send(self, command, check_health)

    def awrite(self: asyncio.StreamWriter, data: Iterable[bytes]) -> None:
        chunks = list(data)
        SENT.append(b"".join(chunks))
        async_write(self, chunks)

    redis.connection.Connection.send_packed_command = send  # type: ignore[method-assign]
    asyncio.StreamWriter.writelines = awrite  # type: ignore[method-assign]
    try:
        yield SENT
    finally:
        redis.connection.Connection.send_packed_command = sync_send  # type: ignore[method-assign]
        asyncio.StreamWriter.writelines = async_write  # type: ignore[method-assign]


def commands(packet: bytes) -> int:
    return (
        sum(1 for line in packet.split(b"\r\n") if line.startswith(b"*") and line[1:].isdigit())
        or 1
    )


class Step:
    """The workload's step i: what put and put_writes get."""

    def __init__(self, i: int) -> None:
        cp = empty_checkpoint()
        self.messages = [f"message {j}: " + "x" * 80 for j in range(i + 1)]
        rare = i // 50
        cp["channel_values"] = {
            "messages": self.messages,
            "profile": {"user": "u1", "tier": rare},
            "plan": [f"step-{rare}"],
            "flags": {"verbose": bool(rare % 2)},
        }
        cp["channel_versions"] = {
            "messages": i + 1,
            "profile": rare + 1,
            "plan": rare + 1,
            "flags": rare + 1,
        }
        self.checkpoint = cp
        self.new_versions = {"messages": i + 1}
        if i % 50 == 0:
            self.new_versions.update({"profile": rare + 1, "plan": rare + 1, "flags": rare + 1})
        self.metadata = {"source": "loop", "step": i, "run_id": "bench", "parents": {}}


STEPS: list[Step] = []


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def call(saver: Any, style: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """A saver method in the style measured (``a<name>`` awaited for async); the same
    thin wrapper for both styles and both savers, so ratios compare like with like."""
    if style == "sync":
        result = getattr(saver, name)(*args, **kwargs)
        return list(result) if name == "list" else result
    if name == "list":
        return [x async for x in saver.alist(*args, **kwargs)]
    return await getattr(saver, "a" + name)(*args, **kwargs)


async def run(saver: Any, style: str, thread: str, steps: int) -> dict[str, list[float]]:
    """The workload on one saver in one style: a thread growing for ``steps`` steps
    (put + put_writes each), then reads."""
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    times: dict[str, list[float]] = {
        k: [] for k in ("put+writes", "get latest", "get by id", "list 10", "list all")
    }
    ids = []
    for i in range(steps):
        s = STEPS[i]
        t = time.perf_counter()
        config = await call(saver, style, "put", config, s.checkpoint, s.metadata, s.new_versions)
        writes = [("messages", s.messages[-1]), ("plan", "p")]
        await call(saver, style, "put_writes", config, writes, f"task-{i}")
        times["put+writes"].append(time.perf_counter() - t)
        ids.append(config)
    latest: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    for i in range(100):
        for name, method, args, kwargs in (
            ("get latest", "get_tuple", (latest,), {}),
            ("get by id", "get_tuple", (ids[(i * 37) % len(ids)],), {}),
            ("list 10", "list", (latest,), {"limit": 10}),
        ):
            t = time.perf_counter()
            await call(saver, style, method, *args, **kwargs)
            times[name].append(time.perf_counter() - t)
    for _ in range(3):
        t = time.perf_counter()
        await call(saver, style, "list", latest)
        times["list all"].append(time.perf_counter() - t)
    return times


def per_op_counts(fn: Callable[[], Any]) -> tuple[float, float]:
    """(commands, round trips) of one call."""
    SENT.clear()
    fn()
    return float(sum(commands(p) for p in SENT)), float(len(SENT))


def op_counts(name: str, saver: Any, thread: str) -> dict[tuple[str, str], tuple[float, float]]:
    """Commands and round trips of one put + put_writes, get_tuple and list(limit=10)."""
    cfg: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    step = STEPS[-1]

    def pair() -> None:
        stored = saver.put(cfg, step.checkpoint, step.metadata, step.new_versions)
        saver.put_writes(stored, [("m", 1)], "t")

    return {
        (name, "put+writes"): per_op_counts(pair),
        (name, "get latest"): per_op_counts(lambda: saver.get_tuple(cfg)),
        (name, "list 10"): per_op_counts(lambda: list(saver.list(cfg, limit=10))),
    }


def key_memory(url: str) -> dict[bytes, int]:
    """MEMORY USAGE of every key: the delta over a run is what the run stored (a
    used_memory delta is blurred by allocator caches and the reference's indexes)."""
    c = redis.Redis.from_url(url)
    try:
        return {k: int(c.memory_usage(k, samples=0) or 0) for k in c.scan_iter(count=1000)}
    finally:
        c.close()


def bare_limit(url: str, saver: Any, thread: str) -> dict[str, tuple[float, float]]:
    """The workload's own packets replayed by a plain connection with nothing else
    around them (what the network and server allow), against the saver doing the
    same work: put + put_writes over the 300 steps (a fresh thread each burst) and
    get_tuple(latest). Interleaved in bursts, so both see the same machine.
    Returns (bare ops/s, ours ops/s) per operation."""
    latest: Any = {"configurable": {"thread_id": f"{thread}-0", "checkpoint_ns": ""}}
    bursts = iter(range(1_000_000))  # thread-0, written first, is the one read

    def steps() -> int:
        cfg: Any = {"configurable": {"thread_id": f"{thread}-{next(bursts)}", "checkpoint_ns": ""}}
        for i, s in enumerate(STEPS):
            cfg = saver.put(cfg, s.checkpoint, s.metadata, s.new_versions)
            saver.put_writes(cfg, [("messages", s.messages[-1]), ("plan", "p")], f"task-{i}")
        return len(STEPS)

    def get() -> int:
        for _ in range(200):
            saver.get_tuple(latest)
        return 200

    conn = redis.Redis.from_url(url).connection_pool.get_connection()
    rates: dict[str, tuple[float, float]] = {}
    for name, op in (("put+writes", steps), ("get latest", get)):
        SENT.clear()
        count = op()
        packets = list(SENT)
        bare, ours = [], []
        for _ in range(5):
            began = time.perf_counter()
            for packet in packets:
                conn.send_packed_command([packet])
                for _ in range(commands(packet)):
                    conn.read_response()
            bare.append(count / (time.perf_counter() - began))
            began = time.perf_counter()
            op()
            ours.append(count / (time.perf_counter() - began))
        rates[name] = (statistics.median(bare), statistics.median(ours))
    conn.disconnect()
    return rates


def growth(url: str) -> list[tuple[int, dict[str, float]]]:
    """p50 latency (ms) on threads that already hold 10, 1,000 and 10,000 checkpoints,
    measured round-robin over the three, so the machine's drift hits all alike."""
    sizes = (10, 1000, 10_000)
    with RedisClusterSaver.from_conn_string(url, key_prefix="growth") as saver:
        cfgs: dict[int, Any] = {}
        for size in sizes:
            cfg: Any = {"configurable": {"thread_id": f"growth-{size}", "checkpoint_ns": ""}}
            for i in range(size):
                s = STEPS[i % 20]  # short histories: the point is the number of checkpoints
                cp = dict(s.checkpoint, id=f"{i:08d}-{uuid.uuid4().hex[:8]}")
                cfg = saver.put(cfg, cp, s.metadata, s.new_versions)  # type: ignore[arg-type]
            cfgs[size] = cfg
        lat = {n: {"get latest": [], "put+writes": [], "list 10": []} for n in sizes}
        for i in range(200):
            for size in sizes:
                latest: Any = {"configurable": {"thread_id": f"growth-{size}", "checkpoint_ns": ""}}
                t = time.perf_counter()
                saver.get_tuple(latest)
                lat[size]["get latest"].append(time.perf_counter() - t)
                s = STEPS[i % 20]
                cp = dict(s.checkpoint, id=f"{size + i:08d}-{uuid.uuid4().hex[:8]}")
                t = time.perf_counter()
                cfgs[size] = saver.put(cfgs[size], cp, s.metadata, s.new_versions)  # type: ignore[arg-type]
                saver.put_writes(cfgs[size], [("m", i)], "t")
                lat[size]["put+writes"].append(time.perf_counter() - t)
                t = time.perf_counter()
                list(saver.list(latest, limit=10))
                lat[size]["list 10"].append(time.perf_counter() - t)
    return [(n, {k: statistics.median(v) * 1000 for k, v in lat[n].items()}) for n in sizes]


def cluster_spread(
    threads: int = 32, waves: int = 60, steps: int = 5
) -> tuple[dict[str, int], float, dict[str, int], list[int]]:
    """Commands each primary served while 32 threads ran concurrently (async saver),
    in waves of fresh uuid4 thread ids. Random ids split over three primaries like
    random draws (one wave of 32: 11/11/10 at best; 1,920 ids: a few percent apart),
    so this also returns the threads each primary owned, all waves and the first:
    commands per owned thread show what the saver itself adds."""
    dep = start("cluster", owner_pid=os.getpid())
    try:

        def calls(node: Any) -> int:
            c = redis.Redis(host=node.host, port=node.port)
            try:
                return sum(int(v["calls"]) for v in c.info("commandstats").values())
            finally:
                c.close()

        before = {p.name: calls(p) for p in dep.primaries}
        everyone: list[str] = []

        async def run() -> float:
            async with AsyncRedisClusterSaver.from_conn_string(dep.url, key_prefix="spread") as s:

                async def one(thread: str) -> None:
                    cfg: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
                    for i in range(steps):
                        st = STEPS[i]
                        cfg = await s.aput(cfg, st.checkpoint, st.metadata, st.new_versions)
                        await s.aput_writes(cfg, [("m", i)], "t")
                        await s.aget_tuple(cfg)

                began = time.perf_counter()
                for _ in range(waves):
                    ids = [str(uuid.uuid4()) for _ in range(threads)]
                    everyone.extend(ids)
                    await asyncio.gather(*(one(t) for t in ids))
                return waves * threads * steps / (time.perf_counter() - began)

        rate = asyncio.run(run())
        layout = RedisClusterSaver(dep.url, key_prefix="spread").ops.layout
        rc = redis.cluster.RedisCluster.from_url(dep.url)
        try:
            ports = [rc.get_node_from_key(layout.thread(t).namespaces).port for t in everyone]
        finally:
            rc.close()
        owned = {p.name: ports.count(p.port) for p in dep.primaries}
        first = [ports[:threads].count(p.port) for p in dep.primaries]
        served = {p.name: calls(p) - before[p.name] for p in dep.primaries}
        return served, rate, owned, first
    finally:
        stop(dep)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    STEPS.extend(Step(i) for i in range(args.steps))
    dep = start("standalone", owner_pid=os.getpid())
    url = dep.url
    results: dict[tuple[str, str], list[dict[str, list[float]]]] = {}
    memory: dict[str, float] = {}
    counts: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        ours_sync = RedisClusterSaver(url, key_prefix="ours")
        ours_sync.setup()
        ref_sync = RedisSaver(url)
        ref_sync.setup()
        savers_sync = {"ours": ours_sync, "reference": ref_sync}
        with counting():
            for r in range(args.rounds):
                for name, saver in savers_sync.items():
                    before = key_memory(url) if r == 0 else {}
                    thread = f"{name}-sync-{r}-{uuid.uuid4().hex[:6]}"
                    results.setdefault((name, "sync"), []).append(
                        asyncio.run(run(saver, "sync", thread, args.steps))
                    )
                    if r == 0:
                        after = key_memory(url)
                        stored_bytes = sum(v for k, v in after.items() if k not in before)
                        memory[name] = stored_bytes / args.steps
                        counts.update(op_counts(name, saver, thread))

            async def async_rounds() -> None:
                ours = AsyncRedisClusterSaver(url, key_prefix="ours")
                await ours.asetup()
                async with AsyncRedisSaver.from_conn_string(url) as ref:
                    await ref.asetup()
                    for r in range(args.rounds):
                        for name, saver in (("ours", ours), ("reference", ref)):
                            thread = f"{name}-async-{r}-{uuid.uuid4().hex[:6]}"
                            results.setdefault((name, "async"), []).append(
                                await run(saver, "async", thread, args.steps)
                            )
                await ours.aclose()

            asyncio.run(async_rounds())
            bare = bare_limit(url, ours_sync, "bare")
        grown = growth(url)
    finally:
        stop(dep)
    spread, spread_rate, owned, split = cluster_spread()
    print(
        f"\n{args.steps}-step thread, {args.rounds} rounds interleaved; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "| operation | style | ours ops/s | reference ops/s | ratio | ours p50/p99 ms | "
        "reference p50/p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for style in ("sync", "async"):
        for op in ("put+writes", "get latest", "get by id", "list 10", "list all"):
            rates, lat = {}, {}
            for name in ("ours", "reference"):
                runs = results[(name, style)]
                rates[name] = statistics.median(len(r[op]) / sum(r[op]) for r in runs)
                allv = [x * 1000 for r in runs for x in r[op]]
                lat[name] = f"{percentile(allv, 0.5):.2f}/{percentile(allv, 0.99):.2f}"
            print(
                f"| {op} | {style} | {rates['ours']:.0f} | {rates['reference']:.0f} | "
                f"{rates['ours'] / rates['reference']:.1f}x | {lat['ours']} | {lat['reference']} |"
            )
    print("\n| operation | ours commands / round trips | reference commands / round trips |")
    print("|---|---|---|")
    for op in ("put+writes", "get latest", "list 10"):
        o, r = counts[("ours", op)], counts[("reference", op)]
        print(f"| {op} | {o[0]:.0f} / {o[1]:.0f} | {r[0]:.0f} / {r[1]:.0f} |")
    print(
        f"\nserver memory per checkpoint: ours {memory['ours']:.0f} B, reference "
        f"{memory['reference']:.0f} B, ratio {memory['ours'] / memory['reference']:.2f}"
    )
    print("\n| operation | bare client ops/s (our packets) | ours sync ops/s | ours / bare |")
    print("|---|---|---|---|")
    for op, (limit, ours) in bare.items():
        print(f"| {op} | {limit:.0f} | {ours:.0f} | {ours / limit:.0%} |")
    print("\n| checkpoints in thread | get latest p50 ms | put+writes p50 ms | list 10 p50 ms |")
    print("|---|---|---|---|")
    for size, lat in grown:
        print(
            f"| {size} | {lat['get latest']:.2f} | {lat['put+writes']:.2f} | {lat['list 10']:.2f} |"
        )
    total = sum(spread.values())
    shares = ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in spread.items())
    per_thread = {k: spread[k] / max(1, owned[k]) for k in spread}
    print(
        f"\ncluster, 32 concurrent threads (async saver), 60 waves of fresh uuid4 thread ids: "
        f"{spread_rate:.0f} steps/s; commands per primary: {shares}; "
        f"max/min {max(spread.values()) / min(spread.values()):.2f}; threads each primary "
        f"owned: {', '.join(f'{k} {v}' for k, v in owned.items())} (first wave: {split}); "
        f"commands per owned thread: {', '.join(f'{k} {v:.1f}' for k, v in per_thread.items())}"
        f", max/min {max(per_thread.values()) / min(per_thread.values()):.3f}"
    )


if __name__ == "__main__":
    main()

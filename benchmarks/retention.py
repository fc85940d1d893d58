"""Retention on write: memory and put latency of a long thread, with and without it.

    python -m benchmarks.retention [--steps 10000] [--keep 10]

Workload: one thread, put + put_writes per step (LangGraph's order), a message list
that grows by one 80-byte message per step, kept to its last 50 (as an agent that
trims its history), a step counter, and a task's two pending writes. Figures: the
server memory of the thread's keys (MEMORY USAGE, summed) at step 100 and at the
last step, and the put p50 over the 100 steps after step 100 and over the last 100
steps; with ``retention={"keep_last": --keep}`` and without retention.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import redis
from langgraph.checkpoint.base import empty_checkpoint

from cluster.harness import start, stop
from redis_cluster_saver import RedisClusterSaver

WINDOW = 50


def thread_bytes(client: redis.Redis, prefix: str) -> int:
    total = 0
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if b":dir:" not in key:
            total += int(client.memory_usage(key, samples=0) or 0)
    return total


def run(url: str, steps: int, keep: int | None) -> dict[str, float]:
    prefix = f"ret{keep or 0}x{os.getpid()}"
    options: dict[str, Any] = {"key_prefix": prefix, "search": False}
    if keep:
        options["retention"] = {"keep_last": keep}
    client = redis.Redis.from_url(url)
    out: dict[str, float] = {}
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        config: Any = {"configurable": {"thread_id": "long", "checkpoint_ns": ""}}
        messages: list[str] = []
        early: list[float] = []
        late: list[float] = []
        for i in range(steps):
            messages = [*messages, f"message {i}: " + "x" * 68][-WINDOW:]
            cp = empty_checkpoint()
            cp["channel_values"] = {"messages": messages, "step": i}
            cp["channel_versions"] = {"messages": i + 1, "step": i + 1}
            t0 = time.perf_counter()
            config = saver.put(config, cp, {"source": "loop", "step": i}, {"messages": i + 1})
            took = time.perf_counter() - t0
            saver.put_writes(config, [("messages", [f"reply {i}"]), ("step", i + 1)], f"t{i}")
            if 100 <= i < 200:
                early.append(took)
            if i >= steps - 100:
                late.append(took)
            if i == 100:
                out["bytes at 100"] = thread_bytes(client, prefix)
        out["bytes at end"] = thread_bytes(client, prefix)
        out["put p50 early ms"] = statistics.median(early) * 1000
        out["put p50 late ms"] = statistics.median(late) * 1000
        saver.delete_thread("long")
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--keep", type=int, default=10)
    args = parser.parse_args()
    dep = start("standalone", owner_pid=os.getpid())
    try:
        kept = run(dep.url, args.steps, args.keep)
        whole = run(dep.url, args.steps, None)
    finally:
        stop(dep)
    print(
        f"{args.steps}-step thread, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, valkey on loopback"
    )
    print(
        "| saver | memory at step 100 | at the last step | ratio | "
        "put p50 ms, steps 100-200 / last 100 |"
    )
    print("|---|---|---|---|---|")
    for name, r in ((f"keep_last={args.keep}", kept), ("no retention", whole)):
        print(
            f"| {name} | {r['bytes at 100'] / 1024:.0f} KiB | {r['bytes at end'] / 1024:.0f} KiB | "
            f"{r['bytes at end'] / r['bytes at 100']:.2f} | "
            f"{r['put p50 early ms']:.2f} / {r['put p50 late ms']:.2f} |"
        )


if __name__ == "__main__":
    main()

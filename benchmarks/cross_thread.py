"""Cross-thread queries at scale: the search index, the per-primary fan-out, and
the thread directory, on a standalone server and on a 6-node cluster.

    python -m benchmarks.cross_thread [--threads 10000] [--checkpoints 10]

Loads THREADS x CHECKPOINTS checkpoints (metadata: run_id shared by 10 threads,
source alternating), then times list(None, filter={"run_id": r}),
list(None, filter={"source": "loop"}, limit=50) and delete_for_runs([r]) through
each path, and prints a table (median of the repetitions, milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

PREFIX = "bench"


def run_of(thread: int) -> str:
    return f"run-{thread // 10}"


async def load(url: str, threads: int, checkpoints: int) -> float:
    began = time.perf_counter()
    async with AsyncRedisClusterSaver.from_conn_string(url, key_prefix=PREFIX) as saver:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for t in range(threads):
            queue.put_nowait(t)

        async def worker() -> None:
            while not queue.empty():
                t = queue.get_nowait()
                config: Any = {"configurable": {"thread_id": f"thread-{t}", "checkpoint_ns": ""}}
                for step in range(checkpoints):
                    cp = empty_checkpoint()
                    cp["channel_values"] = {"messages": [f"m{step}"]}
                    cp["channel_versions"] = {"messages": step + 1}
                    md = {
                        "source": "loop" if step % 2 else "input",
                        "step": step,
                        "run_id": run_of(t),
                    }
                    config = await saver.aput(config, cp, md, {"messages": step + 1})  # type: ignore[arg-type]

        await asyncio.gather(*(worker() for _ in range(64)))
    return time.perf_counter() - began


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), result


def measure(url: str, search: bool | None, threads: int, label: str) -> dict[str, Any]:
    with RedisClusterSaver.from_conn_string(url, key_prefix=PREFIX, search=search) as saver:
        runs = iter(range(threads // 10 - 1, 0, -1))
        by_run, hits = timed(
            lambda: list(saver.list(None, filter={"run_id": run_of(10 * next(runs))})), 5
        )
        loop50, page = timed(lambda: list(saver.list(None, filter={"source": "loop"}, limit=50)), 5)
        delete, _ = timed(lambda: saver.delete_for_runs([run_of(10 * next(runs))]), 3)
        caps = saver.capabilities
        assert caps is not None
        return {
            "path": label,
            "list(run_id)": by_run,
            "hits": len(hits),
            "list(source, limit=50)": loop50,
            "page": len(page),
            "delete_for_runs": delete,
            "indexes": len(saver.ops.search_names or []),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--topologies", default="standalone,cluster")
    args = parser.parse_args()
    rows = []
    for topology in args.topologies.split(","):
        dep = start(topology, owner_pid=os.getpid())
        try:
            took = asyncio.run(load(dep.url, args.threads, args.checkpoints))
            total = args.threads * args.checkpoints
            print(f"{topology}: loaded {total} checkpoints in {took:.1f} s ({total / took:.0f}/s)")
            indexed = "fan-out" if topology == "cluster" else "index"
            rows.append((topology, measure(dep.url, None, args.threads, indexed)))
            rows.append((topology, measure(dep.url, False, args.threads, "directory")))
        finally:
            stop(dep)
    print(
        f"\n{args.threads} threads x {args.checkpoints} checkpoints; median ms; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    head = ["topology", "path", "list(run_id)", "list(source, limit=50)", "delete_for_runs"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for topology, r in rows:
        print(
            f"| {topology} | {r['path']} | {r['list(run_id)']:.1f} ({r['hits']} hits) | "
            f"{r['list(source, limit=50)']:.1f} | {r['delete_for_runs']:.1f} |"
        )


if __name__ == "__main__":
    main()

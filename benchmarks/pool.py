"""Many graph runs at once on one saver: callers queue for a connection.

    python -m benchmarks.pool [--runs 500] [--rounds 3]

Workload: ``--runs`` concurrent ``ainvoke`` calls of a small StateGraph (three nodes
in a row, each appending to a message list), each on its own thread, on one
AsyncRedisClusterSaver (default options) on a 3+3 harness cluster, against
InMemorySaver under the same load; rounds interleaved ours / in-memory so drift
cancels out. Figures: invoke p50/p99 (from the moment all runs start), their ratio,
failed runs, and what the saver swallowed: errors thrown into its plans, and retry
pauses (each a failover wait of 0.1 or 0.25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import platform
import statistics
import time
import uuid
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver
from redis_cluster_saver.plan import RoundTrip


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    step: int


def node(name: str) -> Any:
    def run(state: State) -> dict[str, Any]:
        return {"messages": [f"{name} {state['step']}: " + "x" * 60], "step": state["step"] + 1}

    return run


def graph(saver: Any) -> Any:
    g = StateGraph(State)
    for name in ("plan", "act", "answer"):
        g.add_node(name, node(name))
    g.add_edge(START, "plan")
    g.add_edge("plan", "act")
    g.add_edge("act", "answer")
    g.add_edge("answer", END)
    return g.compile(checkpointer=saver)


class Tally:
    """What the saver's shell saw: errors thrown into plans, retry pauses."""

    def __init__(self, saver: AsyncRedisClusterSaver) -> None:
        self.errors = self.pauses = 0
        execute = saver.shell.execute

        async def counted(trip: RoundTrip) -> list[Any]:
            if not trip.calls:
                self.pauses += 1
            try:
                return await execute(trip)
            except Exception:
                self.errors += 1
                raise

        saver.shell.execute = counted  # type: ignore[method-assign]


async def burst(app: Any, runs: int, tag: str) -> tuple[list[float], int]:
    """``runs`` invokes started together: their latencies (s) and how many failed."""

    async def one(i: int) -> float:
        began = time.perf_counter()
        out = await app.ainvoke(
            {"messages": ["hello"], "step": 0}, {"configurable": {"thread_id": f"{tag}-{i}"}}
        )
        assert len(out["messages"]) == 4, out
        return time.perf_counter() - began

    results = await asyncio.gather(*(one(i) for i in range(runs)), return_exceptions=True)
    times = [r for r in results if isinstance(r, float)]
    return times, len(results) - len(times)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def bench(url: str, runs: int, rounds: int) -> None:
    ours = AsyncRedisClusterSaver(url, key_prefix=f"bp{uuid.uuid4().hex[:6]}")
    await ours.asetup()
    tally = Tally(ours)
    apps = {"ours": graph(ours), "in-memory": graph(InMemorySaver())}
    for name, app in apps.items():  # warm-up, not counted
        await burst(app, 50, f"warm-{name}")
    tally.errors = tally.pauses = 0
    times: dict[str, list[float]] = {name: [] for name in apps}
    failed = dict.fromkeys(apps, 0)
    p99s: dict[str, list[float]] = {name: [] for name in apps}
    for r in range(rounds):
        for name, app in apps.items():
            got, bad = await burst(app, runs, f"r{r}-{name}")
            times[name] += got
            failed[name] += bad
            p99s[name].append(pct(got, 0.99))
            print(
                f"round {r + 1} {name}: p50 {pct(got, 0.5) * 1000:.0f} ms, "
                f"p99 {pct(got, 0.99) * 1000:.0f} ms, failed {bad}"
            )
    await ours.aclose()
    print(
        f"\n{runs} concurrent graph runs (3 nodes, 4 checkpoints each), {rounds} rounds, "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; ours: AsyncRedisClusterSaver, default "
        "options (max_connections=64 per node), on a 3+3 cluster on loopback"
    )
    print("| saver | invoke p50 ms | invoke p99 ms | p99 median of rounds ms | failed runs |")
    print("|---|---|---|---|---|")
    for name in apps:
        print(
            f"| {name} | {pct(times[name], 0.5) * 1000:.0f} | {pct(times[name], 0.99) * 1000:.0f}"
            f" | {statistics.median(p99s[name]) * 1000:.0f} | {failed[name]} |"
        )
    ratio = pct(times["ours"], 0.99) / pct(times["in-memory"], 0.99)
    print(f"\np99 ours / in-memory: {ratio:.2f}")
    print(f"saver: {tally.errors} errors thrown into plans, {tally.pauses} retry pauses")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dep = start("cluster", owner_pid=os.getpid())
    try:
        asyncio.run(bench(dep.url, args.runs, args.rounds))
    finally:
        stop(dep)


if __name__ == "__main__":
    main()

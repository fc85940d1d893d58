"""The example agent (examples/graph.py) on both savers, sync and asyncio.

    python -m examples.agents [URL]

Without a URL it starts a local standalone server with the project's harness and
stops it at the end. Nothing calls a model: the nodes are plain functions.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from langgraph.types import Command

from cluster.harness import start, stop
from examples.graph import build_graph, run_demo_graph
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver


def sync_agent(url: str) -> None:
    with RedisClusterSaver.from_conn_string(url, key_prefix="example") as saver:
        final = run_demo_graph(saver, "sync-agent")
        print("sync :", final.values["messages"])


async def async_agent(url: str) -> None:
    async with AsyncRedisClusterSaver.from_conn_string(url, key_prefix="example") as saver:
        graph = build_graph(saver)
        config: Any = {"configurable": {"thread_id": "async-agent"}}
        await graph.ainvoke({"topic": "asyncio", "messages": []}, config)
        paused = await graph.aget_state(config)
        print("async: paused before", paused.next)
        await graph.ainvoke(Command(resume=True), config)
        print("async:", (await graph.aget_state(config)).values["messages"])


def main() -> None:
    deployment = None if len(sys.argv) > 1 else start("standalone", owner_pid=os.getpid())
    url = sys.argv[1] if deployment is None else deployment.url
    try:
        sync_agent(url)
        asyncio.run(async_agent(url))
    finally:
        if deployment is not None:
            stop(deployment)


if __name__ == "__main__":
    main()

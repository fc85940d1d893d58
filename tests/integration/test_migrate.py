"""Migration from langgraph-checkpoint-redis, for real: threads written by the older
saver on `standalone`, migrated to `cluster`, compared through both savers."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from langgraph.checkpoint.redis import RedisSaver

from examples.graph import build_graph, run_demo_graph
from redis_cluster_saver import RedisClusterSaver

from .conftest import saver_options


def test_migrate_from_the_older_saver_to_a_cluster(standalone: Any, redis_cluster: Any) -> None:
    source = RedisSaver(standalone.url)
    source.setup()
    threads = ["mig-a", "mig {b}", "mig:c|d"]
    for thread in threads:
        run_demo_graph(source, thread)
    graph = build_graph(source)  # and a fork, for a thread with branches
    config: Any = {"configurable": {"thread_id": threads[0]}}
    graph.update_state(list(graph.get_state_history(config))[2].config, {"topic": "fork"})
    prefix = saver_options(redis_cluster)["key_prefix"]

    def migrate(*extra: str) -> subprocess.CompletedProcess[str]:
        args = ["--url", redis_cluster.url, "--prefix", prefix, "migrate", "--from", standalone.url]
        return subprocess.run(
            [sys.executable, "-m", "redis_cluster_saver", *args, *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = migrate("--verify")
    print(first.stdout)
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and ": 0 differ" in first.stdout
    assert "checkpoints migrated 0" not in first.stdout
    again = migrate()  # re-running after a complete (or an interrupted) run is safe
    assert again.returncode == 0 and "checkpoints migrated 0" in again.stdout
    print(again.stdout)
    with RedisClusterSaver.from_conn_string(redis_cluster.url, key_prefix=prefix) as ours:
        for thread in threads:
            theirs = build_graph(source).get_state({"configurable": {"thread_id": thread}})
            mine = build_graph(ours).get_state({"configurable": {"thread_id": thread}})
            assert mine.values == theirs.values and mine.next == theirs.next
            root: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
            every: Any = {"configurable": {"thread_id": thread}}
            # the older saver's list(checkpoint_ns="") also returns subgraph checkpoints,
            # so its root namespace is picked out by hand
            theirs_root = sorted(
                (
                    t.checkpoint["id"]
                    for t in source.list(every)
                    if t.config["configurable"]["checkpoint_ns"] == ""
                ),
                reverse=True,
            )
            assert [t.checkpoint["id"] for t in ours.list(root)] == theirs_root

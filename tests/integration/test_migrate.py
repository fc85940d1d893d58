"""Migration from langgraph-checkpoint-redis, for real: threads written by the older
saver on `standalone`, migrated to `cluster`, compared through both savers."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

from langgraph.checkpoint.redis import RedisSaver

from examples.graph import build_graph, run_demo_graph
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.migrate import migrate, verify
from tests.support.migration import THREADS, populate, resume, states

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

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        args = ["--url", redis_cluster.url, "--prefix", prefix, "migrate", "--from", standalone.url]
        return subprocess.run(
            [sys.executable, "-m", "redis_cluster_saver", *args, *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = run("--verify")
    print(first.stdout)
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and ": 0 differ" in first.stdout
    assert "checkpoints migrated 0" not in first.stdout
    again = run()  # re-running after a complete (or an interrupted) run is safe
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


def test_the_older_saver_through_the_python_function(standalone: Any, redis_cluster: Any) -> None:
    """Subgraphs, pending writes of a paused fan-out and a fork, read through the older
    saver (its own key prefixes, so other tests' data stays apart). No DeltaChannel:
    the older saver's JSON turns its snapshots into plain dicts, so it cannot hold one."""
    tag = uuid.uuid4().hex[:8]
    source = RedisSaver(
        standalone.url, checkpoint_prefix=f"cp{tag}", checkpoint_write_prefix=f"cw{tag}"
    )
    source.setup()
    populate(source, delta=False)
    options = saver_options(redis_cluster)
    with RedisClusterSaver.from_conn_string(redis_cluster.url, **options) as ours:
        report = migrate(source, ours)
        assert report.threads == len(THREADS) and report.migrated > 0 and report.writes > 0
        assert verify(source, ours) == []
        assert migrate(source, ours).migrated == 0
        for thread in THREADS:
            theirs, mine = states(source, thread, False), states(ours, thread, False)
            assert mine["state"] == theirs["state"], thread
            # the older saver's history holds the subgraphs' checkpoints too, and Send
            # packets as plain dicts (its list(); get_tuple by id, which the migration
            # reads, has the Sends): its root checkpoints are compared by id
            root = [
                h.config["configurable"]["checkpoint_id"]
                for h in theirs["history"]
                if h.config["configurable"]["checkpoint_ns"] == ""
            ]
            assert [h.config["configurable"]["checkpoint_id"] for h in mine["history"]] == root
        assert resume(ours, False) == resume(source, False)

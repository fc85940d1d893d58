"""The command line against a real server: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from examples.graph import build_graph, run_demo_graph
from redis_cluster_saver import RedisClusterSaver

from .conftest import saver_options


def cli(dep: Any, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", "--url", dep.url, "--prefix", prefix, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def populated(standalone: Any) -> tuple[Any, str]:
    options = saver_options(standalone)
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        run_demo_graph(saver, "alpha")
        run_demo_graph(saver, "beta")
        graph = build_graph(saver)  # a fork: update_state on a past checkpoint
        config: Any = {"configurable": {"thread_id": "beta"}}
        past = list(graph.get_state_history(config))[3]
        graph.update_state(past.config, {"topic": "forked"})
    return standalone, options["key_prefix"]


def test_threads_history_tree_show(populated: tuple[Any, str]) -> None:
    dep, prefix = populated
    listed = cli(dep, prefix, "threads")
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["beta", "alpha"]
    hist = cli(dep, prefix, "history", "alpha")
    assert hist.returncode == 0 and "loop" in hist.stdout and "review" in hist.stdout
    assert len(hist.stdout.splitlines()) == 1 + 10  # header + root and subgraph checkpoints
    tree = cli(dep, prefix, "history", "beta", "--tree")
    assert tree.returncode == 0
    roots = [line for line in tree.stdout.splitlines() if line.startswith("- ")]
    assert len(roots) == 1  # one chain from the input checkpoint
    assert "update" in tree.stdout and "[review:" in tree.stdout
    depths = {len(line) - len(line.lstrip()) for line in tree.stdout.splitlines()}
    assert len(depths) > 5
    shown = cli(dep, prefix, "show", "alpha", "--json")
    assert shown.returncode == 0
    doc = json.loads(shown.stdout)
    assert doc["values"]["approved"] is True and doc["config"]["thread_id"] == "alpha"


def test_copy_prune_delete_and_exit_codes(populated: tuple[Any, str]) -> None:
    dep, prefix = populated
    assert cli(dep, prefix, "copy", "alpha", "gamma").returncode == 0
    assert cli(dep, prefix, "prune", "gamma", "--keep-last", "2").returncode == 0
    hist = cli(dep, prefix, "history", "gamma")
    assert len(hist.stdout.splitlines()) == 1 + 4  # 2 per namespace
    assert cli(dep, prefix, "delete", "gamma").returncode == 0
    missing = cli(dep, prefix, "history", "gamma")
    assert missing.returncode == 1 and "no thread 'gamma'" in missing.stderr
    assert cli(dep, prefix, "show", "nobody").returncode == 1
    assert cli(dep, prefix, "delete", "nobody").returncode == 1
    down = subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", "--url", "redis://127.0.0.1:1", "threads"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 2 and "cannot use redis://127.0.0.1:1" in down.stderr

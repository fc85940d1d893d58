"""Migration from other LangGraph savers, for real: threads written through a graph
with a subgraph, interrupts, pending writes, a DeltaChannel and a fork on
PostgreSQL (PostgresSaver), SQLite (SqliteSaver) and Valkey (the AWS ValkeySaver),
migrated into our saver on standalone and on the cluster, then read through a graph
compiled with each saver."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.migrate import (
    MigrationSourceError,
    _task_paths,
    migrate,
    source_saver,
    thread_namespaces,
    verify,
)
from tests.support.migration import (
    THREADS,
    build_mixed_graph,
    cfg,
    populate,
    postgres_source,
    resume,
    sqlite_source,
    states,
    valkey_source,
)

from .conftest import deployment_for, saver_options


@contextlib.contextmanager
def source_for(kind: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[tuple[str, Any]]:
    if kind == "postgres":
        with postgres_source(request.getfixturevalue("postgres")) as found:
            yield found
    elif kind == "sqlite":
        with sqlite_source(tmp) as found:
            yield found
    else:
        with valkey_source(request.getfixturevalue("standalone")) as found:
            yield found


def run_cli(target: Any, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["--url", target.url, "--prefix", prefix, "migrate", *args]
    return subprocess.run(
        [sys.executable, "-m", "redis_cluster_saver", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
@pytest.mark.parametrize("kind", ["postgres", "sqlite", "valkey"])
def test_migrate_from_another_saver(
    kind: str, topology: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = deployment_for(request, topology)
    options = saver_options(target)
    prefix = options["key_prefix"]
    with (
        source_for(kind, request, tmp_path) as (url, writer),
        RedisClusterSaver.from_conn_string(target.url, **options) as ours,
    ):
        populate(writer)
        found = thread_namespaces(writer)
        assert sorted(found) == sorted(THREADS)
        assert any(ns for ns in found["paused-sub"]), "the subgraph's own namespace"
        if kind != "valkey":  # PostgreSQL and SQLite keep task paths, and they are read
            assert any(_task_paths(writer, "paused-worker").values())
        total = sum(
            1
            for t in THREADS
            for ns in found[t]
            for _ in writer.list({"configurable": {"thread_id": t, "checkpoint_ns": ns}})
        )

        # an interrupted run: one thread migrated, then the command line finishes
        with source_saver(url) as source:
            part = migrate(source, ours, threads=["paused-worker"])
        assert part.threads == 1 and part.migrated > 0 and part.writes > 0

        first = run_cli(target, prefix, "--from", url, "--verify")
        print(first.stdout, first.stderr[-2000:])
        assert first.returncode == 0, first.stderr
        assert f"threads {len(THREADS)}," in first.stdout
        assert f"checkpoints migrated {total - part.migrated}," in first.stdout
        assert f"already here {part.migrated}," in first.stdout
        assert f"verified {len(THREADS)} threads: 0 differ" in first.stdout
        again = run_cli(target, prefix, "--from", url)
        assert again.returncode == 0, again.stderr
        assert "checkpoints migrated 0," in again.stdout
        assert f"already here {total}," in again.stdout

        # what a graph sees: state with subgraphs, histories, parents, pending writes
        for thread in THREADS:
            theirs, mine = states(writer, thread), states(ours, thread)
            assert mine["state"] == theirs["state"], thread
            assert mine["history"] == theirs["history"], thread
            assert mine["subgraph_histories"] == theirs["subgraph_histories"], thread
            assert mine["writes"] == theirs["writes"], thread
        if kind != "valkey":  # with their task paths, writes read back in the same order
            for thread in THREADS:
                for h in build_mixed_graph(writer).get_state_history(cfg(thread)):
                    a, b = writer.get_tuple(h.config), ours.get_tuple(h.config)
                    assert a is not None and b is not None
                    assert b.pending_writes == a.pending_writes, (thread, h.config)
        worker = states(ours, "paused-worker")["state"]
        assert sorted(
            r for task in worker.tasks if task.result for r in task.result["results"]
        ) == [
            "0:a",
            "2:b",
        ]
        sub = states(ours, "paused-sub")["state"]
        assert sub.tasks[0].state.interrupts and sub.tasks[0].state.next == ("approve",)
        done = build_mixed_graph(ours).get_state(cfg("done")).values
        assert done["log"] == [  # a DeltaChannel, rebuilt from the migrated writes
            "plan:t",
            "gathered:2",
            "finish:yes",
            "plan:again",
            "gathered:3",
            "finish:twice",
        ]

        # tampering with the target is noticed
        latest = ours.get_tuple(cfg("done"))
        assert latest is not None
        ours.put_writes(latest.config, [("results", ["tampered"])], "tamper-task")
        tampered = run_cli(target, prefix, "--from", url, "--verify")
        assert tampered.returncode == 1, tampered.stdout
        assert "1 differ" in tampered.stdout and "differs: done" in tampered.stdout

        # the graph resumes the paused threads on our saver as on the source
        assert resume(ours) == resume(writer)


def test_source_urls_and_their_errors(tmp_path: Path, standalone: Any) -> None:
    with (
        pytest.raises(MigrationSourceError, match="unknown source scheme 'mongodb://'"),
        source_saver("mongodb://127.0.0.1/x"),
    ):
        pass
    with (
        pytest.raises(MigrationSourceError, match="no SQLite file"),
        source_saver(f"sqlite:///{tmp_path}/missing.db"),
    ):
        pass
    assert not (tmp_path / "missing.db").exists(), "nothing created at the source"
    empty = tmp_path / "empty.db"
    empty.touch()
    with (
        pytest.raises(MigrationSourceError, match="no LangGraph checkpoints table"),
        source_saver(f"sqlite:///{empty}"),
    ):
        pass
    options = saver_options(standalone)
    bad = run_cli(standalone, options["key_prefix"], "--from", "ftp://example")
    assert bad.returncode == 2 and "unknown source scheme 'ftp://'" in bad.stderr


def test_verify_notices_a_missing_thread(tmp_path: Path, standalone: Any) -> None:
    options = saver_options(standalone)
    with (
        sqlite_source(tmp_path) as (url, writer),
        RedisClusterSaver.from_conn_string(standalone.url, **options) as ours,
    ):
        populate(writer)
        with source_saver(url) as source:
            report = migrate(source, ours)
            assert report.threads == len(THREADS) and verify(source, ours) == []
            ours.delete_thread("forked")
            assert verify(source, ours) == ["forked"]
            again = migrate(source, ours)  # a re-run puts back what is missing
            assert 0 < again.migrated < report.migrated
            assert verify(source, ours) == []

"""Other processes at work on the same data: writers in real OS processes, each with its
own saver, while this process deletes, prunes and reads; writers stopped or killed at a
chosen round trip.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import pytest

from redis_cluster_saver import RedisClusterSaver
from tests.support.agents import Agent, churn, list_writer, message
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

TOPOLOGIES = ["standalone", "cluster", "proxy"]
DELETERS = {
    "delete_thread": lambda saver, thread: saver.delete_thread(thread),
    "prune": lambda saver, thread: saver.prune([thread], strategy="delete"),
    "delete_for_runs": lambda saver, thread: saver.delete_for_runs(["run-1"]),
}


def thread_config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def assert_readable(
    saver: RedisClusterSaver,
    thread: str,
    written: dict[str, list[str]],
    unacknowledged: list[str] | None = None,
) -> None:
    """Every visible checkpoint of the thread reads back whole, as its writer put it
    (one whose put was never acknowledged holds ``unacknowledged``), and
    cross-thread listing works."""
    for tup in [*saver.list(thread_config(thread)), saver.get_tuple(thread_config(thread))]:
        if tup is None:
            continue
        want = written.get(tup.checkpoint["id"], unacknowledged)
        assert want is not None, f"{tup.checkpoint['id']} was never written"
        assert tup.checkpoint["channel_values"]["messages"] == want
    list(saver.list(None, limit=50))


@pytest.mark.parametrize("deleter", list(DELETERS))
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_a_delta_whose_base_another_process_deleted_is_never_visible_unreadable(
    request: pytest.FixtureRequest, topology: str, deleter: str
) -> None:
    """The writer remembers its last list value; another process deletes the thread;
    the writer's next step would be a delta against a base that is gone. A reader
    between the writer's round trips, and after the writer is killed at its first
    reply, never meets a checkpoint it cannot read."""
    dep = deployment_for(request, topology)
    options = saver_options(dep)
    thread = "agent"
    with (
        RedisClusterSaver.from_conn_string(url_of(dep), **options) as admin,
        Agent(list_writer, url_of(dep), options, thread) as agent,
    ):
        assert agent.recv() == ("ready",)
        written = dict(agent.call("steps", 3))
        DELETERS[deleter](admin, thread)
        agent.send("stop", "pause")
        agent.send("steps", 2)
        assert agent.recv() == ("between",)
        first = written[max(written)]
        # between the writer's round trips: its put is applied whole or not at all
        assert_readable(admin, thread, written, [*first, message(3)])
        agent.send("continue")
        steps = agent.recv()
        written.update(steps)
        latest = admin.get_tuple(thread_config(thread))
        assert latest is not None and latest.checkpoint["id"] == steps[-1][0]
        assert_readable(admin, thread, written)

        DELETERS[deleter](admin, thread)
        agent.send("stop", "kill")
        agent.send("steps", 1)
        assert agent.exitcode() == -signal.SIGKILL
        assert_readable(admin, thread, written, [*steps[-1][1], message(5)])


DIRECTORY_PATHS = [
    ("cluster", {"search": False}),
    ("proxy", {}),
    ("standalone", {"search": False}),
    ("cluster", {}),
]


@pytest.mark.parametrize(
    ("topology", "extra"), DIRECTORY_PATHS, ids=[f"{t}-{o}" for t, o in DIRECTORY_PATHS]
)
def test_a_thread_written_again_after_another_process_deleted_it_is_seen_across_threads(
    request: pytest.FixtureRequest, topology: str, extra: dict[str, Any]
) -> None:
    dep = deployment_for(request, topology)
    options = saver_options(dep, **extra)
    with (
        RedisClusterSaver.from_conn_string(url_of(dep), **options) as admin,
        Agent(list_writer, url_of(dep), options, "again") as agent,
    ):
        assert agent.recv() == ("ready",)
        agent.call("steps", 2)
        admin.delete_thread("again")
        written = dict(agent.call("steps", 2))
        listed = {t.checkpoint["id"] for t in admin.list(None)}
        assert listed == set(written)
        admin.delete_for_runs(["run-1"])
        assert admin.get_tuple(thread_config("again")) is None
        assert list(admin.list(None)) == []


@pytest.mark.parametrize(
    ("topology", "extra"), DIRECTORY_PATHS[:3], ids=[f"{t}-{o}" for t, o in DIRECTORY_PATHS[:3]]
)
def test_writers_and_deleters_in_many_processes_leave_the_directory_exact(
    request: pytest.FixtureRequest, topology: str, extra: dict[str, Any]
) -> None:
    """Three writers and one deleter act at random on six threads at once; afterwards
    list(None) sees exactly the threads that hold checkpoints, and delete_for_runs of
    every run leaves nothing."""
    dep = deployment_for(request, topology)
    options = saver_options(dep, **extra)
    threads = [f"churn-{i}" for i in range(6)]
    roles = [("writer", 60), ("writer", 60), ("writer", 60), ("deleter", 40)]
    with contextlib.ExitStack() as stack:
        agents = [
            stack.enter_context(Agent(churn, url_of(dep), options, threads, role, n, seed))
            for seed, (role, n) in enumerate(roles)
        ]
        for agent in agents:
            assert agent.recv() == ("ready",)
        for agent in agents:
            agent.send("go")
        assert [agent.recv() for agent in agents] == [n for _, n in roles]
    with RedisClusterSaver.from_conn_string(url_of(dep), **options) as admin:
        alive = {t for t in threads if admin.get_tuple(thread_config(t)) is not None}
        listed = {t.config["configurable"]["thread_id"] for t in admin.list(None)}
        assert listed == alive
        admin.delete_for_runs([f"run-{t}" for t in threads])
        assert [t for t in threads if admin.get_tuple(thread_config(t))] == []
        assert list(admin.list(None)) == []

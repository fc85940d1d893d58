"""Failovers during a graph run, and crashes between per-key steps.

A 50-step graph kills the primary that holds its thread at step 20; the run must
complete with the same final state as on InMemorySaver. In per-key mode, a write
cut after any of its steps must never be seen half-done by get_tuple or list.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from redis.crc import key_slot

from cluster.faults import kill_primary, slot_owner, wait_for_failover
from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.keys import KeyLayout
from redis_cluster_saver.plan import Command, RoundTrip, WriteMode
from tests.support.servers import url_of

from .conftest import saver_options

STEPS = 50
KILL_AT = 20


class Counter(TypedDict, total=False):
    count: int
    log: Annotated[list[int], operator.add]


def counting_graph(saver: BaseCheckpointSaver[Any], at_step: Callable[[int], None]) -> Any:
    def step(state: Counter) -> dict[str, Any]:
        n = state.get("count", 0) + 1
        at_step(n)
        return {"count": n, "log": [n * n]}

    graph = StateGraph(Counter)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: END if s["count"] >= STEPS else "step")
    return graph.compile(checkpointer=saver)


def run(saver: BaseCheckpointSaver[Any], thread: str, at_step: Callable[[int], None]) -> Any:
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 200}
    counting_graph(saver, at_step).invoke({"count": 0, "log": []}, config)
    return counting_graph(saver, lambda n: None).get_state(config).values


def expected() -> Any:
    return run(InMemorySaver(), "t", lambda n: None)


def test_sentinel_primary_killed_mid_run(fresh_sentinel: Any) -> None:
    dep = fresh_sentinel
    killed: list[Any] = []

    def at_step(n: int) -> None:
        if n == KILL_AT:
            killed.append(kill_primary(dep))

    began = time.monotonic()
    options = saver_options(dep, failover_wait=30)
    with RedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        assert run(saver, "sentinel-run", at_step) == expected()
    new = wait_for_failover(dep, killed[0])
    assert new.port != killed[0].port
    print(f"sentinel: run with failover took {time.monotonic() - began:.1f} s")


def test_cluster_primary_killed_mid_run(fresh_cluster: Any) -> None:
    dep = fresh_cluster
    options = saver_options(dep, failover_wait=30)
    thread = "cluster-run"
    slot = key_slot(KeyLayout(options["key_prefix"]).thread(thread).namespaces.encode())
    owner = slot_owner(dep, slot)
    killed: list[Any] = []

    def at_step(n: int) -> None:
        if n == KILL_AT:
            index = [p.port for p in dep.primaries].index(owner.port)
            killed.append(kill_primary(dep, index))

    began = time.monotonic()
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        assert run(saver, thread, at_step) == expected()
    assert killed and killed[0].port == owner.port
    print(f"cluster: run with failover took {time.monotonic() - began:.1f} s")


@pytest.mark.parametrize("topology", ["cluster", "standalone"])
def test_a_crash_between_per_key_steps_never_exposes_a_partial_checkpoint(
    request: pytest.FixtureRequest, topology: str
) -> None:
    """Replays a put's per-key commands one by one and, after every prefix, reads
    through the saver: the new checkpoint is either invisible or complete."""
    from .conftest import deployment_for

    dep = deployment_for(request, topology)
    options = saver_options(dep, transactions=False, scripts=False)
    with RedisClusterSaver.from_conn_string(dep.url, **options) as saver:
        assert saver.ops.write_mode is WriteMode.PER_KEY
        config: Any = {"configurable": {"thread_id": "crash", "checkpoint_ns": ""}}
        first = empty_checkpoint()
        first["channel_values"] = {"a": "old", "b": [1]}
        first["channel_versions"] = {"a": 1, "b": 1}
        stored = saver.put(config, first, {"step": 0}, {"a": 1, "b": 1})
        second = empty_checkpoint()
        second["channel_values"] = {"a": "new", "b": [1]}
        second["channel_versions"] = {"a": 2, "b": 1}
        plan = saver.ops.put(stored, second, {"step": 1}, {"a": 2})
        trips: list[RoundTrip] = []
        try:
            trip = plan.send(None)
            while True:
                trips.append(trip)
                trip = plan.send([None] * len(trip.calls))
        except StopIteration:
            pass
        steps = [c for t in trips for c in t.calls if isinstance(c, Command)]
        assert len(steps) >= 4
        for k, command in enumerate(steps):
            latest = saver.get_tuple(config)
            listed = list(saver.list(config))
            assert latest is not None
            for tup in [latest, *listed]:
                if tup.checkpoint["id"] == second["id"]:
                    assert tup.checkpoint["channel_values"] == {"a": "new", "b": [1]}, k
                    assert tup.metadata == {"step": 1}, k
                else:
                    assert tup.checkpoint["channel_values"] == {"a": "old", "b": [1]}, k
            saver.client.execute_command(*command.args)
        latest = saver.get_tuple(config)
        assert latest is not None and latest.checkpoint["id"] == second["id"]
        assert latest.checkpoint["channel_values"] == {"a": "new", "b": [1]}

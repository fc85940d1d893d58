"""Retention on write (``retention={"keep_last": N}``): every put prunes its namespace
in the same write, by prune's rules, in every execution mode."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.plan import RoundTrip
from tests.support.steps import checkpoint, config

from .conftest import deployment_for, saver_options

KEEP = 3
PER_KEY = {"transactions": False, "scripts": False}
MODES = [
    ("standalone", {}),
    ("cluster", {}),
    ("cluster", PER_KEY),
    ("standalone", {"scripts": False}),  # MULTI/EXEC, prune as plain commands after it
    ("proxy", {}),
]


class Plain(TypedDict):
    messages: Annotated[list[str], operator.add]
    n: int


def extend(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(x for w in writes for x in w)]


class Delta(TypedDict):
    messages: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=4)]
    n: int


def graph(saver: Any, delta: bool, steps: int) -> Any:
    """One node that loops: a checkpoint per step, each with the task's writes."""

    def step(state: dict[str, Any]) -> dict[str, Any]:
        n = state.get("n", 0) + 1
        return {"messages": [f"message {n}: " + "x" * 40], "n": n}

    def again(state: dict[str, Any]) -> str:
        return "step" if state["n"] % steps else END

    g = StateGraph(Delta if delta else Plain)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", again, ["step", END])
    return g.compile(checkpointer=saver)


def run(saver: Any, thread: str, delta: bool, turns: int = 4, steps: int = 5) -> Any:
    app = graph(saver, delta, steps)
    config = {"configurable": {"thread_id": thread}}
    for _ in range(turns):
        app.invoke({"messages": []}, config)
    return app


def stored(saver: RedisClusterSaver, thread: str) -> dict[str, Any]:
    """What the thread's root namespace holds in Redis."""
    keys = saver.ops.layout.thread(thread)
    client = saver.client
    ids = [i.decode() for i in client.zrange(keys.registry(""), 0, -1)]
    return {
        "ids": ids,
        "blobs": sorted(client.hkeys(keys.blobs(""))),
        "write_keys": sorted(k.decode() for k in client.smembers(keys.write_keys)),
        "expected_write_keys": sorted(
            keys.writes("", i) for i in ids if client.exists(keys.writes("", i))
        ),
    }


@pytest.mark.parametrize(("topology", "forced"), MODES, ids=[f"{t}-{f}" for t, f in MODES])
@pytest.mark.parametrize("delta", [False, True], ids=["plain", "delta"])
def test_retention_keeps_what_prune_keeps_in_every_mode(
    request: pytest.FixtureRequest, topology: str, forced: dict[str, Any], delta: bool
) -> None:
    """A thread written with keep_last holds exactly what the same thread written
    without it holds after prune(keep_last): the same checkpoints (with the
    DeltaChannel ancestors they need), the same values, the writes of the kept
    checkpoints and no others; and its state reads back the same."""
    dep = deployment_for(request, topology)
    options = saver_options(dep, **forced)
    with (
        RedisClusterSaver.from_conn_string(
            dep.url, **{**options, "retention": {"keep_last": KEEP}}
        ) as kept,
        RedisClusterSaver.from_conn_string(dep.url, **options) as plain,
    ):
        kept_app = run(kept, "r", delta)
        plain_app = run(plain, "p", delta)
        plain.prune(["p"], keep_last=KEEP)
        got, want = stored(kept, "r"), stored(plain, "p")
        assert len(got["ids"]) == len(want["ids"])
        assert len(got["ids"]) >= KEEP and (delta or len(got["ids"]) == KEEP)
        assert len(got["blobs"]) == len(want["blobs"])
        assert got["write_keys"] == got["expected_write_keys"]  # no writes left orphaned
        config_r = {"configurable": {"thread_id": "r"}}
        config_p = {"configurable": {"thread_id": "p"}}
        assert kept_app.get_state(config_r).values == plain_app.get_state(config_p).values
        history_r = [s.values for s in kept_app.get_state_history(config_r)]
        history_p = [s.values for s in plain_app.get_state_history(config_p)]
        assert history_r == history_p
        assert kept_app.get_state(config_r).values["n"] == 20


def test_a_put_with_retention_is_still_one_round_trip(standalone: Any) -> None:
    options = saver_options(standalone, retention={"keep_last": 2})
    with RedisClusterSaver.from_conn_string(standalone.url, **options) as saver:
        stored = saver.put(config("rt"), checkpoint(0), {}, {"n": 1})
        trips: list[RoundTrip] = []
        saver.shell.hook = lambda event, trip: trips.append(trip) if event == "send" else None
        for i in range(1, 8):
            saver.put_writes(stored, [("n", i)], f"task-{i}")
            trips.clear()
            stored = saver.put(stored, checkpoint(i), {"step": i}, {"n": i + 1})
            assert len(trips) == 1, trips
        ids = stored_ids = [t.checkpoint["id"] for t in saver.list(config("rt"))]
        assert len(stored_ids) == 2 and ids[0] == stored["configurable"]["checkpoint_id"]


async def test_the_async_saver_retains_too(redis_cluster: Any) -> None:
    options = saver_options(redis_cluster, retention={"keep_last": 1})
    async with AsyncRedisClusterSaver.from_conn_string(redis_cluster.url, **options) as saver:
        app = graph(saver, False, 5)
        config = {"configurable": {"thread_id": "a"}}
        for _ in range(3):
            await app.ainvoke({"messages": []}, config)
        history = [s async for s in app.aget_state_history(config)]
        assert len(history) == 1 and history[0].values["n"] == 15
        assert len(history[0].values["messages"]) == 15


@pytest.mark.parametrize(
    ("retention", "error", "message"),
    [
        ({"keep_last": 0}, ValueError, "keep_last"),
        ({"keep_last": True}, ValueError, "keep_last"),
        ({"keep_last": "3"}, ValueError, "keep_last"),
        ({}, ValueError, "keep_last"),
        ({"keep_last": 2, "ttl": 1}, ValueError, "ttl"),
        (3, TypeError, "retention"),
    ],
)
def test_bad_retention_is_refused_with_a_clear_error(
    standalone: Any, retention: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RedisClusterSaver(standalone.url, **saver_options(standalone), retention=retention)

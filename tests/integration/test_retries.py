"""Every retry is idempotent: a write the server applied but whose reply was lost
is sent again (as after a failover, a re-probe or a mode switch), and the graph's
state is still exactly InMemorySaver's."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from redis.exceptions import ConnectionError

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.plan import RoundTrip, WriteMode
from tests.support.servers import url_of

from .conftest import deployment_for, saver_options

MODES = [
    ("standalone", {}, WriteMode.TRANSACTION),
    ("cluster", {}, WriteMode.TRANSACTION),
    ("standalone", {"transactions": False}, WriteMode.SCRIPT),
    ("proxy", {}, WriteMode.SCRIPT),
    ("cluster", {"transactions": False, "scripts": False}, WriteMode.PER_KEY),
    ("proxy", {"transactions": False, "scripts": False}, WriteMode.PER_KEY),
]
IDS = [f"{t}-{m.value}" for t, _, m in MODES]


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    messages: Annotated[list[str], operator.add]


def graph(checkpointer: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"], "messages": ["from a " + "x" * 200]})
    builder.add_node("b", lambda s: {"log": ["b"], "messages": ["from b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    return builder.compile(checkpointer=checkpointer)


def losing_every_other_write_reply(lost: list[int]) -> Any:
    """A trip hook: the reply of every other write is lost after the server applied it."""
    writes = [0]

    def hook(event: str, trip: RoundTrip) -> None:
        if event == "reply" and trip.atomic and not trip.force_multi:
            writes[0] += 1
            if writes[0] % 2:
                lost.append(writes[0])
                raise ConnectionError("the reply was lost (injected)")

    return hook


def observed(app: Any, config: Any) -> tuple[Any, int, list[Any]]:
    state = app.get_state(config)
    history = list(app.get_state_history(config))
    return state.values, len(history), [h.next for h in history]


@pytest.mark.parametrize(("topology", "forced", "mode"), MODES, ids=IDS)
def test_a_lost_reply_after_an_applied_write_changes_nothing(
    request: pytest.FixtureRequest, topology: str, forced: dict[str, Any], mode: WriteMode
) -> None:
    dep = deployment_for(request, topology)
    config = {"configurable": {"thread_id": "lost-replies"}}
    reference = graph(InMemorySaver())
    for turn in range(2):
        reference.invoke({"log": [f"in {turn}"], "messages": []}, config)
    lost: list[int] = []
    options = saver_options(dep, failover_wait=20, **forced)
    with RedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        assert saver.ops.write_mode is mode
        saver.shell.hook = losing_every_other_write_reply(lost)
        app = graph(saver)
        for turn in range(2):
            app.invoke({"log": [f"in {turn}"], "messages": []}, config)
        saver.shell.hook = None
        assert observed(app, config) == observed(reference, config)
    assert len(lost) >= 4


@pytest.mark.parametrize(("topology", "forced", "mode"), MODES[1:4], ids=IDS[1:4])
async def test_async_a_lost_reply_after_an_applied_write_changes_nothing(
    request: pytest.FixtureRequest, topology: str, forced: dict[str, Any], mode: WriteMode
) -> None:
    dep = deployment_for(request, topology)
    config = {"configurable": {"thread_id": "lost-replies"}}
    reference = graph(InMemorySaver())
    await reference.ainvoke({"log": ["in"], "messages": []}, config)
    lost: list[int] = []
    options = saver_options(dep, failover_wait=20, **forced)
    async with AsyncRedisClusterSaver.from_conn_string(url_of(dep), **options) as saver:
        saver.shell.hook = losing_every_other_write_reply(lost)
        app = graph(saver)
        await app.ainvoke({"log": ["in"], "messages": []}, config)
        saver.shell.hook = None
        state = await app.aget_state(config)
        assert state.values == (await reference.aget_state(config)).values
        assert len([h async for h in app.aget_state_history(config)]) == len(
            [h async for h in reference.aget_state_history(config)]
        )
    assert len(lost) >= 2

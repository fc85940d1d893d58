"""Differential tests: real LangGraph graphs behave the same on our savers as on InMemorySaver.

Every scenario is an async function of a ``Driver`` (a compiled graph plus the sync or
async calling style). It is run once against ``InMemorySaver`` and once against our saver,
and the normalized observations (outputs, states, histories) must be equal. Checkpoint
ids, task ids and interrupt ids differ between two runs, so they are normalized away:
uuid-shaped strings become ``<id>`` and history parents become positions in the history.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, TypeVar

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple, DeltaChannelHistory
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Interrupt, Send, StateSnapshot, interrupt

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

Saver = RedisClusterSaver | AsyncRedisClusterSaver
Graph = CompiledStateGraph[Any, Any, Any, Any]
T = TypeVar("T")

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HOSTILE = [
    "",
    "__empty__",
    "{a}",
    "a}{b",
    "%41",
    ":|:",
    "x\nnewline",
    "nul\x00byte",
    "\u200frtl",
    "😀",
    "a" * 10000,
]
# node names may not contain ":" or "|" (LangGraph's namespace separators)
HOSTILE_NODES = [h for h in HOSTILE if ":" not in h and "|" not in h and len(h) < 100]


@pytest.fixture(params=["sync", "async"])
def saver(request: pytest.FixtureRequest, deployment: Any) -> Saver:
    """Our saver in the given style, on the topology of ``deployment``."""
    result: Saver = request.getfixturevalue(f"{request.param}_saver")
    return result


def cfg(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def ns_config(state: StateSnapshot) -> RunnableConfig:
    """The whole checkpoint namespace of ``state`` (a subgraph's), not one checkpoint."""
    conf = state.config["configurable"]
    return {"configurable": {k: conf[k] for k in ("thread_id", "checkpoint_ns")}}


# --------------------------------------------------------------------------- normalizing


def norm(obj: Any) -> Any:
    """Strip run-specific ids; interrupts become their values (sorted: their order follows
    task ids, which are hashes of checkpoint ids)."""
    if isinstance(obj, str):
        return UUID.sub("<id>", obj)
    if isinstance(obj, Interrupt):
        return ("interrupt", norm(obj.value))
    if isinstance(obj, Mapping):
        return {norm(k): norm(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [norm(x) for x in obj]
        if obj and all(isinstance(x, Interrupt) for x in obj):
            return sorted(items, key=repr)
        if hasattr(obj, "_fields"):  # NamedTuple, e.g. _DeltaSnapshot
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def snap(s: StateSnapshot, pos: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One StateSnapshot, comparable across savers; ``pos`` maps checkpoint ids of the
    surrounding history to positions, so the parent link is compared structurally."""
    parent = s.parent_config["configurable"]["checkpoint_id"] if s.parent_config else None
    meta: Mapping[str, Any] = s.metadata or {}
    result: dict[str, Any] = norm(
        {
            "values": s.values,
            "next": s.next,
            "ns": s.config["configurable"].get("checkpoint_ns", ""),
            "step": meta.get("step"),
            "source": meta.get("source"),
            "parents": sorted(meta.get("parents", {})),
            "parent": None if parent is None else (pos or {}).get(parent, "outside"),
            "tasks": [
                (
                    t.name,
                    t.path,
                    repr(t.error),
                    t.interrupts,
                    t.result,
                    snap(t.state) if isinstance(t.state, StateSnapshot) else None,
                )
                for t in s.tasks
            ],
            "interrupts": s.interrupts,
        }
    )
    return result


def view(history: Sequence[StateSnapshot]) -> list[dict[str, Any]]:
    pos = {h.config["configurable"]["checkpoint_id"]: i for i, h in enumerate(history)}
    return [snap(h, pos) for h in history]


# --------------------------------------------------------------------------- driving


@dataclass
class Driver:
    """A compiled graph called in the sync or the async style."""

    graph: Graph
    is_async: bool

    @property
    def saver(self) -> Any:
        return self.graph.checkpointer

    async def invoke(self, inp: Any, config: RunnableConfig) -> Any:
        if self.is_async:
            return norm(await self.graph.ainvoke(inp, config))
        return norm(self.graph.invoke(inp, config))

    async def stream(self, inp: Any, config: RunnableConfig, **kwargs: Any) -> list[Any]:
        """Chunks as a sorted list: parallel tasks may finish in any order."""
        if self.is_async:
            chunks = [c async for c in self.graph.astream(inp, config, **kwargs)]
        else:
            chunks = list(self.graph.stream(inp, config, **kwargs))
        return sorted(norm(chunks), key=repr)

    async def state(self, config: RunnableConfig, subgraphs: bool = False) -> StateSnapshot:
        if self.is_async:
            return await self.graph.aget_state(config, subgraphs=subgraphs)
        return self.graph.get_state(config, subgraphs=subgraphs)

    async def history(self, config: RunnableConfig, **kwargs: Any) -> list[StateSnapshot]:
        if self.is_async:
            return [s async for s in self.graph.aget_state_history(config, **kwargs)]
        return list(self.graph.get_state_history(config, **kwargs))

    async def update(
        self, config: RunnableConfig, values: Any, as_node: str | None = None
    ) -> RunnableConfig:
        if self.is_async:
            return await self.graph.aupdate_state(config, values, as_node=as_node)
        return self.graph.update_state(config, values, as_node=as_node)

    async def delta_history(
        self, config: RunnableConfig, channels: list[str], *, base: bool = False
    ) -> Mapping[str, DeltaChannelHistory]:
        """The saver's get_delta_channel_history, or (base=True) the base-class default
        implementation called unbound on the same saver."""
        owner = BaseCheckpointSaver if base else type(self.saver)
        if self.is_async:
            return await owner.aget_delta_channel_history(
                self.saver, config=config, channels=channels
            )
        return owner.get_delta_channel_history(self.saver, config=config, channels=channels)

    async def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        saver = self.saver
        result: CheckpointTuple | None = (
            await saver.aget_tuple(config) if self.is_async else saver.get_tuple(config)
        )
        return result

    async def prune(self, thread_ids: list[str]) -> None:
        if self.is_async:
            await self.saver.aprune(thread_ids, strategy="keep_latest")
        else:
            self.saver.prune(thread_ids, strategy="keep_latest")


async def differential(
    saver: Saver,
    build: Callable[[BaseCheckpointSaver[Any]], Graph],
    scenario: Callable[[Driver], Awaitable[T]],
) -> T:
    """Run ``scenario`` on InMemorySaver and on ``saver``; the results must be equal."""
    is_async = isinstance(saver, AsyncRedisClusterSaver)
    expected = await scenario(Driver(build(InMemorySaver()), is_async))
    actual = await scenario(Driver(build(saver), is_async))
    assert actual == expected
    return actual


# --------------------------------------------------------------------------- graphs


class LogState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    count: int
    label: str


def build_log_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """a -> (b, c in parallel) -> d: a reducer channel and two plain channels."""

    def a(state: LogState) -> LogState:
        return {"log": [f"a{state.get('count', 0)}"], "count": state.get("count", 0) + 1}

    def b(state: LogState) -> LogState:
        return {"log": ["b"], "label": state.get("label", "") + "b"}

    def c(state: LogState) -> LogState:
        return {"log": [f"c{len(state['log'])}"]}

    def d(state: LogState) -> LogState:
        return {"log": [f"d{len(state['log'])}"], "count": state["count"] * 2}

    g = StateGraph(LogState)
    for name, fn in [("a", a), ("b", b), ("c", c), ("d", d)]:
        g.add_node(name, fn)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("a", "c")
    g.add_edge(["b", "c"], "d")
    g.add_edge("d", END)
    return g.compile(checkpointer=saver)


class AskState(TypedDict, total=False):
    question: str
    answers: Annotated[list[str], operator.add]
    done: bool


def build_interrupt_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """prep -> ask (two interrupts in one node) -> finish."""

    def prep(state: AskState) -> AskState:
        return {"question": state["question"].strip() + "?"}

    def ask(state: AskState) -> AskState:
        first = interrupt({"q": state["question"], "n": 1})
        second = interrupt({"q": state["question"], "n": 2, "first": first})
        return {"answers": [first, second]}

    def finish(state: AskState) -> AskState:
        return {"done": True, "answers": [f"total={len(state['answers'])}"]}

    g = StateGraph(AskState)
    g.add_node("prep", prep)
    g.add_node("ask", ask)
    g.add_node("finish", finish)
    g.add_edge(START, "prep")
    g.add_edge("prep", "ask")
    g.add_edge("ask", "finish")
    g.add_edge("finish", END)
    return g.compile(checkpointer=saver)


class ParentState(TypedDict, total=False):
    topic: str
    result: str
    log: Annotated[list[str], operator.add]


class ChildState(TypedDict, total=False):
    topic: str
    result: str
    notes: Annotated[list[str], operator.add]


def build_subgraph_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """start -> child (draft -> review[interrupt] -> final) -> end; child has own state."""

    def draft(state: ChildState) -> ChildState:
        return {"notes": [f"draft:{state['topic']}"]}

    def review(state: ChildState) -> ChildState:
        verdict = interrupt({"review": state["notes"]})
        return {"notes": [f"review:{verdict}"]}

    def final(state: ChildState) -> ChildState:
        return {"result": " | ".join(state["notes"])}

    child = StateGraph(ChildState)
    child.add_node("draft", draft)
    child.add_node("review", review)
    child.add_node("final", final)
    child.add_edge(START, "draft")
    child.add_edge("draft", "review")
    child.add_edge("review", "final")

    def begin(state: ParentState) -> ParentState:
        return {"log": [f"begin:{state['topic']}"], "topic": state["topic"].upper()}

    def end(state: ParentState) -> ParentState:
        return {"log": [f"end:{state['result']}"]}

    g = StateGraph(ParentState)
    g.add_node("begin", begin)
    g.add_node("child", child.compile())
    g.add_node("end", end)
    g.add_edge(START, "begin")
    g.add_edge("begin", "child")
    g.add_edge("child", "end")
    return g.compile(checkpointer=saver)


class FanState(TypedDict, total=False):
    items: list[str]
    results: Annotated[list[str], operator.add]
    total: int


class Job(TypedDict):
    item: str
    idx: int


def build_fanout_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """plan -> Send(worker) per item -> summarize; a worker given "ask" interrupts, so the
    other workers' writes must be kept as pending writes and not be redone on resume."""

    def plan(state: FanState) -> FanState:
        return {"items": [i for i in state["items"] if i]}

    def route(state: FanState) -> list[Send]:
        return [Send("worker", {"item": it, "idx": i}) for i, it in enumerate(state["items"])]

    def worker(state: Job) -> FanState:
        item = state["item"]
        if item == "ask":
            item = interrupt({"idx": state["idx"]})
        return {"results": [f"{state['idx']}:{item.upper()}"]}

    def summarize(state: FanState) -> FanState:
        return {"total": len(state["results"])}

    g = StateGraph(FanState)
    g.add_node("plan", plan)
    g.add_node("worker", worker)
    g.add_node("summarize", summarize)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", route, ["worker"])
    g.add_edge("worker", "summarize")
    g.add_edge("summarize", END)
    return g.compile(checkpointer=saver)


class OutState(TypedDict, total=False):
    out: Annotated[list[str], operator.add]


def build_hostile_ns_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """One subgraph node per hostile name, all in parallel, each interrupting inside, so
    the checkpoint namespaces are ``<hostile name>:<task id>``."""

    def make_child(name: str) -> Graph:
        def ask(state: OutState) -> OutState:
            return {"out": [f"{name!r}={interrupt({'who': name})}"]}

        child = StateGraph(OutState)
        child.add_node(name, ask)
        child.add_edge(START, name)
        return child.compile()

    g = StateGraph(OutState)
    for name in HOSTILE_NODES:
        g.add_node(name, make_child(name))
        g.add_edge(START, name)
    return g.compile(checkpointer=saver)


def extend(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    """DeltaChannel reducer: (state, batch of writes) -> state; batching-invariant."""
    return [*state, *(x for w in writes for x in w)]


class DeltaState(TypedDict, total=False):
    log: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=5)]
    n: int


class Tick(TypedDict):
    n: int
    k: int


def build_delta_graph(saver: BaseCheckpointSaver[Any]) -> Graph:
    """step -> 3 parallel workers (Send) -> step ... until n % 4 == 0; all write to a
    DeltaChannel, so snapshots happen every 5 updates and deltas in between."""

    def step(state: DeltaState) -> DeltaState:
        return {"log": [f"s{state['n']}"], "n": state["n"] + 1}

    def route(state: DeltaState) -> Any:
        if state["n"] % 4 == 0:
            return END
        return [Send("work", {"n": state["n"], "k": k}) for k in range(3)]

    def work(state: Tick) -> DeltaState:
        return {"log": [f"w{state['n']}.{state['k']}"]}

    g = StateGraph(DeltaState)
    g.add_node("step", step)
    g.add_node("work", work)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", route, ["work", END])
    g.add_edge("work", "step")
    return g.compile(checkpointer=saver)


# --------------------------------------------------------------------------- tests


async def test_reducer_and_plain_channels(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        t1, t2 = cfg("t1"), cfg("t2")
        outs = [
            await d.invoke({"log": ["in"], "count": 0, "label": "x"}, t1),
            await d.stream({"log": ["again"], "label": "y"}, t1),
            await d.invoke({"log": ["other"], "count": 10}, t2),
            await d.stream({"log": ["third"]}, t1, stream_mode=["values", "updates"]),
        ]
        full = await d.history(t1)
        return {
            "outs": outs,
            "states": [snap(await d.state(t)) for t in (t1, t2)],
            "histories": [view(full), view(await d.history(t2))],
            "limited": [snap(h) for h in await d.history(t1, limit=4)],
            "before": [snap(h) for h in await d.history(t1, before=full[6].config, limit=3)],
            "inputs": [snap(h) for h in await d.history(t1, filter={"source": "input"})],
        }

    got = await differential(saver, build_log_graph, scenario)
    final = got["states"][0]["values"]
    assert final["label"] == "ybb" and final["count"] == 14
    assert final["log"][:6] == ["in", "a0", "b", "c2", "d4", "again"]
    assert len(got["histories"][0]) == 3 * 5 and len(got["histories"][1]) == 5
    assert got["histories"][0][-1]["parent"] is None
    assert [h["parent"] for h in got["histories"][0][:-1]] == list(range(1, 15))
    assert got["states"][1]["values"]["log"] == ["other", "a10", "b", "c2", "d4"]
    strip = [{**h, "parent": None} for h in got["histories"][0]]
    assert [{**h, "parent": None} for h in got["limited"]] == strip[:4]
    assert [{**h, "parent": None} for h in got["before"]] == strip[7:10]
    assert [h["step"] for h in got["inputs"]] == [9, 4, -1]


async def test_interrupt_and_resume(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        t = cfg("ask")
        seen: dict[str, Any] = {"first": await d.invoke({"question": " why "}, t)}
        seen["state1"] = snap(await d.state(t))
        seen["second"] = await d.stream(Command(resume="because"), t)
        seen["state2"] = snap(await d.state(t))
        seen["third"] = await d.invoke(Command(resume="done"), t)
        seen["state3"] = snap(await d.state(t))
        seen["history"] = view(await d.history(t))
        return seen

    got = await differential(saver, build_interrupt_graph, scenario)
    assert got["first"]["__interrupt__"] == [("interrupt", {"q": "why?", "n": 1})]
    assert got["state1"]["tasks"][0][3] == [("interrupt", {"q": "why?", "n": 1})]
    assert got["state2"]["interrupts"] == [("interrupt", {"q": "why?", "n": 2, "first": "because"})]
    assert got["state3"]["values"]["answers"] == ["because", "done", "total=2"]
    assert got["state3"]["next"] == () and got["state3"]["values"]["done"] is True


async def test_subgraph_interrupt(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        t = cfg("sub")
        seen: dict[str, Any] = {"first": await d.stream({"topic": "cats"}, t, subgraphs=True)}
        paused = await d.state(t, subgraphs=True)
        seen["paused"] = snap(paused)
        seen["parent_only"] = snap(await d.state(t))
        child = paused.tasks[0].state
        assert isinstance(child, StateSnapshot)
        seen["child_history"] = view(await d.history(ns_config(child)))
        seen["resumed"] = await d.stream(Command(resume="ok"), t, subgraphs=True)
        seen["final"] = snap(await d.state(t, subgraphs=True))
        seen["history"] = view(await d.history(t))
        return seen

    got = await differential(saver, build_subgraph_graph, scenario)
    (task,) = got["paused"]["tasks"]
    assert task[0] == "child" and task[5]["values"]["notes"] == ["draft:CATS"]
    assert task[5]["interrupts"] == [("interrupt", {"review": ["draft:CATS"]})]
    assert task[5]["ns"] == "child:<id>" and task[5]["next"] == ("review",)
    assert got["parent_only"]["tasks"][0][5] is None  # no subgraph state without subgraphs=True
    assert [h["step"] for h in got["child_history"]] == [1, 0, -1]
    assert {h["ns"] for h in got["child_history"]} == {"child:<id>"}
    assert got["final"]["values"] == {
        "topic": "CATS",
        "result": "draft:CATS | review:ok",
        "log": ["begin:cats", "end:draft:CATS | review:ok"],
    }


async def test_send_fanout(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        t = cfg("fan")
        seen: dict[str, Any] = {"first": await d.invoke({"items": ["x", "", "y", "z"]}, t)}
        seen["second"] = await d.stream({"items": ["p", "ask", "q"]}, t)
        seen["paused"] = snap(await d.state(t))
        seen["resumed"] = await d.invoke(Command(resume="answered"), t)
        seen["state"] = snap(await d.state(t))
        seen["history"] = view(await d.history(t))
        return seen

    got = await differential(saver, build_fanout_graph, scenario)
    assert got["first"]["results"] == ["0:X", "1:Y", "2:Z"] and got["first"]["total"] == 3
    # two workers finished before the third interrupted: their results are pending writes
    finished = [task[4] for task in got["paused"]["tasks"] if task[4]]
    assert sorted(r["results"][0] for r in finished) == ["0:P", "2:Q"]
    assert got["state"]["values"]["results"][3:] == ["0:P", "1:ANSWERED", "2:Q"]
    assert got["state"]["values"]["total"] == 6


async def test_time_travel_fork(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        t = cfg("travel")
        await d.invoke({"log": ["one"], "count": 1, "label": "L"}, t)
        await d.invoke({"log": ["two"]}, t)
        # the first run's checkpoint right after "a" (next = b, c)
        past = [h for h in await d.history(t) if h.next == ("b", "c")][-1]
        fork = await d.update(past.config, {"log": ["forked"], "label": "F"}, as_node="a")
        seen: dict[str, Any] = {"fork": snap(await d.state(fork))}
        seen["continued"] = await d.invoke(None, fork)
        seen["replayed"] = await d.stream(None, past.config)
        seen["head"] = snap(await d.state(t))
        seen["past"] = snap(await d.state(past.config))
        history = await d.history(t)
        seen["history"] = view(history)
        ids = [h.config["configurable"]["checkpoint_id"] for h in history]
        seen["past_pos"] = ids.index(past.config["configurable"]["checkpoint_id"])
        return seen

    got = await differential(saver, build_log_graph, scenario)
    assert got["fork"]["next"] == ("b", "c") and got["fork"]["source"] == "update"
    assert got["fork"]["values"]["log"] == ["one", "a1", "forked"]
    assert got["continued"]["log"] == ["one", "a1", "forked", "b", "c3", "d5"]
    assert got["continued"]["label"] == "Fb"
    history, past_pos = got["history"], got["past_pos"]
    # two runs (10), the update (1) and its run (2), the replay's fork copy (1) and run (2)
    assert len(history) == 16 and history[past_pos]["values"]["log"] == ["one", "a1"]
    branches = sorted(h["source"] for h in history if h["parent"] == past_pos)
    assert branches == ["fork", "loop", "update"]
    assert got["replayed"] == [
        {"b": {"log": ["b"], "label": "Lb"}},
        {"c": {"log": ["c2"]}},
        {"d": {"log": ["d4"], "count": 4}},
    ]
    assert got["head"] == history[0] | {"parent": got["head"]["parent"]}


async def test_hostile_thread_ids(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        for i, tid in enumerate(HOSTILE):
            await d.invoke({"log": [f"in-{i}"], "label": f"L{i}", "count": i}, cfg(tid))
        for i, tid in enumerate(HOSTILE[::2]):
            await d.invoke({"log": [f"more-{i * 2}"]}, cfg(tid))
        states = {tid: await d.state(cfg(tid)) for tid in HOSTILE}
        for tid, st in states.items():
            assert st.config["configurable"]["thread_id"] == tid
        return {
            "states": [snap(s) for s in states.values()],
            "histories": [view(await d.history(cfg(tid))) for tid in HOSTILE],
        }

    got = await differential(saver, build_log_graph, scenario)
    for i, state in enumerate(got["states"]):
        values = state["values"]
        assert values["label"] == f"L{i}" + ("bb" if i % 2 == 0 else "b")
        tags = {x for x in values["log"] if x.startswith(("in-", "more-"))}
        assert tags == ({f"in-{i}", f"more-{i}"} if i % 2 == 0 else {f"in-{i}"})
        assert len(got["histories"][i]) == (10 if i % 2 == 0 else 5)
    assert got["states"][0]["values"] != got["states"][1]["values"]  # "" vs "__empty__"


async def test_hostile_namespaces(saver: Saver) -> None:
    async def scenario(d: Driver) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for tid in HOSTILE:
            t = cfg(tid)
            first = await d.invoke({}, t)
            paused = await d.state(t, subgraphs=True)
            children = {}
            for task in paused.tasks:
                assert isinstance(task.state, StateSnapshot)
                children[task.name] = view(await d.history(ns_config(task.state)))
            answers = {i.id: f"{i.value['who']}@{tid[:3]}" for i in paused.interrupts}
            seen[tid] = {
                "first": first,
                "paused": snap(paused),
                "children": children,
                "resumed": await d.invoke(Command(resume=answers), t),
                "history": view(await d.history(t)),
            }
        return seen

    got = await differential(saver, build_hostile_ns_graph, scenario)
    for tid, seen in got.items():
        nss = sorted(task[5]["ns"] for task in seen["paused"]["tasks"])
        assert nss == sorted(f"{name}:<id>" for name in HOSTILE_NODES)
        assert set(seen["children"]) == set(HOSTILE_NODES)
        for name, child in seen["children"].items():  # each namespace holds only its own
            assert [(h["ns"], h["step"]) for h in child] == [(f"{name}:<id>", s) for s in (0, -1)]
        # a superstep's writes are applied in task path order, i.e. by node name
        assert seen["resumed"]["out"] == [
            f"{name!r}={name}@{tid[:3]}" for name in sorted(HOSTILE_NODES)
        ]
        assert len(seen["history"]) == 3  # input, the paused superstep, the final one


async def test_delta_channel_prune(saver: Saver) -> None:
    channels = ["log"]

    async def scenario(d: Driver) -> dict[str, Any]:
        t = cfg("delta")
        for n in (1, 5, 9):
            await d.invoke({"n": n, "log": [f"in{n}"]}, t)
        history = await d.history(t)
        deltas = []
        for h in history:
            ours = await d.delta_history(h.config, channels)
            deltas.append(norm(ours))
            if isinstance(d.saver, (RedisClusterSaver, AsyncRedisClusterSaver)):
                assert ours == await d.delta_history(h.config, channels, base=True)
        return {"state": snap(await d.state(t)), "history": view(history), "deltas": deltas}

    got = await differential(saver, build_delta_graph, scenario)
    log = got["state"]["values"]["log"]
    expected = []
    for n in (1, 5, 9):
        expected.append(f"in{n}")
        for m in range(n, n + 3):
            expected += [f"s{m}", *([f"w{m + 1}.{k}" for k in range(3)] if m < n + 2 else [])]
    assert log == expected
    assert any("seed" in entry["log"] for entry in got["deltas"])  # snapshots exist
    assert any(entry["log"]["writes"] for entry in got["deltas"])  # and deltas

    # prune ours down to the latest checkpoint (plus what DeltaChannel needs)
    d = Driver(build_delta_graph(saver), isinstance(saver, AsyncRedisClusterSaver))
    t = cfg("delta")
    head = await d.state(t)
    latest = await d.get_tuple(t)
    assert latest is not None and "log" not in latest.checkpoint["channel_values"]
    before = len(await d.history(t))
    await d.prune(["delta"])
    after = await d.history(t)
    assert 1 <= len(after) < before
    assert snap(await d.state(t))["values"] == got["state"]["values"]
    now = await d.delta_history(head.config, channels)
    assert "seed" in now["log"]  # the chain still reaches a snapshot
    assert now == await d.delta_history(head.config, channels, base=True)
    assert norm(now) == got["deltas"][0]
    # the pruned thread keeps working like an unpruned one
    ref = Driver(build_delta_graph(InMemorySaver()), d.is_async)
    for n in (1, 5, 9):
        await ref.invoke({"n": n, "log": [f"in{n}"]}, t)
    for driver in (d, ref):
        await driver.invoke({"n": 13, "log": ["more"]}, t)
    assert snap(await d.state(t))["values"] == snap(await ref.state(t))["values"]

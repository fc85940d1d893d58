"""Graphs and sources for migration and export tests.

``build_mixed_graph`` has what a migration must carry: a Send fan-out whose workers
may interrupt (the finished workers' results stay as pending writes), a subgraph
that pauses on interrupt() (checkpoints in a namespace of their own), a
``DeltaChannel`` (values only at snapshots, rebuilt from writes in between), and
forks. ``populate`` leaves threads finished, paused in a worker, paused in the
subgraph, and forked. ``build_react_graph`` is a ReAct-style agent with tool calls
(LangChain messages), in a plain or a DeltaChannel ``messages`` channel.
"""

from __future__ import annotations

import contextlib
import operator
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Send, interrupt

# a thread id whose ValkeySaver key is ambiguous without reading the checkpoint back
THREADS = ["done", "paused-worker", "paused-sub", "forked", "odd {id}:x|y}:z"]


def extend(state: list[str] | None, writes: Sequence[list[str]]) -> list[str]:
    return [*(state or []), *(x for w in writes for x in w)]


class MixedState(TypedDict, total=False):
    topic: str
    items: list[str]
    results: Annotated[list[str], operator.add]
    log: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=3)]
    verdict: str


class PlainMixedState(TypedDict, total=False):
    topic: str
    items: list[str]
    results: Annotated[list[str], operator.add]
    log: Annotated[list[str], operator.add]
    verdict: str


class ReviewState(TypedDict, total=False):
    topic: str
    notes: Annotated[list[str], operator.add]
    verdict: str


class Job(TypedDict):
    item: str
    idx: int


def build_mixed_graph(saver: BaseCheckpointSaver[Any], delta: bool = True) -> Any:
    """plan -> Send(worker) per item -> review (subgraph: draft -> approve[interrupt])
    -> finish. Only sequential nodes write the DeltaChannel ``log`` (a plain reducer
    channel with ``delta=False``)."""

    def plan(state: Any) -> dict[str, Any]:
        return {"log": [f"plan:{state['topic']}"]}

    def route(state: Any) -> list[Send]:
        return [Send("worker", {"item": it, "idx": i}) for i, it in enumerate(state["items"])]

    def worker(state: Job) -> dict[str, Any]:
        item = state["item"]
        if item == "ask":
            item = interrupt({"idx": state["idx"]})
        return {"results": [f"{state['idx']}:{item}"]}

    def draft(state: ReviewState) -> ReviewState:
        return {"notes": [f"draft:{state['topic']}"]}

    def approve(state: ReviewState) -> ReviewState:
        verdict = interrupt({"notes": state["notes"]})
        return {"notes": [f"ok:{verdict}"], "verdict": str(verdict)}

    review = StateGraph(ReviewState)
    review.add_node("draft", draft)
    review.add_node("approve", approve)
    review.add_edge(START, "draft")
    review.add_edge("draft", "approve")
    review.add_edge("approve", END)

    def gather(state: Any) -> dict[str, Any]:
        return {"log": [f"gathered:{len(state['results'])}"]}

    def finish(state: Any) -> dict[str, Any]:
        return {"log": [f"finish:{state.get('verdict')}"]}

    g = StateGraph(MixedState if delta else PlainMixedState)
    g.add_node("plan", plan)
    g.add_node("worker", worker)
    g.add_node("gather", gather)
    g.add_node("review", review.compile())
    g.add_node("finish", finish)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", route, ["worker"])
    g.add_edge("worker", "gather")
    g.add_edge("gather", "review")
    g.add_edge("review", "finish")
    g.add_edge("finish", END)
    return g.compile(checkpointer=saver)


def cfg(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def populate(saver: BaseCheckpointSaver[Any], delta: bool = True) -> None:
    """The threads of ``THREADS`` on ``saver``, through the mixed graph."""
    graph = build_mixed_graph(saver, delta)
    done, worker, sub, forked, odd = (cfg(t) for t in THREADS)
    for config in (done, forked, odd):
        graph.invoke({"topic": "t", "items": ["a", "b"]}, config)
        graph.invoke(Command(resume="yes"), config)
        graph.invoke({"topic": "again", "items": ["c"]}, config)  # a second turn
        graph.invoke(Command(resume="twice"), config)
    graph.invoke({"topic": "w", "items": ["a", "ask", "b"]}, worker)  # 0 and 2 pending
    graph.invoke({"topic": "s", "items": ["x"]}, sub)  # paused in the subgraph
    past = [h for h in graph.get_state_history(forked) if h.next == ("gather",)][-1]
    graph.update_state(past.config, {"results": ["forked"]}, as_node="worker")


def resume(saver: BaseCheckpointSaver[Any], delta: bool = True) -> dict[str, Any]:
    """Resume the two paused threads; their final values."""
    graph = build_mixed_graph(saver, delta)
    out = {}
    for thread, answer in (("paused-worker", "answered"), ("paused-sub", "fine")):
        graph.invoke(Command(resume=answer), cfg(thread))
        state = graph.get_state(cfg(thread))
        if state.next:  # the worker thread then pauses in the subgraph
            graph.invoke(Command(resume="then"), cfg(thread))
            state = graph.get_state(cfg(thread))
        assert state.next == (), state.next
        out[thread] = state.values
    return out


def states(saver: BaseCheckpointSaver[Any], thread: str, delta: bool = True) -> dict[str, Any]:
    """What a graph sees of a thread: its state with subgraphs, its history, each
    subgraph namespace's history, and every checkpoint's pending writes."""
    graph = build_mixed_graph(saver, delta)
    state = graph.get_state(cfg(thread), subgraphs=True)
    history = list(graph.get_state_history(cfg(thread)))
    subs = []
    for task in state.tasks:
        if task.state is not None and hasattr(task.state, "config"):
            conf = task.state.config["configurable"]
            ns_cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": conf["checkpoint_ns"]}}
            subs.append(list(graph.get_state_history(ns_cfg)))
    writes = []
    for h in history:
        t = saver.get_tuple(h.config)
        assert t is not None
        writes.append(sorted(t.pending_writes or [], key=repr))
    return {"state": state, "history": history, "subgraph_histories": subs, "writes": writes}


# --------------------------------------------------------------------------- sources


@contextlib.contextmanager
def postgres_source(dep: Any) -> Iterator[tuple[str, BaseCheckpointSaver[Any]]]:
    """A fresh database on the harness PostgreSQL with PostgresSaver's tables."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    name = f"mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dep.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = dep.url.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as conn:
            saver = PostgresSaver(conn)
            saver.setup()
            yield url, saver
    finally:
        with psycopg.connect(dep.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def sqlite_source(tmp: Path) -> Iterator[tuple[str, BaseCheckpointSaver[Any]]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp / "source.db"
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        yield f"sqlite:///{path}", saver
    finally:
        conn.close()


VALKEY_DB = 11
"""The standalone server's database the AWS ValkeySaver's tests use (it has no key
prefix; nothing else in the suite uses this database)."""


@contextlib.contextmanager
def valkey_source(dep: Any) -> Iterator[tuple[str, BaseCheckpointSaver[Any]]]:
    from langgraph_checkpoint_aws.checkpoint.valkey import ValkeySaver
    from valkey import Valkey

    url = dep.url.replace("redis://", "valkey://", 1).rstrip("/") + f"/{VALKEY_DB}"
    client = Valkey.from_url(url)
    client.flushdb()
    try:
        yield url, ValkeySaver(client)
    finally:
        client.flushdb()
        client.close()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- ReAct


@tool
def lookup(query: str) -> str:
    """Look a query up in the (fake) knowledge base."""
    return f"results for {query}"


def add_messages_batch(state: list[AnyMessage] | None, writes: Sequence[Any]) -> Any:
    value: Any = state or []
    for write in writes:
        value = add_messages(value, write)
    return value


class PlainChat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class DeltaChat(TypedDict):
    messages: Annotated[list[AnyMessage], DeltaChannel(add_messages_batch, snapshot_frequency=4)]


def agent(state: dict[str, Any]) -> dict[str, Any]:
    """Two tool calls per user turn, then an answer."""
    messages = state["messages"]
    last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    turn = sum(1 for m in messages if isinstance(m, HumanMessage))
    done = sum(1 for m in messages[last_human:] if isinstance(m, ToolMessage))
    if done < 2:
        call = {"name": "lookup", "args": {"query": f"t{turn} q{done}"}, "id": f"c{turn}-{done}"}
        return {"messages": [AIMessage(content="", tool_calls=[call], id=f"ai{turn}-{done}")]}
    return {"messages": [AIMessage(content=f"answer {turn}", id=f"ai{turn}-end", name="bot")]}


def route(state: dict[str, Any]) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


def build_react_graph(saver: BaseCheckpointSaver[Any], delta: bool = False) -> Any:
    graph = StateGraph(DeltaChat if delta else PlainChat)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=saver)


def chat(saver: BaseCheckpointSaver[Any], thread: str, turns: int, delta: bool = False) -> Any:
    """``turns`` user turns (the first with a system message); the final state."""
    graph = build_react_graph(saver, delta)
    for n in range(turns):
        inp: list[Any] = [SystemMessage("be brief", id="sys")] if n == 0 else []
        inp.append(HumanMessage(f"question {n}", id=f"h{n}"))
        graph.invoke({"messages": inp}, cfg(thread))
    return graph.get_state(cfg(thread))

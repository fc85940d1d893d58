"""A small LangGraph agent without any model call: several nodes, a Send fan-out,
a subgraph that pauses on interrupt(), and a resume; given a store, it remembers what
it published across threads. Used by the demo and tests."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Optional, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Command, Send, interrupt


class State(TypedDict, total=False):
    topic: str
    messages: Annotated[list[str], operator.add]
    findings: Annotated[list[str], operator.add]
    approved: bool


class ReviewState(TypedDict, total=False):
    findings: list[str]
    review_log: Annotated[list[str], operator.add]
    approved: bool


def plan(state: State) -> dict[str, Any]:
    return {"messages": [f"planning research on {state['topic']}"]}


def fan_out(state: State) -> list[Send]:
    return [Send("research", {"topic": f"{state['topic']} / part {i}"}) for i in range(3)]


def research(state: State) -> dict[str, Any]:
    return {"findings": [f"notes on {state['topic']}"]}


class ReviewOutput(TypedDict):
    approved: bool


def draft(state: ReviewState) -> dict[str, Any]:
    return {"review_log": [f"draft from {len(state.get('findings', []))} findings"]}


def approve(state: ReviewState) -> dict[str, Any]:
    answer = interrupt({"question": "publish the draft?", "findings": len(state["findings"])})
    return {"approved": bool(answer), "review_log": [f"reviewer said {answer!r}"]}


def build_review() -> Any:
    review = StateGraph(ReviewState, output_schema=ReviewOutput)
    review.add_node("draft", draft)
    review.add_node("approve", approve)
    review.add_edge(START, "draft")
    review.add_edge("draft", "approve")
    review.add_edge("approve", END)
    return review.compile()


MEMORY = ("authors", "demo", "published")
"""Where the graph keeps what it published, across threads (long-term memory)."""


def publish(
    state: State,
    *,
    store: Optional[BaseStore] = None,  # noqa: UP045 - the spelling LangGraph injects by
) -> dict[str, Any]:
    verdict = "published" if state.get("approved") else "shelved"
    found = len(state.get("findings", []))
    message = f"{verdict}: {state['topic']} ({found} findings)"
    if store is not None:  # remembered beyond this thread, where a store is given
        earlier = len(store.search(MEMORY, limit=1000))
        store.put(MEMORY, state["topic"], {"text": message, "findings": found})
        message += f"; {earlier + 1} topic(s) remembered"
    return {"messages": [message]}


def build_graph(checkpointer: BaseCheckpointSaver[Any], store: BaseStore | None = None) -> Any:
    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("research", research)
    graph.add_node("review", build_review())
    graph.add_node("publish", publish)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["research"])
    graph.add_edge("research", "review")
    graph.add_edge("review", "publish")
    graph.add_edge("publish", END)
    return graph.compile(checkpointer=checkpointer, store=store)


def run_demo_graph(
    checkpointer: BaseCheckpointSaver[Any], thread_id: str, store: BaseStore | None = None
) -> Any:
    """Run until the interrupt, resume with approval, and return the final state."""
    graph = build_graph(checkpointer, store)
    config = {"configurable": {"thread_id": thread_id}}
    graph.invoke({"topic": "hash tags", "messages": []}, config)
    paused = graph.get_state(config)
    assert paused.next == ("review",), paused.next
    graph.invoke(Command(resume=True), config)
    return graph.get_state(config)

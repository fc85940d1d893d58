"""The agent the end-to-end benchmark runs: ReAct-style, deterministic, no model.

Each user turn is five supersteps: agent -> tool -> agent -> tool -> agent. The
agent asks for a tool twice (an AIMessage with a tool call), then answers; the tool
node is LangGraph's own ToolNode. Messages are LangChain messages through
``add_messages``, kept either in a plain channel (every checkpoint carries the whole
history) or in a ``DeltaChannel`` (checkpoints carry the writes, with a snapshot
every ``SNAPSHOT_EVERY`` updates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode

TOOL_CALLS_PER_TURN = 2
SUPERSTEPS_PER_TURN = 2 * TOOL_CALLS_PER_TURN + 1
SNAPSHOT_EVERY = 50


@tool
def lookup(query: str) -> str:
    """Look a query up in the (fake) knowledge base."""
    return f"results for {query}: " + "lorem ipsum dolor sit amet " * 16


def add_messages_batch(state: list[AnyMessage] | None, writes: Sequence[Any]) -> Any:
    """``add_messages`` over a batch of writes, as DeltaChannel's reducer needs."""
    value: Any = state or []
    for write in writes:
        value = add_messages(value, write)
    return value


class PlainState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class DeltaState(TypedDict):
    messages: Annotated[
        list[AnyMessage], DeltaChannel(add_messages_batch, snapshot_frequency=SNAPSHOT_EVERY)
    ]


def agent(state: dict[str, Any]) -> dict[str, Any]:
    """Two tool calls per user turn, then an answer."""
    messages = state["messages"]
    last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    turn = sum(1 for m in messages if isinstance(m, HumanMessage))
    done = sum(1 for m in messages[last_human:] if isinstance(m, ToolMessage))
    if done < TOOL_CALLS_PER_TURN:
        query = {"query": f"turn {turn} q{done}"}
        call = {"name": "lookup", "args": query, "id": f"c{turn}-{done}"}
        return {"messages": [AIMessage(content="", tool_calls=[call])]}
    return {"messages": [AIMessage(content=f"answer to turn {turn}: " + "sed do eiusmod " * 20)]}


def route(state: dict[str, Any]) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


def build(checkpointer: Any, delta: bool) -> Any:
    graph = StateGraph(DeltaState if delta else PlainState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


def user_turn(n: int) -> dict[str, Any]:
    return {"messages": [HumanMessage(content=f"question {n}: " + "what about this? " * 6)]}

"""A thread's conversation as plain records: the messages of one checkpoint.

``conversation(saver, config)`` reads the checkpoint ``config`` names (the latest
of the thread without a ``checkpoint_id``) through the saver's ``get_tuple`` and
returns the messages of its ``messages`` channel (or ``channel``), each as
``{"role", "content", "tool_calls", "tool_call_id", "id"}`` plus ``"name"`` where
one is set. Roles are ``human``, ``ai``, ``tool``, ``system`` (and ``function`` or a
chat message's own role). LangChain message objects and dicts (LangChain's
serialized ``{"lc": 1, "type": "constructor", ...}`` form, ``messages_to_dict``'s
``{"type", "data"}`` form and OpenAI-style ``{"role", "content"}``) are accepted.

A ``DeltaChannel`` stores its value in a checkpoint only at snapshots; in between,
the value is rebuilt as LangGraph rebuilds it: the saver's
``get_delta_channel_history`` gives the nearest stored value (the seed) and the
writes since, oldest first, which are folded with ``reducer`` (by default
LangGraph's ``add_messages``, the reducer of message channels), honouring
``Overwrite``. A channel with another reducer needs that reducer passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, ChatMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

Reducer = Callable[[Any, Any], Any]
"""``(value, one write) -> value``, e.g. ``add_messages``."""

ROLES = {
    "human": "human",
    "user": "human",
    "ai": "ai",
    "assistant": "ai",
    "tool": "tool",
    "system": "system",
    "developer": "system",
    "function": "function",
}


class ExportError(LookupError):
    """No such thread or checkpoint, or a channel that holds no messages."""


def _role(kind: str) -> str:
    kind = kind.removesuffix("Chunk").removesuffix("MessageChunk").removesuffix("Message")
    return ROLES.get(kind.lower(), kind.lower())


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for call in calls or []:
        if not isinstance(call, Mapping):
            continue
        if "function" in call and "name" not in call:  # OpenAI style
            fn = call["function"] or {}
            out.append({"name": fn.get("name"), "args": fn.get("arguments"), "id": call.get("id")})
        else:
            out.append({"name": call.get("name"), "args": call.get("args"), "id": call.get("id")})
    return out


def _record(
    role: str, content: Any, fields: Mapping[str, Any], tool_calls: Any = None
) -> dict[str, Any]:
    record = {
        "role": role,
        "content": content,
        "tool_calls": _tool_calls(
            tool_calls if tool_calls is not None else fields.get("tool_calls")
        ),
        "tool_call_id": fields.get("tool_call_id"),
        "id": fields.get("id"),
    }
    if fields.get("name"):
        record["name"] = fields["name"]
    return record


def message_record(message: Any) -> dict[str, Any] | None:
    """One message as a record, or None if ``message`` is not a message."""
    if isinstance(message, BaseMessage):
        role = message.role if isinstance(message, ChatMessage) else _role(message.type)
        fields = {
            "id": message.id,
            "name": message.name,
            "tool_call_id": getattr(message, "tool_call_id", None),
        }
        return _record(_role(role), message.content, fields, getattr(message, "tool_calls", []))
    if not isinstance(message, Mapping):
        return None
    if message.get("lc") and message.get("type") == "constructor":  # LangChain's serialized form
        path = message.get("id")
        kwargs = message.get("kwargs") or {}
        kind = path[-1] if isinstance(path, list) and path else "unknown"
        role = kwargs["role"] if kind == "ChatMessage" and "role" in kwargs else _role(kind)
        return _record(_role(role), kwargs.get("content", ""), kwargs)
    if "type" in message and isinstance(message.get("data"), Mapping):  # messages_to_dict
        data = message["data"]
        role = data["role"] if message["type"] == "chat" and "role" in data else message["type"]
        return _record(_role(str(role)), data.get("content", ""), data)
    if "content" in message and ("role" in message or "type" in message):
        return _record(
            _role(str(message.get("role", message.get("type")))), message["content"], message
        )
    return None


def _fold(seed: Any, writes: Sequence[Any], reducer: Reducer) -> Any:
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    value = seed.value if isinstance(seed, _DeltaSnapshot) else seed
    value = list(value) if value is not None else []
    for write in writes:
        if type(write).__name__ == "Overwrite" and hasattr(write, "value"):
            value = list(write.value or [])
        elif isinstance(write, Mapping) and len(write) == 1 and "__overwrite__" in write:
            value = list(write["__overwrite__"] or [])
        else:
            value = reducer(value, write)
    return value


def _default_reducer() -> Reducer:
    try:
        from langgraph.graph.message import add_messages
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExportError(
            "rebuilding a DeltaChannel of messages needs langgraph (pip install langgraph) "
            "or a reducer passed in"
        ) from exc
    return add_messages


def channel_value(
    saver: BaseCheckpointSaver[Any],
    t: CheckpointTuple,
    channel: str,
    *,
    reducer: Reducer | None = None,
) -> Any:
    """The value of ``channel`` as of checkpoint ``t`` (a DeltaChannel rebuilt)."""
    from langgraph.checkpoint.serde.types import _DeltaSnapshot

    values = t.checkpoint["channel_values"]
    if channel in values:
        value = values[channel]
        return value.value if isinstance(value, _DeltaSnapshot) else value
    if channel not in t.checkpoint.get("channel_versions", {}):
        conf = t.config["configurable"]
        raise ExportError(
            f"checkpoint {conf['checkpoint_id']} of thread {conf['thread_id']!r} has no "
            f"channel {channel!r} (channels: {', '.join(sorted(values)) or 'none'})"
        )
    history = saver.get_delta_channel_history(config=t.config, channels=[channel])[channel]
    writes = [value for _, _, value in history["writes"]]
    return _fold(history.get("seed"), writes, reducer or _default_reducer())


def conversation(
    saver: BaseCheckpointSaver[Any],
    config: RunnableConfig,
    channel: str = "messages",
    *,
    reducer: Reducer | None = None,
) -> list[dict[str, Any]]:
    """The messages of the checkpoint ``config`` names (the thread's latest without a
    ``checkpoint_id``), as records. Raises ``ExportError`` for an unknown thread or
    checkpoint, a missing channel, or a channel whose value is not a list of messages.
    """
    return conversation_of(saver, config, channel, reducer=reducer)[1]


def conversation_of(
    saver: BaseCheckpointSaver[Any],
    config: RunnableConfig,
    channel: str = "messages",
    *,
    reducer: Reducer | None = None,
) -> tuple[CheckpointTuple, list[dict[str, Any]]]:
    """``conversation`` with the checkpoint tuple it read."""
    conf = dict(config.get("configurable", {}))
    conf.setdefault("checkpoint_ns", "")
    t = saver.get_tuple({"configurable": conf})
    if t is None:
        thread = conf.get("thread_id")
        if conf.get("checkpoint_id"):
            raise ExportError(f"no checkpoint {conf['checkpoint_id']} in thread {thread!r}")
        raise ExportError(f"no thread {thread!r}")
    value = channel_value(saver, t, channel, reducer=reducer)
    if not isinstance(value, (list, tuple)):
        raise ExportError(
            f"channel {channel!r} holds no messages (a {type(value).__name__}, not a list)"
        )
    records = []
    for i, message in enumerate(value):
        record = message_record(message)
        if record is None:
            raise ExportError(
                f"channel {channel!r} holds no messages (item {i} is a {type(message).__name__})"
            )
        records.append(record)
    return t, records

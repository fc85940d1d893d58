"""The smallest checkpoints tests write many of, and the config of a thread."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import Checkpoint, empty_checkpoint


def checkpoint(i: int) -> Checkpoint:
    cp = empty_checkpoint()
    cp["channel_values"] = {"n": i}
    cp["channel_versions"] = {"n": 1}
    return cp


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}

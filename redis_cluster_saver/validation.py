"""Checks on user input, run before anything is sent so bad input writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig


def text(value: Any, name: str) -> str:
    """A str that Redis can store (valid UTF-8), or a clear error naming the field."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__} ({value!r:.80})")
    if value.isascii():  # most text, and always valid
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid Unicode text: {exc}") from None
    return value


def configurable(config: Any) -> Mapping[str, Any]:
    # a dict is the usual case, told apart faster than through the Mapping ABC
    if type(config) is not dict and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, not {type(config).__name__}")
    conf = config.get("configurable")
    if type(conf) is not dict and not isinstance(conf, Mapping):
        raise ValueError("config['configurable'] is required and must be a mapping")
    return conf


def thread_id(config: RunnableConfig) -> str:
    conf = configurable(config)
    if conf.get("thread_id") is None:
        raise ValueError("config['configurable']['thread_id'] is required")
    return text(conf["thread_id"], "thread_id")


def namespace(config: RunnableConfig) -> str:
    ns = configurable(config).get("checkpoint_ns")
    return "" if ns is None else text(ns, "checkpoint_ns")


def checkpoint_id(config: RunnableConfig | None) -> str | None:
    if config is None:
        return None
    cid = configurable(config).get("checkpoint_id")
    return None if cid is None or cid == "" else text(cid, "checkpoint_id")


def limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"limit must be an int or None, not {type(value).__name__}")
    return value


MAX_KEY_BYTES = 48 * 1024
"""Longest checkpoint key accepted: the search index truncates document keys near
64 KiB (distinct checkpoints would then share one entry), so the ids that make up a
key must stay below this, escaped and UTF-8 encoded. 10 kB ids fit easily."""


def key_size(key: str, what: str) -> str:
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise ValueError(
            f"{what} together make a Redis key of {size} bytes; the limit is "
            f"{MAX_KEY_BYTES} bytes (a search index cannot tell longer keys apart)"
        )
    return key

"""Moving threads from langgraph-checkpoint-redis (the older saver) into this one.

The source is read through the older saver's own API, so its key layout and JSON
documents are interpreted by the code that wrote them. Re-running is safe: a
checkpoint already here is not put again, and its pending writes are put again
idempotently (ordinary writes never overwrite), so an interrupted run completes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

from .saver import RedisClusterSaver


@dataclass
class MigrationReport:
    threads: int = 0
    migrated: int = 0
    already_there: int = 0
    writes: int = 0
    differences: list[str] = field(default_factory=list)


def reference_saver(url: str) -> BaseCheckpointSaver[Any]:
    """The older saver on ``url`` (needs langgraph-checkpoint-redis installed)."""
    try:
        from langgraph.checkpoint.redis import RedisSaver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "migrating needs the older saver to read its data: pip install "
            "langgraph-checkpoint-redis"
        ) from exc
    saver = RedisSaver(url)
    saver.setup()
    return saver


def by_thread(source: BaseCheckpointSaver[Any]) -> dict[str, list[CheckpointTuple]]:
    threads: dict[str, list[CheckpointTuple]] = defaultdict(list)
    for t in source.list(None):
        threads[t.config["configurable"]["thread_id"]].append(t)
    return threads


def migrate(
    source: BaseCheckpointSaver[Any],
    target: RedisClusterSaver,
    *,
    progress: Any = None,
) -> MigrationReport:
    """Copy every thread; ``progress`` wraps the thread list (e.g. ``tqdm``)."""
    report = MigrationReport()
    threads = by_thread(source)
    report.threads = len(threads)
    names: Iterable[str] = sorted(threads)
    for thread in progress(names, total=len(threads)) if progress else names:
        for t in sorted(threads[thread], key=lambda t: t.config["configurable"]["checkpoint_id"]):
            conf = t.config["configurable"]
            here: Any = {"configurable": dict(conf)}
            if target.get_tuple(here) is None:
                parent = (
                    t.parent_config["configurable"].get("checkpoint_id")
                    if t.parent_config
                    else None
                )
                config: Any = {
                    "configurable": {
                        "thread_id": thread,
                        "checkpoint_ns": conf.get("checkpoint_ns", ""),
                        **({"checkpoint_id": parent} if parent else {}),
                    }
                }
                checkpoint = t.checkpoint
                target.put(config, checkpoint, t.metadata, dict(checkpoint["channel_versions"]))
                report.migrated += 1
            else:
                report.already_there += 1
            tasks: dict[str, list[tuple[str, Any]]] = defaultdict(list)
            for task_id, channel, value in t.pending_writes or []:
                tasks[task_id].append((channel, value))
            for task_id, writes in tasks.items():
                target.put_writes(here, writes, task_id)
                report.writes += len(writes)
    return report


def _shape(t: CheckpointTuple) -> tuple[Any, ...]:
    conf = t.config["configurable"]
    parent = t.parent_config["configurable"].get("checkpoint_id") if t.parent_config else None
    return (
        conf.get("checkpoint_ns", ""),
        conf["checkpoint_id"],
        parent,
        t.metadata,
        t.checkpoint["channel_values"],
        sorted(t.pending_writes or [], key=repr),
    )


def verify(
    source: BaseCheckpointSaver[Any], target: RedisClusterSaver, threads: Sequence[str]
) -> list[str]:
    """Threads whose checkpoints differ between the two savers (list and get_tuple)."""
    differ = []
    for thread in threads:
        every: Any = {"configurable": {"thread_id": thread}}
        theirs = sorted((_shape(t) for t in source.list(every)), key=repr)
        ours = sorted((_shape(t) for t in target.list(every)), key=repr)
        latest: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        a, b = source.get_tuple(latest), target.get_tuple(latest)
        same_latest = (a is None and b is None) or (
            a is not None and b is not None and _shape(a) == _shape(b)
        )
        if theirs != ours or not same_latest:
            differ.append(thread)
    return differ

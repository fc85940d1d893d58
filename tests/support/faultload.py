"""Writers under fire: concurrent writers (OS threads with the sync saver and asyncio
tasks with the async saver) over many threads while a fault strikes, then every
acknowledged checkpoint is read back. Used by tests/integration/test_faults.py (short
runs) and benchmarks/soak.py (long runs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import AsyncRedisClusterSaver, DurabilityError, RedisClusterSaver


@dataclass
class Tally:
    """What the writers saw: acknowledged checkpoints (thread, id) -> value, errors."""

    acknowledged: dict[tuple[str, str], int] = field(default_factory=dict)
    errored: int = 0
    durability_errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, thread: str, cid: str, value: int) -> None:
        with self.lock:
            self.acknowledged[(thread, cid)] = value

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if isinstance(exc, DurabilityError):
                self.durability_errors += 1
            else:
                self.errored += 1
            name = type(exc).__name__
            self.error_kinds[name] = self.error_kinds.get(name, 0) + 1


def _step(thread: str, parent: str | None, n: int) -> tuple[Any, Any, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = {"n": n, "thread": thread}
    cp["channel_versions"] = {"n": n + 1, "thread": 1}
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if parent:
        conf["checkpoint_id"] = parent
    return {"configurable": conf}, cp, {"source": "loop", "step": n}


def _sync_writer(saver: RedisClusterSaver, threads: list[str], stop: float, tally: Tally) -> None:
    parents: dict[str, str | None] = dict.fromkeys(threads)
    n = 0
    while time.monotonic() < stop:
        for thread in threads:
            config, cp, md = _step(thread, parents[thread], n)
            try:
                stored = saver.put(config, cp, md, {"n": n + 1, "thread": 1})
                saver.put_writes(stored, [("n", n)], f"task-{n}")
            except Exception as exc:  # counted, the load goes on
                tally.fail(exc)
                continue
            tally.ack(thread, cp["id"], n)
            parents[thread] = cp["id"]
        n += 1


async def _async_writer(
    saver: AsyncRedisClusterSaver, threads: list[str], stop: float, tally: Tally
) -> None:
    parents: dict[str, str | None] = dict.fromkeys(threads)
    n = 0
    while time.monotonic() < stop:
        for thread in threads:
            config, cp, md = _step(thread, parents[thread], n)
            try:
                stored = await saver.aput(config, cp, md, {"n": n + 1, "thread": 1})
                await saver.aput_writes(stored, [("n", n)], f"task-{n}")
            except Exception as exc:
                tally.fail(exc)
                continue
            tally.ack(thread, cp["id"], n)
            parents[thread] = cp["id"]
        n += 1


def run_load(
    url: str,
    options: dict[str, Any],
    *,
    writers: int,
    threads: int,
    seconds: float,
    fault: Callable[[], None],
    fault_at: float,
) -> Tally:
    """Half the writers are OS threads (sync saver), half asyncio tasks (async saver)."""
    tally = Tally()
    names = [f"load-{i}" for i in range(threads)]
    shares = [names[i::writers] for i in range(writers)]
    stop = time.monotonic() + seconds
    sync_saver = RedisClusterSaver(url, **options)
    sync_saver.setup()

    async def async_side() -> None:
        async with AsyncRedisClusterSaver.from_conn_string(url, **options) as saver:
            await asyncio.gather(
                *(_async_writer(saver, share, stop, tally) for share in shares[writers // 2 :])
            )

    workers = [
        threading.Thread(target=_sync_writer, args=(sync_saver, share, stop, tally))
        for share in shares[: writers // 2]
    ]
    workers.append(threading.Thread(target=lambda: asyncio.run(async_side())))
    for w in workers:
        w.start()
    time.sleep(fault_at)
    fault()
    for w in workers:
        w.join()
    sync_saver.close()
    return tally


def lost(url: str, options: dict[str, Any], tally: Tally) -> list[tuple[str, str]]:
    """Acknowledged checkpoints that are gone or differ now."""
    missing = []
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        for (thread, cid), n in sorted(tally.acknowledged.items()):
            config: Any = {
                "configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": cid}
            }
            tup = saver.get_tuple(config)
            if tup is None or tup.checkpoint["channel_values"] != {"n": n, "thread": thread}:
                missing.append((thread, cid))
    return missing

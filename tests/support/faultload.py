"""Writers under fire: concurrent writers (OS threads with the sync saver and asyncio
tasks with the async saver) over many threads while a fault strikes, then every
acknowledged checkpoint is read back. Used by tests/integration/test_faults.py (short
runs) and benchmarks/soak.py (long runs)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
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

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """A writer step whose error is counted, and the load goes on."""
        try:
            yield
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if isinstance(exc, DurabilityError):
                self.durability_errors += 1
            else:
                self.errored += 1
            name = type(exc).__name__
            self.error_kinds[name] = self.error_kinds.get(name, 0) + 1


@dataclass(frozen=True)
class Step:
    """One writer step on a thread: a put (``put``: its arguments), then one write."""

    thread: str
    n: int
    put: tuple[Any, Any, Any, Any]
    writes: tuple[Any, str]


class Load:
    """The steps of one writer, round after round over its threads, each put on the
    thread's last acknowledged checkpoint."""

    def __init__(self, threads: list[str]) -> None:
        self.parents: dict[str, str | None] = dict.fromkeys(threads)
        self.n = 0

    def round(self) -> Iterator[Step]:
        for thread, parent in list(self.parents.items()):
            cp = empty_checkpoint()
            cp["channel_values"] = {"n": self.n, "thread": thread}
            cp["channel_versions"] = {"n": self.n + 1, "thread": 1}
            conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
            if parent:
                conf["checkpoint_id"] = parent
            md = {"source": "loop", "step": self.n}
            new = {"n": self.n + 1, "thread": 1}
            put = ({"configurable": conf}, cp, md, new)
            yield Step(thread, self.n, put, ([("n", self.n)], f"task-{self.n}"))
        self.n += 1

    def acked(self, step: Step, tally: Tally) -> None:
        cid = step.put[1]["id"]
        tally.ack(step.thread, cid, step.n)
        self.parents[step.thread] = cid


def _sync_writer(saver: RedisClusterSaver, threads: list[str], stop: float, tally: Tally) -> None:
    load = Load(threads)
    while time.monotonic() < stop:
        for step in load.round():
            with tally.counting():
                saver.put_writes(saver.put(*step.put), *step.writes)
                load.acked(step, tally)


async def _async_writer(
    saver: AsyncRedisClusterSaver, threads: list[str], stop: float, tally: Tally
) -> None:
    load = Load(threads)
    while time.monotonic() < stop:
        for step in load.round():
            with tally.counting():
                await saver.aput_writes(await saver.aput(*step.put), *step.writes)
                load.acked(step, tally)


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

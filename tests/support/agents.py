"""Writers in real OS processes, each with its own saver, driven step by step by a test.

A child obeys messages from its pipe, so a test can interleave other processes'
deletes and reads between the child's round trips, and stop the child at a chosen
round trip (the shell's trip hook): paused there, or killed there with SIGKILL.
Children start with ``spawn`` (nothing inherited but arguments), and every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver
from redis_cluster_saver.plan import RoundTrip

WAIT = 60.0
"""Seconds any one message may take to arrive."""


class Agent:
    """A child process running ``target(conn, *args)``; ``with`` kills it at the end."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child, *args), daemon=True)

    def __enter__(self) -> Agent:
        self.process.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(WAIT)

    def send(self, *message: Any) -> None:
        self.conn.send(message)

    def recv(self) -> Any:
        if not self.conn.poll(WAIT):
            raise TimeoutError(f"no message from the agent within {WAIT} s")
        reply = self.conn.recv()
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise AssertionError(f"the agent failed: {reply[1]}")
        return reply

    def call(self, *message: Any) -> Any:
        self.send(*message)
        return self.recv()

    def exitcode(self) -> int | None:
        self.process.join(WAIT)
        return self.process.exitcode


def stop_at(saver: RedisClusterSaver, conn: Connection, how: str, after: int = 1) -> None:
    """Stop the process once ``after`` trips of its next operations have their replies:
    ``pause`` tells the test ("between") and waits for "continue"; ``kill`` dies by
    SIGKILL, as a crash would."""
    seen = [0]

    def hook(event: str, trip: RoundTrip) -> None:
        if event != "reply":
            return
        seen[0] += 1
        if seen[0] != after:
            return
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        saver.shell.hook = None
        conn.send(("between",))
        conn.recv()

    saver.shell.hook = hook


class ListThread:
    """One agent thread whose ``messages`` list grows by one item per step, carried in
    memory from step to step as LangGraph's loop does. The first item is long (a
    system prompt), so every later step is stored as a list delta. ``next`` gives a
    put's arguments and ``done`` takes its result, for the sync and async savers alike."""

    def __init__(self, saver: Any, thread: str, run: str = "run-1") -> None:
        self.saver = saver
        self.config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        self.messages: list[str] = []
        self.version: str | None = None
        self.run = run
        self.step_no = 0

    def next(self) -> tuple[Any, Any, Any, Any]:
        self.messages = [*self.messages, message(self.step_no)]
        self.version = self.saver.get_next_version(self.version, None)
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": self.messages}
        cp["channel_versions"] = {"messages": self.version}
        md: Any = {"step": self.step_no, "run_id": self.run, "source": "loop"}
        return self.config, cp, md, {"messages": self.version}

    def done(self, config: Any) -> tuple[str, list[str]]:
        self.config = config
        self.step_no += 1
        return config["configurable"]["checkpoint_id"], list(self.messages)

    def step(self) -> tuple[str, list[str]]:
        return self.done(self.saver.put(*self.next()))


def message(n: int) -> str:
    return f"message {n}: " + "x" * (4000 if n == 0 else 80)


def list_writer(conn: Connection, url: str, options: dict[str, Any], thread: str) -> None:
    """Messages: ("steps", n) -> [(id, messages)...]; ("stop", how) -> arms stop_at;
    ("exit",)."""
    try:
        with RedisClusterSaver.from_conn_string(url, **options) as saver:
            agent = ListThread(saver, thread)
            conn.send(("ready",))
            while True:
                message = conn.recv()
                if message[0] == "steps":
                    conn.send([agent.step() for _ in range(message[1])])
                elif message[0] == "stop":
                    stop_at(saver, conn, message[1])
                else:
                    return
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


@dataclass
class Busy:
    """What a busy agent saw: acknowledged (id, messages), errors, its slowest step."""

    written: list[tuple[str, list[str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    slowest: float = 0.0

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One step, timed; its error counted, not raised."""
        began = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        self.slowest = max(self.slowest, time.monotonic() - began)

    def check(self, cid: str, messages: list[str], got: Any, listed: list[Any]) -> None:
        """The step read back what it wrote; it is acknowledged."""
        assert got is not None and got.checkpoint["channel_values"]["messages"] == messages
        assert len(listed) >= 1
        self.written.append((cid, messages))


def _should_stop(conn: Connection, until: float, busy: Busy) -> bool:
    return conn.poll() or time.monotonic() > until or len(busy.errors) > 5


def busy_writer(
    conn: Connection, url: str, options: dict[str, Any], thread: str, seconds: float
) -> None:
    """Steps of a graph (put, put_writes, get_tuple, list) in a loop until told to stop
    or ``seconds`` pass; answers with a Busy. Errors are counted, not raised."""
    busy, until = Busy(), time.monotonic() + seconds
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        agent = ListThread(saver, thread, run="busy")
        conn.send(("ready",))
        while not _should_stop(conn, until, busy):
            with busy.step():
                cid, messages = agent.step()
                saver.put_writes(agent.config, [("messages", ["w"])], f"task-{cid}")
                got, listed = saver.get_tuple(agent.config), list(saver.list(agent.config, limit=3))
                busy.check(cid, messages, got, listed)
    conn.send(busy)


def async_busy_writer(
    conn: Connection, url: str, options: dict[str, Any], thread: str, seconds: float
) -> None:
    """busy_writer with the asyncio saver."""

    async def steps() -> None:
        busy, until = Busy(), time.monotonic() + seconds
        async with AsyncRedisClusterSaver.from_conn_string(url, **options) as saver:
            agent = ListThread(saver, thread, run="busy")
            conn.send(("ready",))
            while not _should_stop(conn, until, busy):
                with busy.step():
                    cid, messages = agent.done(await saver.aput(*agent.next()))
                    await saver.aput_writes(agent.config, [("messages", ["w"])], f"task-{cid}")
                    got = await saver.aget_tuple(agent.config)
                    listed = [t async for t in saver.alist(agent.config, limit=3)]
                    busy.check(cid, messages, got, listed)
        conn.send(busy)

    asyncio.run(steps())


@dataclass
class Fleet:
    """What a fleet of agents saw: acknowledged (thread, id, messages), errors, and
    the latency of each step in seconds."""

    written: list[tuple[str, str, list[str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def async_fleet(
    conn: Connection, url: str, options: dict[str, Any], threads: list[str], seconds: float
) -> None:
    """One asyncio saver, one agent task per thread, each stepping (put, put_writes,
    get_tuple) until told to stop or ``seconds`` pass; answers with a Fleet."""
    asyncio.run(_fleet(conn, url, options, threads, seconds))


async def _fleet(
    conn: Connection, url: str, options: dict[str, Any], threads: list[str], seconds: float
) -> None:
    fleet = Fleet()
    until = time.monotonic() + seconds
    stop = asyncio.Event()

    async def agent(saver: AsyncRedisClusterSaver, thread: str) -> None:
        state = ListThread(saver, thread, run="fleet")
        while not stop.is_set() and time.monotonic() < until and len(fleet.errors) < 50:
            began = time.monotonic()
            try:
                cid, messages = state.done(await saver.aput(*state.next()))
                await saver.aput_writes(state.config, [("messages", ["w"])], f"task-{cid}")
                got = await saver.aget_tuple(state.config)
                assert got is not None and got.checkpoint["channel_values"]["messages"] == messages
                fleet.written.append((thread, cid, messages))
            except Exception as exc:
                fleet.errors.append(
                    f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-6)}"
                )
            fleet.latencies.append(time.monotonic() - began)

    async def stopper() -> None:
        while not conn.poll() and time.monotonic() < until:
            await asyncio.sleep(0.05)
        stop.set()

    async with AsyncRedisClusterSaver.from_conn_string(url, **options) as saver:
        conn.send(("ready",))
        await asyncio.gather(stopper(), *(agent(saver, t) for t in threads))
    conn.send(fleet)


def churn(
    conn: Connection,
    url: str,
    options: dict[str, Any],
    threads: list[str],
    role: str,
    steps: int,
    seed: int,
) -> None:
    """``steps`` random acts on ``threads``: a writer puts the next step of one (its
    in-memory list, as an agent would after its thread was deleted under it), a
    deleter deletes, prunes or deletes the runs of one. Answers with the count done."""
    rng = random.Random(seed)
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        agents = {t: ListThread(saver, t, run=f"run-{t}") for t in threads}
        conn.send(("ready",))
        conn.recv()
        for _ in range(steps):
            thread = rng.choice(threads)
            if role == "writer":
                agents[thread].step()
            else:
                act = rng.choice(["delete", "prune", "runs"])
                if act == "delete":
                    saver.delete_thread(thread)
                elif act == "prune":
                    saver.prune([thread], strategy="delete")
                else:
                    saver.delete_for_runs([f"run-{thread}"])
        conn.send(steps)


BIG = "w" * 40_000
"""A pending write's payload: big enough that a task's writes span several socket
reads on the server, so a kill can land in the middle of them."""


def step_args(thread: str, n: int, parent: str | None) -> tuple[Any, Any, Any, Any]:
    """Step ``n`` of a graph thread: its checkpoint (the history grows by one message,
    ``n`` counts the steps) and its config."""
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": [message(i) for i in range(n + 1)], "n": n}
    cp["channel_versions"] = {"messages": f"{n + 1:08d}", "n": f"{n + 1:08d}"}
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if parent:
        conf["checkpoint_id"] = parent
    new = {"messages": cp["channel_versions"]["messages"], "n": cp["channel_versions"]["n"]}
    return {"configurable": conf}, cp, {"step": n, "source": "loop"}, new


def task_writes(n: int) -> list[tuple[str, Any]]:
    return [("messages", [f"reply {n}", BIG]), ("n", n + 1), ("log", f"task {n} " + BIG)]


def graph_steps(conn: Connection, url: str, options: dict[str, Any], thread: str) -> None:
    """Real graph steps (a put, then a task's three pending writes) from where the
    thread stands, until killed; every acknowledged operation is reported with what
    it sent, so a test can replay exactly those on InMemorySaver."""
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        latest = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
        n = latest.metadata["step"] + 1 if latest else 0
        parent = latest.checkpoint["id"] if latest else None
        conn.send(("ready",))
        while n < 10_000:
            args = step_args(thread, n, parent)
            stored = saver.put(*args)
            conn.send(("put", args))
            saver.put_writes(stored, task_writes(n), f"task-{n}")
            conn.send(("writes", stored, n))
            parent, n = stored["configurable"]["checkpoint_id"], n + 1


def whole(tup: Any) -> list[str]:
    """What is wrong with a checkpoint read back: values missing, or a task with only
    some of its writes."""
    wrong = []
    values = tup.checkpoint["channel_values"]
    n = tup.metadata["step"]
    if values.get("n") != n or values.get("messages") != [message(i) for i in range(n + 1)]:
        wrong.append(f"checkpoint {n}: values {sorted(values)} are not whole")
    tasks: dict[str, int] = {}
    for task_id, _, _ in tup.pending_writes or []:
        tasks[task_id] = tasks.get(task_id, 0) + 1
    wrong += [f"task {t}: {k} of 3 writes" for t, k in tasks.items() if k != 3]
    return wrong


def watcher(conn: Connection, url: str, options: dict[str, Any], thread: str) -> None:
    """Reads the thread (latest, by id, a page of history) until told to stop, and
    answers with what it found wrong and how many checkpoints it read."""
    wrong: list[str] = []
    seen = 0
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    with RedisClusterSaver.from_conn_string(url, **options) as saver:
        conn.send(("ready",))
        deadline = time.monotonic() + 300
        while not conn.poll() and time.monotonic() < deadline:
            for tup in [saver.get_tuple(config), *saver.list(config, limit=3)]:
                if tup is not None:
                    seen += 1
                    wrong += whole(tup)
    conn.send((wrong[:20], seen))

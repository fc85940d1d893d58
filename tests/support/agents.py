"""Writers in real OS processes, each with its own saver, driven step by step by a test.

A child obeys messages from its pipe, so a test can interleave other processes'
deletes and reads between the child's round trips, and stop the child at a chosen
round trip (the shell's trip hook): paused there, or killed there with SIGKILL.
Children start with ``spawn`` (nothing inherited but arguments), and every wait is
bounded.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from redis_cluster_saver import RedisClusterSaver
from redis_cluster_saver.commands import RoundTrip

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
    system prompt), so every later step is stored as a list delta."""

    def __init__(self, saver: RedisClusterSaver, thread: str, run: str = "run-1") -> None:
        self.saver = saver
        self.config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        self.messages: list[str] = []
        self.version: str | None = None
        self.run = run
        self.step_no = 0

    def step(self) -> tuple[str, list[str]]:
        self.messages = [*self.messages, message(self.step_no)]
        self.version = self.saver.get_next_version(self.version, None)
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": self.messages}
        cp["channel_versions"] = {"messages": self.version}
        md: Any = {"step": self.step_no, "run_id": self.run, "source": "loop"}
        self.config = self.saver.put(self.config, cp, md, {"messages": self.version})
        self.step_no += 1
        return cp["id"], list(self.messages)


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

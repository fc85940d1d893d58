"""A TCP proxy on 127.0.0.1 that adds a fixed one-way delay, for benchmarks at network RTTs.

``LatencyProxy.start(target_port, 0.001)`` listens on a free loopback port and forwards
every connection to ``127.0.0.1:target_port``, delivering each chunk ``one_way_delay_s``
after it arrived, in each direction (so a request/reply exchange takes ``2 * delay``
longer), in the order it arrived. ``behind(deployment, delay)`` puts one in front of a
single-endpoint Deployment and gives the URL through it.

Why this design: asyncio/epoll timers round to milliseconds, too coarse for 0.25 ms.
Here each direction of a connection has a reader thread, which stamps every chunk with
``time.monotonic()`` as it arrives and queues it, and a writer thread, which sleeps
(``time.sleep``: ``clock_nanosleep``, with the process's timer slack lowered to 1 us)
until the chunk is due and sends it. Nothing spins and nothing polls: idle, every thread
is blocked in ``recv``, a queue or ``accept``. A chunk is never sent early; a late
wake-up only adds scheduler latency. The proxy runs in its own OS process (this file run
as a script, standard library only) so it never waits for the benchmark's GIL; the
parent talks to it over its stdin/stdout (``stats``, ``reset``, ``stop``), and it exits
when that pipe closes, so it cannot outlive its parent.

Round trips are counted per connection: a client->server chunk starts a new one when it
is the connection's first or the server has sent something since the previous
client->server chunk. Bytes and round trips are counted as chunks arrive at the proxy,
so once a client holds a reply, the exchange is in ``stats()``.

A half-close is passed on: EOF from one side (after that side's delayed data) becomes a
``shutdown(SHUT_WR)`` towards the other, and a connection is closed once both directions
ended; an error on either socket closes both at once.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import json
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .model import Deployment

HOST = "127.0.0.1"
CHUNK = 256 * 1024
START_TIMEOUT = 10.0
CONTROL_TIMEOUT = 5.0
_PR_SET_TIMERSLACK = 29
# Topologies whose clients follow addresses the servers announce (cluster nodes, the
# primary a sentinel names), which would bypass a proxy in front of one address.
_MULTI_ENDPOINT = ("cluster", "sentinel")


@dataclass(frozen=True)
class LatencyStats:
    """What went through the proxy since it started or since the last ``reset()``."""

    round_trips: int
    bytes_to_server: int
    bytes_to_client: int
    connections: int  # accepted
    open_connections: int  # open now (not reset)
    seconds: float


# ----------------------------------------------------------------- the proxy process


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_connections = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.round_trips = 0
            self.bytes_to_server = 0
            self.bytes_to_client = 0
            self.connections = 0
            self.since = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "round_trips": self.round_trips,
                "bytes_to_server": self.bytes_to_server,
                "bytes_to_client": self.bytes_to_client,
                "connections": self.connections,
                "open_connections": self.open_connections,
                "seconds": time.monotonic() - self.since,
            }


def _sleep_until(due: float) -> None:
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return
        time.sleep(left)


class _Connection:
    """One client connection and its server connection: four threads, two queues."""

    def __init__(
        self, client: socket.socket, server: socket.socket, delay: float, counters: _Counters
    ) -> None:
        self.client, self.server = client, server
        self.delay, self.counters = delay, counters
        self.lock = threading.Lock()
        self.directions_left = 2
        self.closed = False
        self.server_spoke = True  # the first client chunk starts a round trip

    def start(self) -> None:
        ways = ((self.client, self.server, True), (self.server, self.client, False))
        for src, dst, to_server in ways:
            chunks: queue.SimpleQueue[tuple[float, bytes | None]] = queue.SimpleQueue()
            threading.Thread(target=self._read, args=(src, chunks, to_server), daemon=True).start()
            threading.Thread(target=self._write, args=(dst, chunks), daemon=True).start()

    def _count(self, size: int, to_server: bool) -> None:
        c = self.counters
        with c.lock:
            if to_server:
                c.bytes_to_server += size
                if self.server_spoke:
                    c.round_trips += 1
                    self.server_spoke = False
            else:
                c.bytes_to_client += size
                self.server_spoke = True

    def _read(
        self,
        src: socket.socket,
        chunks: queue.SimpleQueue[tuple[float, bytes | None]],
        to_server: bool,
    ) -> None:
        """Stamp and queue each chunk; b"" queued means EOF, None a broken socket."""
        while True:
            try:
                data: bytes | None = src.recv(CHUNK)
            except OSError:
                data = None
            now = time.monotonic()
            if data:
                self._count(len(data), to_server)
            chunks.put((now + self.delay, data))
            if not data:
                return

    def _write(
        self, dst: socket.socket, chunks: queue.SimpleQueue[tuple[float, bytes | None]]
    ) -> None:
        while True:
            due, data = chunks.get()
            if data is None:
                self._abort()
                break
            _sleep_until(due)
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                break
            try:
                dst.sendall(data)
            except OSError:
                self._abort()
                break
        self._direction_done()

    def _abort(self) -> None:
        """Both sockets shut at once: every blocked thread of the connection wakes up."""
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _direction_done(self) -> None:
        with self.lock:
            self.directions_left -= 1
            last = self.directions_left == 0 and not self.closed
            self.closed = self.closed or last
        if last:
            self.client.close()
            self.server.close()
            with self.counters.lock:
                self.counters.open_connections -= 1


def _accept(
    listener: socket.socket, target: tuple[str, int], delay: float, counters: _Counters
) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(target, timeout=5.0)
        except OSError:
            client.close()
            continue
        server.settimeout(None)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with counters.lock:
            counters.connections += 1
            counters.open_connections += 1
        _Connection(client, server, delay, counters).start()


def _precise_timers() -> None:
    """Timer slack 1 us (default 50 us) for this thread and every thread it starts."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def serve(
    target: tuple[str, int],
    delay: float,
    port: int = 0,
    control_in: IO[str] | None = None,
    control_out: IO[str] | None = None,
) -> None:
    """Run the proxy in this process until ``stop`` or EOF on ``control_in``.

    Prints ``{"port": ..., "pid": ...}`` when listening, then answers one JSON line per
    command line: ``stats``, ``reset``, ``stop``.
    """
    control_in = control_in or sys.stdin
    control_out = control_out or sys.stdout
    _precise_timers()
    sys.setswitchinterval(0.0005)  # a woken writer waits less for the GIL
    threading.stack_size(512 * 1024)  # four threads per connection
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(1024)
    counters = _Counters()
    threading.Thread(target=_accept, args=(listener, target, delay, counters), daemon=True).start()

    def reply(obj: dict[str, Any]) -> None:
        control_out.write(json.dumps(obj) + "\n")
        control_out.flush()

    reply({"port": listener.getsockname()[1], "pid": os.getpid()})
    for line in control_in:
        cmd = line.strip()
        if cmd == "stats":
            reply(counters.snapshot())
        elif cmd == "reset":
            counters.reset()
            reply({"ok": True})
        elif cmd == "stop":
            reply({"ok": True})
            break
        elif cmd:
            reply({"error": f"unknown command {cmd!r}"})
    # Exiting closes every socket; daemon threads need no goodbye.
    os._exit(0)


# ------------------------------------------------------------------------ the parent


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the latency proxy forwards to loopback only, not {host!r}")


class LatencyProxy:
    """A running proxy process (see the module docstring). Use ``start`` to make one."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        target: tuple[str, int],
        one_way_delay_s: float,
    ) -> None:
        self._proc = proc
        self.port = port
        self.target = target
        self.one_way_delay_s = one_way_delay_s
        self._lock = threading.Lock()
        self._buffer = b""

    @classmethod
    def start(
        cls,
        target_port: int,
        one_way_delay_s: float,
        *,
        target_host: str = HOST,
        port: int = 0,
        timeout: float = START_TIMEOUT,
    ) -> LatencyProxy:
        """Start a proxy process forwarding ``127.0.0.1:port`` (free port when 0) to
        ``target_host:target_port`` with ``one_way_delay_s`` each way; returns once it
        listens."""
        _check_loopback(target_host)
        if one_way_delay_s < 0:
            raise ValueError("one_way_delay_s must be >= 0")
        argv = [
            sys.executable,
            "-I",  # standard library only, and not the cluster package's directory
            str(Path(__file__).resolve()),
            "--target-host", target_host,
            "--target-port", str(target_port),
            "--delay", repr(float(one_way_delay_s)),
            "--port", str(port),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        proxy = cls(proc, 0, (target_host, target_port), float(one_way_delay_s))
        try:
            hello = proxy._read_reply(timeout)
        except BaseException:
            proxy._kill()
            raise
        proxy.port = int(hello["port"])
        return proxy

    @property
    def pid(self) -> int:
        """The proxy process's pid."""
        return self._proc.pid

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect: (127.0.0.1, port)."""
        return (HOST, self.port)

    def running(self) -> bool:
        """Whether the proxy process is still alive."""
        return self._proc.poll() is None

    def _read_reply(self, timeout: float) -> dict[str, Any]:
        stdout = self._proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"latency proxy (pid {self.pid}) did not answer in {timeout}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    code = self._proc.poll()
                    raise RuntimeError(f"latency proxy (pid {self.pid}) exited (code {code})")
                self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"latency proxy: {reply['error']}")
        return reply

    def _ask(self, command: str) -> dict[str, Any]:
        with self._lock:
            stdin = self._proc.stdin
            if stdin is None or not self.running():
                raise RuntimeError(f"latency proxy (pid {self.pid}) is not running")
            stdin.write(command.encode() + b"\n")
            stdin.flush()
            return self._read_reply(CONTROL_TIMEOUT)

    def stats(self) -> LatencyStats:
        """Round trips, bytes each way and connections since start or ``reset()``."""
        return LatencyStats(**self._ask("stats"))

    def reset(self) -> None:
        """Zero the counters of ``stats()`` (open connections stay counted)."""
        self._ask("reset")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (closing every connection through it) and reap it."""
        if self.running():
            with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                self._ask("stop")
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _kill(self) -> None:
        """SIGKILL our own child (by its Popen, never by name) and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LatencyProxy(pid={self.pid}, port={self.port}, target={self.target}, "
            f"one_way_delay_s={self.one_way_delay_s})"
        )


def url_through(url: str, port: int) -> str:
    """``url`` with its port replaced by ``port`` (user, path and query kept)."""
    parts = urlsplit(url)
    if parts.port is None or parts.hostname is None:
        raise ValueError(f"{url!r} names no host:port")
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def behind(deployment: Deployment, one_way_delay_s: float) -> tuple[LatencyProxy, str]:
    """A proxy in front of a single-endpoint deployment (standalone, plain, redis62, tls,
    proxy, postgres) and the deployment's URL through it. The caller stops the proxy.

    Cluster and sentinel clients connect to the addresses the servers announce, which
    would bypass the proxy: they are refused.
    """
    if deployment.topology in _MULTI_ENDPOINT:
        raise ValueError(f"a {deployment.topology} deployment has no single endpoint to delay")
    parts = urlsplit(deployment.url)
    if parts.port is None:
        raise ValueError(f"{deployment.url!r} names no port")
    proxy = LatencyProxy.start(parts.port, one_way_delay_s, target_host=parts.hostname or HOST)
    return proxy, url_through(deployment.url, proxy.port)


def main(argv: list[str] | None = None) -> int:
    """``python -m cluster.latency --target-port P --delay SECONDS [--port N]``."""
    parser = argparse.ArgumentParser(prog="python -m cluster.latency", description=__doc__)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--target-host", default=HOST)
    parser.add_argument("--delay", type=float, required=True, help="one-way delay, seconds")
    parser.add_argument("--port", type=int, default=0, help="listen port (0: a free one)")
    args = parser.parse_args(argv)
    _check_loopback(args.target_host)
    serve((args.target_host, args.target_port), args.delay, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The latency proxy on real servers: the delay it adds, the round trips it counts, the
bytes it carries unchanged, and the processes and connections it leaves behind.

Benchmarks read their RTT-bound results through it, so a proxy that sends early, counts
wrong or corrupts data would silently skew them. Every loop is short and every socket
has a timeout, so each test stays bounded.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster import Deployment, Node
from cluster.latency import LatencyProxy, behind, url_through
from cluster.processes import is_running, no_retry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def target(standalone: Deployment) -> int:
    return standalone.nodes[0].port


def _client(port: int) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5, retry=no_retry()
    )


def _ping_rtts(port: int, count: int) -> list[float]:
    with _client(port) as r:
        r.ping()  # connect and handshake outside the timings
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            r.ping()
            out.append(time.perf_counter() - t0)
    return out


def _wait_for(check: object, timeout: float = 5.0) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


@pytest.fixture
def proxy_1ms(target: int) -> Iterator[LatencyProxy]:
    with LatencyProxy.start(target, 0.001) as proxy:
        yield proxy


def test_ping_at_1ms_one_way_is_never_early(proxy_1ms: LatencyProxy) -> None:
    rtts = _ping_rtts(proxy_1ms.port, 200)
    assert min(rtts) >= 0.002, "every chunk waits its full delay, each way"
    assert statistics.median(rtts) < 0.002 + 0.003


def test_ping_at_quarter_ms_one_way(target: int) -> None:
    with LatencyProxy.start(target, 0.00025) as proxy:
        rtts = _ping_rtts(proxy.port, 300)
    assert min(rtts) >= 0.0005
    assert 0.0005 <= statistics.median(rtts) < 0.003


def test_round_trips_sequential_and_pipelined(target: int) -> None:
    with LatencyProxy.start(target, 0.00025) as proxy, _client(proxy.port) as r:
        r.ping()  # the connection handshake's own round trips
        proxy.reset()
        for _ in range(50):
            r.ping()
        stats = proxy.stats()
        assert stats.round_trips == 50
        assert stats.connections == 0 and stats.open_connections == 1
        assert stats.bytes_to_server == 50 * len(b"*1\r\n$4\r\nPING\r\n")
        assert stats.bytes_to_client == 50 * len(b"+PONG\r\n")

        proxy.reset()
        pipe = r.pipeline(transaction=False)
        for i in range(20):
            pipe.set(f"{{lat}}p{i}", i)
        assert pipe.execute() == [True] * 20
        assert proxy.stats().round_trips == 1
        r.delete(*[f"{{lat}}p{i}" for i in range(20)])


def test_5mb_value_round_trips_byte_identical(target: int) -> None:
    value = os.urandom(5 * 1024 * 1024)
    with LatencyProxy.start(target, 0.00025) as proxy, _client(proxy.port) as r:
        r.ping()
        proxy.reset()
        assert r.set("{lat}big", value)
        assert r.get("{lat}big") == value
        stats = proxy.stats()
        r.delete("{lat}big")
    assert stats.round_trips == 2
    assert stats.bytes_to_server > len(value) and stats.bytes_to_client > len(value)


def test_stop_ends_the_process_and_its_connections(target: int) -> None:
    proxy = LatencyProxy.start(target, 0.001)
    pid = proxy.pid
    held = _client(proxy.port)
    assert held.ping()
    proxy.stop()
    assert not is_running(pid) and not Path(f"/proc/{pid}").exists()
    with pytest.raises(redis.ConnectionError):
        held.ping()  # the proxy closed it
    held.close()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", proxy.port)) != 0


def test_proxy_exits_with_its_parent(target: int) -> None:
    """A parent that dies without stop() (its pipe closes) takes the proxy with it."""
    code = (
        "from cluster.latency import LatencyProxy\n"
        f"print(LatencyProxy.start({target}, 0.001).pid, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    assert _wait_for(lambda: not is_running(pid)), f"proxy {pid} outlived its parent"


def _recv_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_half_close_either_way(proxy_1ms: LatencyProxy) -> None:
    # client half-closes after its request: the reply still arrives, then EOF
    with socket.create_connection(proxy_1ms.address, timeout=5) as s:
        s.sendall(b"PING\r\n")
        s.shutdown(socket.SHUT_WR)
        assert _recv_all(s) == b"+PONG\r\n"
    # the server closes (QUIT): the client gets the reply, then EOF
    with socket.create_connection(proxy_1ms.address, timeout=5) as s:
        s.sendall(b"QUIT\r\n")
        assert _recv_all(s) == b"+OK\r\n"
    assert _wait_for(lambda: proxy_1ms.stats().open_connections == 0)
    assert proxy_1ms.stats().connections == 2


def test_200_concurrent_connections(proxy_1ms: LatencyProxy) -> None:
    socks = [socket.create_connection(proxy_1ms.address, timeout=10) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(b"PING\r\n")
        replies = [s.recv(64) for s in socks]
        assert replies == [b"+PONG\r\n"] * 200
        stats = proxy_1ms.stats()
        assert stats.connections == 200 and stats.round_trips == 200
    finally:
        for s in socks:
            s.close()
    assert _wait_for(lambda: proxy_1ms.stats().open_connections == 0, timeout=10)


def test_behind_standalone_and_postgres(standalone: Deployment, postgres: Deployment) -> None:
    import psycopg

    proxy, url = behind(standalone, 0.001)
    with proxy, redis.Redis.from_url(url, socket_timeout=5) as r:
        assert url == f"redis://127.0.0.1:{proxy.port}"
        assert r.ping()
    proxy, url = behind(postgres, 0.001)
    with proxy, psycopg.connect(url, autocommit=True) as conn:
        assert url == f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        t0 = time.perf_counter()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert time.perf_counter() - t0 >= 0.002
        assert proxy.stats().round_trips >= 1


def test_behind_refuses_cluster_and_sentinel() -> None:
    node = Node(pid=0, port=7000, role="primary", url="redis://127.0.0.1:7000")
    for topology in ("cluster", "sentinel"):
        dep = Deployment(topology, "x", "/nonexistent", node.url, [node])
        with pytest.raises(ValueError, match="single endpoint"):
            behind(dep, 0.001)


def test_url_through_keeps_user_path_and_query() -> None:
    assert url_through("redis://127.0.0.1:1?protocol=2", 9) == "redis://127.0.0.1:9?protocol=2"
    assert url_through("postgresql://u@127.0.0.1:5/db", 9) == "postgresql://u@127.0.0.1:9/db"
    with pytest.raises(ValueError):
        LatencyProxy.start(1, 0.001, target_host="10.0.0.1")

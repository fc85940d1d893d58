"""Public API: start/stop topologies, reuse CLI-started ones, report status.

Fixtures use a unique workdir per deployment (``<topology>-<uuid8>``) while the CLI uses
``<topology>`` itself, so a test session never collides with a topology started by hand.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import redis

from .binaries import TOPOLOGIES, available
from .faults import kill_primary, migrate_slot, pause, refresh_roles, resume, wait_for_failover
from .model import Deployment, Node, load_state
from .network import Network, orphans
from .network import remove as remove_namespaces
from .processes import (
    StartupError,
    admin_client,
    is_running,
    no_retry,
    owns,
    terminate,
    tls_client_kwargs,
)
from .topologies import cluster_health, launch, postgres_health, sentinel_health

__all__ = [
    "TOPOLOGIES",
    "Deployment",
    "Node",
    "StartupError",
    "available",
    "down",
    "healthy",
    "kill_primary",
    "migrate_slot",
    "pause",
    "refresh_roles",
    "resume",
    "run_root",
    "start",
    "status",
    "stop",
    "up",
    "wait_for_failover",
]


def run_root() -> Path:
    """``<repo>/.cluster-run`` (override with $RCS_CLUSTER_RUN_DIR)."""
    env = os.environ.get("RCS_CLUSTER_RUN_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent / ".cluster-run"


def start(
    topology: str,
    workdir: Path | str | None = None,
    *,
    owner_pid: int | None = None,
    modules: bool = True,
    network: Network | None = None,
) -> Deployment:
    """Start a fresh ``topology`` and return its Deployment (state saved to workdir).

    Without ``workdir`` a unique ``.cluster-run/<topology>-<uuid8>/`` is used. Anything
    previously recorded in ``workdir`` is stopped first. ``modules=False`` gives a cluster
    without RedisJSON/RediSearch, the only kind that allows atomic slot migration.
    """
    wd = Path(workdir) if workdir else run_root() / f"{topology}-{uuid.uuid4().hex[:8]}"
    wd = wd.resolve()
    old = load_state(wd)
    if old is not None:
        stop(old)
    if wd.exists() and _inside_run_root(wd):
        shutil.rmtree(wd, ignore_errors=True)
    dep = launch(topology, wd, modules=modules, network=network)
    dep.owner_pid = owner_pid
    dep.save()
    return dep


# Seconds a topology's processes get to exit before SIGKILL (default 5): PostgreSQL's
# fast shutdown ends with a checkpoint, which flushes what a benchmark left dirty.
STOP_TIMEOUT: dict[str, float] = {"postgres": 60.0}


def stop(deployment: Deployment) -> None:
    """Stop the deployment's own processes (pid-verified), delete its workdir and the
    namespaces of its partition network."""
    terminate(
        deployment.nodes, deployment.workdir, timeout=STOP_TIMEOUT.get(deployment.topology, 5.0)
    )
    remove_namespaces(deployment.netns)
    wd = Path(deployment.workdir)
    if _inside_run_root(wd):
        shutil.rmtree(wd, ignore_errors=True)
    else:
        deployment.state_path.unlink(missing_ok=True)


def _inside_run_root(path: Path) -> bool:
    root = run_root()
    return path.resolve() != root and path.resolve().is_relative_to(root)


def healthy(deployment: Deployment) -> str | None:
    """None if every process is alive and the topology is converged; else why not."""
    for n in deployment.nodes:
        if not owns(n, deployment.workdir):
            return f"{n.name} (pid {n.pid}) is not running"
    if deployment.topology == "postgres":
        for n in deployment.by_role("postgres"):
            reason = postgres_health(n)
            if reason is not None:
                return f"{n.name}: {reason}"
        return None
    try:
        if deployment.topology == "cluster":
            return cluster_health(deployment.nodes)
        if deployment.topology == "sentinel":
            sentinels = deployment.by_role("sentinel")
            primaries = deployment.primaries
            if len(primaries) != 1:
                return "no single primary recorded"
            return sentinel_health(
                sentinels, primaries[0], deployment.replicas, deployment.service_name or ""
            )
        if deployment.topology == "proxy":
            client = redis.Redis.from_url(
                deployment.url, socket_timeout=1.0, retry=no_retry(), **deployment.client_kwargs
            )
            try:
                client.set("{rcs-health}k", "1")
            finally:
                client.close()
        for n in deployment.nodes:
            if n.role in ("primary", "replica", "backend"):
                c = admin_client(n.port, **tls_client_kwargs(n, deployment.client_kwargs))
                try:
                    c.ping()
                finally:
                    c.close()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def up(topology: str) -> tuple[Deployment, bool]:
    """CLI semantics: reuse a healthy ``.cluster-run/<topology>``, else (re)start it.

    Returns the deployment and whether it was reused.
    """
    wd = run_root() / topology
    old = load_state(wd)
    if old is not None:
        if healthy(old) is None:
            return old, True
        stop(old)
    return start(topology, wd), False


def _instance_dirs() -> list[Path]:
    root = run_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir())


def _is_orphan(dep: Deployment) -> bool:
    return dep.owner_pid is not None and not is_running(dep.owner_pid)


def down(name: str | None = None) -> list[str]:
    """Stop ``name`` (topology or instance dir), or all CLI topologies plus orphans.

    An orphan is a fixture deployment whose owning pytest process has exited; fixture
    deployments of a live test session are left alone. Returns stopped instance names.
    """
    stopped: list[str] = []
    for wd in _instance_dirs():
        dep = load_state(wd)
        if name is not None:
            if wd.name != name:
                continue
        elif wd.name not in TOPOLOGIES:
            # Fixture instance: only if its pytest owner is gone (or a stale failed start).
            stale = dep is None and time.time() - wd.stat().st_mtime > 120
            if not (stale or (dep is not None and _is_orphan(dep))):
                continue
        if dep is not None:
            stop(dep)
        else:
            shutil.rmtree(wd, ignore_errors=True)  # leftovers of a failed start
        stopped.append(wd.name)
    if name is None:
        left = orphans()  # of a process killed before it could remove them
        remove_namespaces(left)
        stopped += left
    return stopped


def status(name: str | None = None) -> list[Deployment]:
    """Deployments recorded under the run root (optionally just ``name``)."""
    out: list[Deployment] = []
    for wd in _instance_dirs():
        if name is not None and wd.name != name:
            continue
        dep = load_state(wd)
        if dep is not None:
            out.append(dep)
    return out

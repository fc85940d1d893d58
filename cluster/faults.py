"""Fault injection for failover tests: kill, pause, fail over, migrate slots.

Roles recorded in the Deployment are refreshed from the servers' own view after each
fault and persisted, so ``down`` still finds (and tolerates) dead pids.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import redis

from .model import Deployment, Node
from .processes import (
    POLL_INTERVAL,
    StartupError,
    admin_client,
    command,
    owns,
    signal_node,
    wait_until,
)
from .topologies import cluster_health, cluster_view, sentinel_primary


class FaultError(RuntimeError):
    """A fault could not be injected (wrong topology, node not ours, ...)."""


def _live(dep: Deployment, nodes: list[Node] | None = None) -> list[Node]:
    return [n for n in (nodes if nodes is not None else dep.nodes) if owns(n, dep.workdir)]


def _data_nodes(dep: Deployment) -> list[Node]:
    return [n for n in dep.nodes if n.role in ("primary", "replica", "dead")]


def _first_answer(nodes: list[Node], ask: Any) -> Any:
    """What the first node that answers says (None if none does)."""
    for n in nodes:
        try:
            return ask(n)
        except (redis.RedisError, OSError):
            continue
    return None


def _cluster_roles(dep: Deployment, live: list[Node], viewers: list[Node]) -> None:
    view = _first_answer(viewers, lambda n: cluster_view(n.port)) or []
    by_id = {v["id"]: v for v in view}
    for n in _data_nodes(dep):
        v = by_id.get(n.node_id or "")
        if n not in live or v is None or "fail" in v["flags"]:
            n.role = "dead"
        else:
            n.role = "primary" if "master" in v["flags"] else "replica"
    primaries = dep.primaries
    if primaries and dep.url not in [p.url for p in primaries]:
        dep.url = primaries[0].url  # keep the client URL pointing at a live node


def _sentinel_roles(dep: Deployment, live: list[Node]) -> None:
    sentinels = _live(dep, dep.by_role("sentinel"))
    addr = _first_answer(sentinels, lambda s: sentinel_primary(s.port, dep.service_name or ""))
    for n in _data_nodes(dep):
        if n not in live:
            n.role = "dead"
        else:
            n.role = "primary" if addr == n.address else "replica"


def refresh_roles(dep: Deployment, viewers: list[Node] | None = None) -> None:
    """Update node roles from the live servers' view and persist the state file.

    ``viewers``: the nodes whose view of a cluster counts (the majority side of a
    partition); by default the first live node that answers."""
    live = _live(dep, _data_nodes(dep))
    if dep.topology == "cluster":
        _cluster_roles(dep, live, live if viewers is None else viewers)
    elif dep.topology == "sentinel":
        _sentinel_roles(dep, live)
    dep.save()


def kill_primary(dep: Deployment, index: int = 0) -> Node:
    """SIGKILL the ``index``-th current cluster primary, or the sentinel-managed primary."""
    if dep.topology not in ("cluster", "sentinel"):
        raise FaultError(f"kill_primary needs a cluster or sentinel deployment, not {dep.topology}")
    refresh_roles(dep)
    primaries = dep.primaries
    if dep.topology == "sentinel":
        index = 0
    if not primaries or index >= len(primaries):
        raise FaultError(f"no live primary #{index} (primaries: {[p.name for p in primaries]})")
    victim = primaries[index]
    if not signal_node(victim, dep.workdir, signal.SIGKILL):
        raise FaultError(f"{victim.name} (pid {victim.pid}) is not a process the harness owns")
    deadline = time.monotonic() + 5
    while owns(victim, dep.workdir) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    victim.role = "dead"
    dep.save()
    return victim


def wait_for_failover(dep: Deployment, old_primary: Node, timeout: float = 30) -> Node:
    """Block until a replica replaced ``old_primary``; return the new primary Node.

    Cluster: the survivors agree on the new layout and report cluster_state:ok.
    Sentinel: every live sentinel reports the same new primary, which answers ROLE master.
    """
    if dep.topology == "cluster":
        survivors = [n for n in _live(dep, _data_nodes(dep)) if n.pid != old_primary.pid]
        was_replica = {n.node_id for n in survivors if n.role == "replica"}

        def promoted() -> str | None:
            view = cluster_view(survivors[0].port)
            old = next((v for v in view if v["id"] == old_primary.node_id), None)
            if old is not None and old["slots"]:
                return f"{old_primary.name} still owns slots"
            new = [v for v in view if "master" in v["flags"] and v["id"] in was_replica]
            if not new:
                return "no replica promoted yet"
            return cluster_health(survivors)

        _wait(promoted, timeout, "cluster failover")
        refresh_roles(dep, survivors)  # the old primary may be alive, on its own
        new_ids = was_replica - {n.node_id for n in dep.replicas}
        return next(n for n in dep.primaries if n.node_id in new_ids)

    if dep.topology == "sentinel":
        sentinels = _live(dep, dep.by_role("sentinel"))
        candidates = {n.port: n for n in _live(dep, _data_nodes(dep)) if n.pid != old_primary.pid}

        def elected() -> str | None:
            addrs = {sentinel_primary(s.port, dep.service_name or "") for s in sentinels}
            if len(addrs) != 1:
                return f"sentinels disagree: {addrs}"
            (addr,) = addrs
            if addr is None or addr[1] not in candidates:
                return f"primary still {addr}"
            client = admin_client(addr[1])
            try:
                role = command(client, "ROLE")[0]
            finally:
                client.close()
            return None if role == "master" else f"{addr} has role {role}"

        _wait(elected, timeout, "sentinel failover")
        refresh_roles(dep)
        return dep.primaries[0]
    raise FaultError(f"no failover in a {dep.topology} deployment")


def _wait(check: Any, timeout: float, what: str) -> None:
    try:
        wait_until(check, timeout, what)
    except StartupError as exc:
        raise TimeoutError(str(exc)) from None


def pause(node: Node) -> None:
    """SIGSTOP the node: it keeps its sockets but answers nothing (a hung server)."""
    if not signal_node(node, "", signal.SIGSTOP):
        raise FaultError(f"{node.name} (pid {node.pid}) is not running")


def resume(node: Node) -> None:
    """SIGCONT a node paused with ``pause``."""
    if not signal_node(node, "", signal.SIGCONT):
        raise FaultError(f"{node.name} (pid {node.pid}) is not running")


def slot_owner(dep: Deployment, slot: int) -> Node:
    """The Node that serves ``slot`` according to a live primary."""
    for probe in _live(dep, dep.primaries):
        for v in cluster_view(probe.port):
            if "master" in v["flags"] and any(lo <= slot <= hi for lo, hi in v["slots"]):
                return next(n for n in dep.nodes if n.node_id == v["id"])
    raise FaultError(f"no node owns slot {slot}")


def migrate_slot(
    dep: Deployment, slot: int, target_primary: Node, replace: bool = False, batch: int = 100
) -> None:
    """Move ``slot`` with its keys to ``target_primary`` (IMPORTING/MIGRATING, key by key,
    no REPLACE unless asked): ``cluster.slots.migrate_slot``, kept here for its callers."""
    from . import slots  # slots builds on this module's helpers

    slots.migrate_slot(dep, slot, target_primary, replace, batch)

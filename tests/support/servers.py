"""Looking at a deployment's raw data from the side, with plain redis-py clients."""

from __future__ import annotations

from typing import Any

import redis


def primaries(deployment: Any) -> list[redis.Redis]:
    nodes = [n for n in deployment.nodes if n.role in ("primary", "backend")] or deployment.nodes
    if deployment.topology in ("standalone", "plain", "redis62"):
        nodes = deployment.nodes[:1]
    return [redis.Redis(host=n.host, port=n.port) for n in nodes if n.role != "sentinel"]


def keys_under(deployment: Any, prefix: str) -> list[bytes]:
    """Every key whose name starts with ``prefix:``, from every primary."""
    found: list[bytes] = []
    for client in primaries(deployment):
        found += list(client.scan_iter(match=f"{prefix}:*", count=1000))
        client.close()
    return sorted(found)


def url_of(deployment: Any) -> str:
    """The URL a saver is given for a deployment (Sentinel: its sentinels and service)."""
    if deployment.topology == "sentinel":
        hosts = ",".join(f"{h}:{p}" for h, p in deployment.sentinels)
        return f"redis+sentinel://{hosts}/{deployment.service_name}"
    return str(deployment.url)

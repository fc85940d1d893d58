"""twemproxy (nutcracker) configuration, and what the proxy does not support.

Findings verified against nutcracker 0.5.0 with redis-py 8.1 (see
tests/integration/test_harness.py). PLACEHOLDER
"""

from __future__ import annotations

from collections.abc import Sequence

from .ports import HOST

POOL_NAME = "rcs"


def nutcracker_config(
    listen_port: int,
    backend_ports: Sequence[int],
    *,
    distribution: str = "ketama",
    hash_name: str = "fnv1a_64",
) -> str:
    """YAML for one pool sharding by ``{hash tag}`` over ``backend_ports``.

    Backends get stable names (``s0``..) so ketama placement does not depend on ports.
    """
    servers = "\n".join(
        f"    - {HOST}:{port}:1 s{i}" for i, port in enumerate(backend_ports)
    )
    return (
        f"{POOL_NAME}:\n"
        f"  listen: {HOST}:{listen_port}\n"
        f"  hash: {hash_name}\n"
        '  hash_tag: "{}"\n'
        f"  distribution: {distribution}\n"
        "  redis: true\n"
        "  auto_eject_hosts: false\n"
        "  server_retry_timeout: 2000\n"
        "  server_failure_limit: 3\n"
        "  timeout: 2000\n"
        "  preconnect: true\n"
        "  servers:\n"
        f"{servers}\n"
    )

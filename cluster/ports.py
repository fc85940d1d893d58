"""Pick free loopback ports.

Ports are chosen by binding port 0 and releasing it; that is racy, so callers retry the
whole start when a server reports the address is taken (see ``PortClash``).
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"
# Cluster bus ports default to port + 10000; the harness always passes them explicitly,
# but keeping data ports low enough avoids surprises with tools that assume the default.
_MAX_PORT = 55535


class PortClash(RuntimeError):
    """A server could not bind its port; the caller should retry with fresh ports."""


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        attempts = 0
        while len(ports) < count:
            attempts += 1
            if attempts > count * 50:
                raise RuntimeError("could not find enough free ports")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            if port > _MAX_PORT:
                s.close()
                continue
            socks.append(s)  # keep bound so the next pick is distinct
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0

"""Local real-server test harness: standalone, plain, cluster, sentinel, proxy and tls.

Run ``python -m cluster up cluster`` for a manual environment, or use the fixtures in
``cluster.pytest_plugin`` from tests. Nothing here is part of the shipped package.
"""

from .binaries import TOPOLOGIES, available
from .faults import (
    FaultError,
    kill_primary,
    migrate_slot,
    pause,
    refresh_roles,
    resume,
    slot_owner,
    wait_for_failover,
)
from .harness import down, healthy, run_root, start, status, stop, up
from .model import Deployment, Node
from .processes import StartupError
from .topologies import TlsFiles, make_tls_files

__all__ = [
    "TOPOLOGIES",
    "Deployment",
    "FaultError",
    "Node",
    "StartupError",
    "TlsFiles",
    "available",
    "down",
    "healthy",
    "kill_primary",
    "make_tls_files",
    "migrate_slot",
    "pause",
    "refresh_roles",
    "resume",
    "run_root",
    "slot_owner",
    "start",
    "status",
    "stop",
    "up",
    "wait_for_failover",
]

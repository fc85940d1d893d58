"""Local real-server test harness: standalone, plain, redis62, cluster, sentinel, proxy,
tls and postgres (and ``cluster.latency``, a proxy that adds network delay).

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
from .slots import (
    Migration,
    SlotMove,
    add_primary,
    begin_migration,
    finish_migration,
    migrate_keys,
    migrate_slots_atomically,
    plan_rebalance,
    rebalance,
)
from .topologies import TlsFiles, make_tls_files

__all__ = [
    "TOPOLOGIES",
    "Deployment",
    "FaultError",
    "Migration",
    "Node",
    "SlotMove",
    "StartupError",
    "TlsFiles",
    "add_primary",
    "available",
    "begin_migration",
    "down",
    "finish_migration",
    "healthy",
    "kill_primary",
    "make_tls_files",
    "migrate_keys",
    "migrate_slot",
    "migrate_slots_atomically",
    "pause",
    "plan_rebalance",
    "rebalance",
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

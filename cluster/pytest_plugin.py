"""pytest fixtures yielding running deployments (load with ``-p cluster.pytest_plugin``).

Session fixtures start lazily on first use and are shared; ``fresh_*`` fixtures give a
destructive test its own deployment. Each instance gets its own workdir, so fixtures
never touch a topology started with the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .binaries import available
from .harness import start, stop
from .model import Deployment


def _deployment(topology: str, modules: bool = True) -> Iterator[Deployment]:
    reason = available(topology)
    if reason:
        pytest.skip(f"{topology} topology unavailable: {reason}")
    dep = start(topology, owner_pid=os.getpid(), modules=modules)
    try:
        yield dep
    finally:
        stop(dep)


def _fixture(topology: str, scope: str, name: str, modules: bool = True) -> Callable[..., Any]:
    def fixture() -> Iterator[Deployment]:
        yield from _deployment(topology, modules)

    bare = "" if modules else " without modules"
    fixture.__doc__ = f"A running {topology!r} Deployment{bare} ({scope}-scoped)."
    return pytest.fixture(scope=scope, name=name)(fixture)  # type: ignore[call-overload,no-any-return]


standalone = _fixture("standalone", "session", "standalone")
plain = _fixture("plain", "session", "plain")
redis62 = _fixture("redis62", "session", "redis62")
redis_cluster = _fixture("cluster", "session", "redis_cluster")
sentinel = _fixture("sentinel", "session", "sentinel")
proxy = _fixture("proxy", "session", "proxy")
tls = _fixture("tls", "session", "tls")
postgres = _fixture("postgres", "session", "postgres")
fresh_cluster = _fixture("cluster", "function", "fresh_cluster")
# valkey refuses CLUSTER MIGRATESLOTS while RedisJSON/RediSearch are loaded
fresh_bare_cluster = _fixture("cluster", "function", "fresh_bare_cluster", modules=False)
fresh_sentinel = _fixture("sentinel", "function", "fresh_sentinel")
fresh_tls = _fixture("tls", "function", "fresh_tls")

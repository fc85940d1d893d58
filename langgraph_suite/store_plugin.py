"""pytest plugin that runs langgraph-checkpoint's store tests on our store.

Loaded with ``-p langgraph_suite.store_plugin`` from the folder of the sdist (see
``stores``). It starts the topology ``$RCS_STORE_TOPOLOGY`` with the harness, stops
it at the end, and makes the name ``InMemoryStore`` in ``test_store`` build a
:class:`RedisClusterStore` with a key prefix of its own (so every store the tests
make starts empty). :data:`EXCLUDED` lists the tests that read InMemoryStore's own
internals, each with its reason; they are skipped.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest

from cluster.harness import available, start, stop
from cluster.model import Deployment
from redis_cluster_saver.store import RedisClusterStore

EXCLUDED: dict[str, str] = {}
"""``test name`` -> why it cannot pass on a store other than InMemoryStore."""

_prefixes = itertools.count()
_deployment: list[Deployment] = []
_opened: list[RedisClusterStore] = []


def pytest_configure(config: pytest.Config) -> None:
    topology = os.environ.get("RCS_STORE_TOPOLOGY", "standalone")
    reason = available(topology)
    if reason:
        raise pytest.UsageError(f"the {topology} topology is unavailable: {reason}")
    _deployment.append(start(topology, owner_pid=os.getpid()))


def pytest_unconfigure(config: pytest.Config) -> None:
    print(f"\n{len(_opened)} of our stores made by the tests")
    for store in _opened:
        store.close()
    for dep in _deployment:
        stop(dep)


class Ours(RedisClusterStore):
    """What ``InMemoryStore(**kwargs)`` builds in the store tests (a class: some tests
    patch its methods): ours, on the harness's server, empty."""

    def __init__(self, **kwargs: Any) -> None:
        (dep,) = _deployment
        options: dict[str, Any] = {"key_prefix": f"lgs{next(_prefixes)}"}
        if dep.client_kwargs:
            options["connection_args"] = dict(dep.client_kwargs)
        super().__init__(dep.url, **options, **kwargs)
        _opened.append(self)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "InMemoryStore"):
            module.InMemoryStore = Ours
        reason = EXCLUDED.get(item.name.split("[")[0])
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))

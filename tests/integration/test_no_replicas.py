"""A primary that refuses writes for want of replicas (``min-replicas-to-write``, Redis's
own guard against a partitioned primary) is no refusal of MULTI or Lua.

The error reaches the caller at once, nothing of the write is stored, and the saver
keeps its mode: before, a NOREPLICAS reply inside a script read as "scripts refused",
the saver probed again, its MULTI probe met NOREPLICAS too, and it fell back to a
lesser mode for good, with a warning naming a refusal that never was.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from langgraph.checkpoint.base import empty_checkpoint
from redis.exceptions import ResponseError

from cluster.binaries import available
from cluster.harness import start, stop
from redis_cluster_saver import AsyncRedisClusterSaver, RedisClusterSaver

MODES: dict[str, dict[str, Any]] = {
    "script": {},
    "multi": {"scripts": False},
    "per-key": {"transactions": False, "scripts": False},
}


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """A standalone server of this module's own (its setting would refuse every
    other test's writes)."""
    reason = available("standalone")
    if reason:
        pytest.skip(f"standalone topology unavailable: {reason}")
    dep = start("standalone")
    try:
        yield dep
    finally:
        stop(dep)


class NoReplicas:
    """``min-replicas-to-write 1`` on a server without replicas; lifted on exit."""

    def __init__(self, dep: Any) -> None:
        node = dep.nodes[0]
        self.client = redis.Redis(host=node.host, port=node.port)

    def __enter__(self) -> NoReplicas:
        self.client.config_set("min-replicas-to-write", 1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.config_set("min-replicas-to-write", 0)
        self.client.close()

    @staticmethod
    @contextlib.contextmanager
    def lifted(dep: Any) -> Iterator[None]:
        """The setting off for a while, inside a ``NoReplicas`` block."""
        node = dep.nodes[0]
        client = redis.Redis(host=node.host, port=node.port)
        client.config_set("min-replicas-to-write", 0)
        try:
            yield
        finally:
            client.config_set("min-replicas-to-write", 1)
            client.close()


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings of a mode chosen for a refusal (not one forced by options)."""
    messages = [r.getMessage() for r in caplog.records]
    return [m for m in messages if "refuse" in m and "forced by options" not in m]


def _put_args(thread: str) -> tuple[Any, Any, Any, Any]:
    cp = empty_checkpoint()
    cp["channel_values"] = {"n": 1}
    cp["channel_versions"] = {"n": 1}
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return config, cp, {"source": "loop", "step": 0}, {"n": 1}


@pytest.mark.parametrize("mode", list(MODES))
def test_sync_write_refused_for_want_of_replicas(
    server: Any, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"key_prefix": f"nr-{mode}", **MODES[mode]}
    with RedisClusterSaver.from_conn_string(server.url, **options) as saver:
        before = saver.capabilities
    with (
        caplog.at_level(logging.WARNING, logger="redis_cluster_saver"),
        NoReplicas(server),
        RedisClusterSaver.from_conn_string(server.url, **options) as saver,
    ):
        assert saver.capabilities == before  # the setup's probes are no refusal
        args = _put_args("t")
        with pytest.raises(ResponseError, match="NOREPLICAS"):
            saver.put(*args)
        assert saver.capabilities == before
        assert saver.get_tuple(args[0]) is None
        with NoReplicas.lifted(server):
            stored = saver.put(*args)  # the same saver, in the same mode
        assert saver.capabilities == before
        assert saver.get_tuple(stored) is not None
    assert not fallbacks(caplog)


@pytest.mark.parametrize("mode", list(MODES))
async def test_async_write_refused_for_want_of_replicas(
    server: Any, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"key_prefix": f"nra-{mode}", **MODES[mode]}
    async with AsyncRedisClusterSaver.from_conn_string(server.url, **options) as saver:
        before = saver.capabilities
    with caplog.at_level(logging.WARNING, logger="redis_cluster_saver"), NoReplicas(server):
        async with AsyncRedisClusterSaver.from_conn_string(server.url, **options) as saver:
            assert saver.capabilities == before
            args = _put_args("t")
            with pytest.raises(ResponseError, match="NOREPLICAS"):
                await saver.aput(*args)
            assert saver.capabilities == before
            assert await saver.aget_tuple(args[0]) is None
    assert not fallbacks(caplog)
